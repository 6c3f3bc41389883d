//! `GET /v1/stream` against the real binary: a resumed stream loses and repeats nothing,
//! each caller gets only events it could read through the routes, and a consumer that
//! stops reading is cut off without holding up the writer or other consumers.
#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use support::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long any one event may take to arrive.
const WAIT: Duration = Duration::from_secs(20);

/// One Server-Sent Event.
#[derive(Debug)]
struct SseEvent {
    id: Option<u64>,
    event: String,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// The client side of an event stream: blocks of `field: value` lines.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(s: &Server, token: &str, query: &str, last_id: Option<u64>) -> Sse {
        let client = support::client_builder().build().unwrap();
        let mut req = client.get(format!("{}/v1/stream?{query}", s.url)).bearer_auth(token);
        if let Some(id) = last_id {
            req = req.header("last-event-id", id.to_string());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap_or_default());
        let kind = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(kind.starts_with("text/event-stream"), "{kind}");
        Sse { resp, buf: String::new() }
    }

    /// The next event (heartbeats skipped); `None` once the server ends the stream.
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if let Some(event) = take_event(&mut self.buf) {
                return Some(event);
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk()).await.expect("no event within the wait");
            self.buf.push_str(std::str::from_utf8(&chunk.unwrap()?).unwrap());
        }
    }

    /// Events until one with `id >= last` (inclusive).
    async fn until(&mut self, last: u64) -> Vec<SseEvent> {
        let mut got = vec![];
        while got.last().and_then(|e: &SseEvent| e.id).is_none_or(|id| id < last) {
            got.push(self.next().await.expect("the stream ended early"));
        }
        got
    }
}

/// Parses one complete event block off the front of `buf`, skipping comment-only blocks.
fn take_event(buf: &mut String) -> Option<SseEvent> {
    loop {
        let end = buf.find("\n\n")?;
        let block: String = buf.drain(..end + 2).collect();
        let mut event = SseEvent { id: None, event: "message".into(), data: String::new() };
        let mut fields = 0;
        for line in block.lines().filter(|l| !l.starts_with(':') && !l.is_empty()) {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = value.parse().ok(),
                "event" => event.event = value.to_owned(),
                "data" => event.data.push_str(value),
                _ => {}
            }
            fields += 1;
        }
        if fields > 0 {
            return Some(event);
        }
    }
}

async fn create_ticket(s: &Server, token: &str, site: &str, summary: &str) -> String {
    let body =
        json!({ "account_id": "acct-1", "site_id": site, "incident_type": "DOOR_WONT_LATCH", "summary": summary });
    let (status, ticket) =
        s.send("POST", "/v1/tickets", token, Some(&uuid::Uuid::new_v4().to_string()), Some(body)).await;
    assert_eq!(status, 201, "{ticket}");
    ticket["id"].as_str().unwrap().to_owned()
}

/// The global positions of a ticket's own events, as its timeline shows them.
async fn positions(s: &Server, ticket: &str) -> Vec<u64> {
    let (status, timeline) = s.send("GET", &format!("/v1/tickets/{ticket}/timeline"), &s.admin_token, None, None).await;
    assert_eq!(status, 200, "{timeline}");
    timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["stream"].as_str().unwrap().starts_with("ticket/"))
        .map(|e| e["global_position"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn a_resumed_stream_loses_and_repeats_nothing() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let admin = s.admin_token.clone();
    let mut tickets = vec![];
    let mut first = Sse::open(&s, &admin, "topics=ticket&after=0", None).await;
    for i in 0..6 {
        tickets.push(create_ticket(&s, &admin, "site-1", &format!("before the cut {i}")).await);
    }
    let mut got: Vec<SseEvent> = vec![];
    for _ in 0..3 {
        got.push(first.next().await.unwrap());
    }
    drop(first); // the connection drops mid-way
    for i in 0..6 {
        tickets.push(create_ticket(&s, &admin, "site-1", &format!("while away {i}")).await);
    }
    let mut expected = BTreeSet::new();
    for t in &tickets {
        expected.extend(positions(&s, t).await);
    }
    let mut second = Sse::open(&s, &admin, "topics=ticket", got.last().and_then(|e| e.id)).await;
    got.extend(second.until(*expected.last().unwrap()).await);
    let ids: Vec<u64> = got.iter().map(|e| e.id.unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in log order, none twice: {ids:?}");
    assert_eq!(ids.iter().copied().collect::<BTreeSet<_>>(), expected, "every ticket event, nothing else");
    for e in &got {
        let entry = e.json();
        assert_eq!((entry["global_position"].as_u64(), entry["kind"].as_str()), (e.id, Some(e.event.as_str())));
    }
    // Without a position the stream starts at the present: only what happens next.
    let mut live = Sse::open(&s, &admin, "topics=ticket", None).await;
    let next = create_ticket(&s, &admin, "site-1", "after the resume").await;
    let e = live.next().await.unwrap();
    assert_eq!(e.json()["stream"], format!("ticket/{next}"));
    // A malformed position or topic is refused with a reason.
    let (status, body) = s.send("GET", "/v1/stream?topics=ticket,user", &admin, None, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("VALIDATION_ERROR")), "{body}");
    let (status, _, body) = s.send_raw("GET", "/v1/stream", &admin, None, None, &[("last-event-id", "soon")]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("VALIDATION_ERROR")), "{body}");
}

/// Reads a caller's stream up to the sentinel event (a ticket of site-1 every caller
/// here may see, made last), and checks each event against the read route of its entity.
async fn read_as(s: &Server, token: &str, sentinel: u64) -> Vec<SseEvent> {
    let got = Sse::open(s, token, "after=0", None).await.until(sentinel).await;
    for e in &got {
        let entry = e.json();
        let stream = entry["stream"].as_str().unwrap();
        let route = match stream.split_once('/').unwrap() {
            ("ticket", id) => format!("/v1/tickets/{id}"),
            ("lane", id) => format!("/v1/lanes/{id}"),
            ("task", id) => format!("/v1/tasks/{id}"),
            ("node", id) => format!("/v1/nodes/{id}"),
            _ => panic!("streamed an event of {stream}"),
        };
        let (status, body) = s.send("GET", &route, token, None, None).await;
        assert_eq!(status, 200, "streamed {} of {stream}, but its route says {body}", e.event);
    }
    got
}

fn streams_of(events: &[SseEvent]) -> BTreeSet<String> {
    events.iter().map(|e| e.json()["stream"].as_str().unwrap().split('/').next().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn each_caller_gets_only_what_it_could_read() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let dispatcher = s.token("disp-1", "dispatcher", &["acct-1"], &["site-1"]).await;
    let engineer = s.token("eve", "engineer", &["*"], &["*"]).await;
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let body = json!({ "sub": "ann", "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": ["ops"], "ttl_seconds": 600 });
    let (_, minted) = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await;
    let operator = minted["token"].as_str().unwrap().to_owned();

    let hidden = create_ticket(&s, &s.admin_token, "site-2", "another site").await;
    let key = || Some(uuid::Uuid::new_v4().to_string());
    for (path, body) in [
        ("/v1/lanes", json!({ "lane_id": "lane-1" })),
        ("/v1/lanes/lane-1/checkpoints", json!({ "name": "c1", "state": { "step": 1 } })),
        (
            "/v1/lanes/lane-1/handoffs",
            json!({ "checkpoint": "c1", "trigger_class": "policy", "reason": "over limit", "context": { "secret": 42 },
                "queue": "ops", "sla_seconds": 600, "deadline_seconds": 3600, "timeout_action": "reject" }),
        ),
    ] {
        let (status, answer) = s.send("POST", path, &agent, key().as_deref(), Some(body)).await;
        assert!(status == 200 || status == 201, "{path}: {answer}");
    }
    let sentinel_ticket = create_ticket(&s, &s.admin_token, "site-1", "everyone here sees this").await;
    let sentinel = *positions(&s, &sentinel_ticket).await.last().unwrap();

    let admin = streams_of(&read_as(&s, &s.admin_token, sentinel).await);
    assert_eq!(admin, ["lane", "node", "ticket"].map(String::from).into(), "the admin sees every kind");
    let seen = read_as(&s, &dispatcher, sentinel).await;
    assert_eq!(streams_of(&seen), ["ticket".to_owned()].into(), "no lanes, nodes or tasks for a dispatcher");
    assert!(seen.iter().all(|e| e.json()["stream"] != format!("ticket/{hidden}")), "nothing of site-2");
    let seen = read_as(&s, &operator, sentinel).await;
    assert!(seen.iter().any(|e| e.event == "handoff.requested"), "the handoff sits in the operator's queue");
    let seen = read_as(&s, &agent, sentinel).await;
    assert!(seen.iter().any(|e| e.event == "handoff.requested"), "the agent sees its own lane");
    let seen = read_as(&s, &engineer, sentinel).await;
    assert!(!streams_of(&seen).contains("lane"), "an engineer gets no lane or handoff content");
}

#[tokio::test]
async fn a_consumer_that_stops_reading_is_cut_off_and_holds_up_nobody() {
    let dir = support::tempdir();
    let flags = ["--stream-buffer", "4", "--stream-slow-ms", "300"];
    let s = Server::start_with(&dir.path().join("data"), &flags);
    let admin = s.admin_token.clone();
    // A client that asks and then never reads, on a small receive buffer.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = s.url.trim_start_matches("http://").parse().unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /v1/stream?topics=ticket&after=0 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {admin}\r\n\r\n"
    );
    stuck.write_all(request.as_bytes()).await.unwrap();
    let mut reader = Sse::open(&s, &admin, "topics=ticket&after=0", None).await;
    // Another consumer reads along all the while.
    let (last_tx, mut last_rx) = tokio::sync::watch::channel(u64::MAX);
    let reading = tokio::spawn(async move {
        let mut got = BTreeSet::new();
        while got.last().is_none_or(|id| id < &*last_rx.borrow_and_update()) {
            tokio::select! {
                e = reader.next() => {
                    let e = e.expect("the reading consumer's stream ended");
                    got.insert(e.id.unwrap_or_else(|| panic!("the reading consumer was cut off: {e:?}")));
                }
                _ = last_rx.changed() => {}
            }
        }
        got
    });

    // Big events (a 400 KB summary), more than every buffer between the server and the
    // stuck client holds (the server's socket grows to 4 MiB, hyper keeps ~400 KiB).
    let summary = "x".repeat(400_000);
    let mut tickets = vec![];
    for _ in 0..16 {
        tickets.push(create_ticket(&s, &admin, "site-1", &summary).await);
    }
    let mut expected = BTreeSet::new();
    for t in &tickets {
        expected.extend(positions(&s, t).await);
    }
    let last = *expected.last().unwrap();
    last_tx.send_replace(last);
    let got = reading.await.unwrap();
    assert_eq!(got, expected, "the reading consumer got every event while the other was stuck");

    // The stuck client finds the events that fitted, then why it was cut off, then the
    // end of the body (the last chunk of a chunked response).
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let mut chunk = [0u8; 65536];
        let n =
            tokio::time::timeout(WAIT, stuck.read(&mut chunk)).await.expect("the stuck stream never ended").unwrap();
        assert!(n > 0, "the connection closed before the body ended");
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&raw);
    let cut =
        text.find("event: cut_off").unwrap_or_else(|| panic!("no cut_off event:\n{}", &text[..text.len().min(2000)]));
    let reason: Value = serde_json::from_str(text[cut..].lines().nth(1).unwrap().trim_start_matches("data: ")).unwrap();
    assert_eq!(reason["code"], "SLOW_CONSUMER", "{reason}");
    let resume = reason["resume_after"].as_u64().unwrap();
    assert!(resume < last, "it was cut off before the end: {reason}");
    // It resumes where it was cut off and gets the rest, once.
    let rest = Sse::open(&s, &admin, "topics=ticket", Some(resume)).await.until(last).await;
    assert_eq!(rest.first().and_then(|e| e.id).map(|id| id > resume), Some(true));
    assert_eq!(rest.last().and_then(|e| e.id), Some(last));
}

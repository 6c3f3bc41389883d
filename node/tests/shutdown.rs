//! Stopping `dispatch up` with Ctrl-C: open long-polls are answered at once, the process
//! says what it is waiting for, and a second Ctrl-C exits at once without losing
//! anything that was acknowledged.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Server, key};

/// Waits (bounded) until the server reports at least `n` requests in flight.
async fn in_flight_at_least(s: &Server, n: u64) {
    for _ in 0..500 {
        let metrics = support::get(format!("{}/metrics", s.url)).await.unwrap().text().await.unwrap();
        let now = metrics
            .lines()
            .find_map(|l| l.strip_prefix("dispatch_http_requests_in_flight "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        // This scrape is in flight too while it is served.
        if now as u64 > n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never saw {n} request(s) in flight");
}

#[tokio::test]
async fn ctrl_c_answers_an_open_long_poll_and_exits_within_two_seconds() {
    let dir = support::tempdir();
    let s = Server::start(&dir.path().join("data"));
    let body = json!({ "sub": "bot", "role": "agent", "accounts": ["*"], "sites": ["*"], "ttl_seconds": 600 });
    let agent = s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await.1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (path, body) in [
        ("/v1/lanes", json!({ "lane_id": "l1" })),
        ("/v1/lanes/l1/checkpoints", json!({ "name": "c1" })),
        ("/v1/lanes/l1/handoffs", json!({ "checkpoint": "c1", "trigger_class": "t", "reason": "r", "queue": "q" })),
    ] {
        let (status, answer) = s.send("POST", path, &agent, Some(&key()), Some(body)).await;
        assert!(status < 300, "{path}: {answer}");
    }
    let poll = {
        let url = format!("{}/v1/lanes/l1/decision?wait=30", s.url);
        let agent = agent.clone();
        tokio::spawn(async move {
            let resp = support::client_builder().build().unwrap().get(url).bearer_auth(agent).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<serde_json::Value>().await.unwrap())
        })
    };
    in_flight_at_least(&s, 1).await;

    let signalled = Instant::now();
    s.signal("INT");
    let (status, answer) = poll.await.unwrap();
    assert_eq!((status, answer["decided"].clone()), (200, json!(false)), "{answer}");
    s.line_with("dispatch: stopping", Duration::from_secs(2));
    let exit = s.exit_within(Duration::from_secs(2));
    assert!(exit.success(), "{exit}");
    assert!(signalled.elapsed() < Duration::from_secs(2), "took {:?}", signalled.elapsed());
}

#[tokio::test]
async fn a_second_ctrl_c_exits_at_once_and_loses_nothing_acknowledged() {
    let dir = support::tempdir();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let ticket = support::new_ticket(&s, &s.admin_token).await;
    // A request that stays in flight: its body never finishes arriving.
    let addr = s.url.strip_prefix("http://").unwrap().to_owned();
    let mut stuck = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /v1/tickets HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nIdempotency-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"account_id\":",
        s.admin_token,
        key()
    );
    stuck.write_all(head.as_bytes()).unwrap();
    in_flight_at_least(&s, 1).await;

    s.signal("INT");
    let waiting = s.line_with("dispatch: stopping", Duration::from_secs(5));
    assert!(waiting.contains("waiting for 1 request(s)"), "{waiting}");
    let signalled = Instant::now();
    s.signal("INT");
    s.line_with("second signal: exiting now", Duration::from_secs(2));
    let exit = s.exit_within(Duration::from_secs(2));
    assert_eq!(exit.code(), Some(130), "{exit}");
    assert!(signalled.elapsed() < Duration::from_secs(2));
    drop(stuck);

    let s = Server::start(&data);
    let (status, _) = s.send("GET", &format!("/v1/tickets/{ticket}"), &s.admin_token, None, None).await;
    assert_eq!(status, 200, "the acknowledged ticket survived the forced exit");
    let (_, list) = s.send("GET", "/v1/tickets", &s.admin_token, None, None).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "the half-sent ticket was never written: {list}");
    s.stop();
}

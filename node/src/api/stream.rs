//! `GET /v1/stream`: the log's events as Server-Sent Events, for the console and for
//! integrators. An event's `id` is its global log position; a client resumes with
//! `Last-Event-ID` (or `after`) and gets every later event it may read, once, in log
//! order. Each event passes the read rules of the route that shows it (a ticket's
//! account/site scope, a lane's agent or queue, the roles of `task.get` and `node.get`),
//! checked as it is sent. A connection's buffer is bounded: a consumer that leaves it
//! full for longer than [`StreamLimits::slow_after`] is cut off, its last event saying
//! why and where to resume. Nothing here touches the writer: a stuck consumer slows
//! only itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::policy::{self, Principal};
use actors::storage::EventRecord;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use utoipa::IntoParams;

use super::App;
use super::error::{ApiError, ErrorBody};
use super::extract::{Caller, Query};
use super::tickets::TimelineEntry;

/// Per-connection limits of the event stream.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Events buffered for one connection.
    pub buffer: usize,
    /// How long a full buffer is borne before the connection is cut off.
    pub slow_after: Duration,
    /// Streams one principal (`sub`) may hold open at once.
    pub per_principal: usize,
    /// A comment line this often keeps proxies from closing an idle stream.
    pub heartbeat: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            buffer: 1024,
            slow_after: Duration::from_secs(10),
            per_principal: 4,
            heartbeat: Duration::from_secs(15),
        }
    }
}

/// Events read from the log per pass.
const PAGE: usize = 256;
/// Entities whose visibility a connection remembers (the rest are checked again).
const REMEMBERED: usize = 10_000;

/// What an event is about; `?topics=` picks some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    Ticket,
    Lane,
    Handoff,
    Task,
    Node,
}

impl Topic {
    const ALL: [Topic; 5] = [Topic::Ticket, Topic::Lane, Topic::Handoff, Topic::Task, Topic::Node];

    fn name(self) -> &'static str {
        match self {
            Topic::Ticket => "ticket",
            Topic::Lane => "lane",
            Topic::Handoff => "handoff",
            Topic::Task => "task",
            Topic::Node => "node",
        }
    }

    /// The topic of a stored event; `None` for what is never streamed (accounts,
    /// sessions, join tokens).
    fn of(stream: &str, kind: &str) -> Option<Topic> {
        let (entity, _) = stream.split_once('/')?;
        match entity {
            "ticket" => Some(Topic::Ticket),
            "lane" if kind.starts_with("handoff.") => Some(Topic::Handoff),
            "lane" => Some(Topic::Lane),
            "task" => Some(Topic::Task),
            "node" => Some(Topic::Node),
            _ => None,
        }
    }

    /// The read route whose roles may see the topic.
    fn read_tool(self) -> &'static str {
        match self {
            Topic::Ticket => "ticket.get",
            Topic::Lane | Topic::Handoff => "lane.get",
            Topic::Task => "task.get",
            Topic::Node => "node.get",
        }
    }
}

/// `?topics=ticket,lane` → those topics; absent → all of them.
fn parse_topics(raw: Option<&str>) -> Result<Vec<Topic>, ApiError> {
    let Some(raw) = raw else { return Ok(Topic::ALL.to_vec()) };
    raw.split(',')
        .map(|name| {
            Topic::ALL.into_iter().find(|t| t.name() == name.trim()).ok_or_else(|| {
                ApiError::validation(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("unknown topic {name:?}: topics are ticket, lane, handoff, task, node"),
                )
            })
        })
        .collect()
}

/// Query of `GET /v1/stream`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated topics: `ticket`, `lane`, `handoff`, `task`, `node` (default: all).
    #[param(pattern = r"^(ticket|lane|handoff|task|node)(,(ticket|lane|handoff|task|node))*$")]
    pub topics: Option<String>,
    /// Send the events after this global position (default: only those to come). A
    /// `Last-Event-ID` header takes precedence.
    pub after: Option<u64>,
}

#[utoipa::path(operation_id = "events.stream", get, path = "/v1/stream", tag = "events", params(StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "resume after this event id (a global position)")),
    responses(
        (status = 200, content_type = "text/event-stream", body = String, description = "Server-Sent Events: \
            `id` is the global log position, `event` the event kind, `data` the event as the timelines show it \
            (`TimelineEntry`). A comment line is sent as a heartbeat. A connection whose buffer stays full is \
            ended by an `event: cut_off` whose data names `resume_after`."),
        (status = "4XX", body = ErrorBody)))]
/// Live events the caller may read (tickets, lanes, handoffs, tasks, nodes), resumable.
pub(super) async fn stream(
    State(app): State<App>,
    Caller(caller): Caller,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let topics = parse_topics(q.topics.as_deref())?;
    let resume = match headers.get("last-event-id") {
        Some(v) => Some(v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or_else(|| {
            ApiError::validation(StatusCode::BAD_REQUEST, "Last-Event-ID must be a global position (an integer)")
        })?),
        None => q.after,
    };
    let slot = app.streams.open(&caller.sub)?;
    let after = resume.unwrap_or_else(|| *app.log.watch_head().borrow());
    let limits = app.edge.streams.clone();
    let (events, rx) = mpsc::channel(limits.buffer.max(1));
    let (cut_off, why) = oneshot::channel();
    let pump = Pump { app: app.clone(), caller, topics, seen: HashMap::new(), events, slow_after: limits.slow_after };
    tokio::spawn(pump.run(after, cut_off, slot));
    let last = futures_util::stream::once(why).filter_map(|why| async move { why.ok() });
    let events = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) });
    let body = events.chain(last).map(Ok::<_, std::convert::Infallible>);
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(limits.heartbeat)).into_response())
}

/// Reads the log after a position and sends what the caller may see, live.
struct Pump {
    app: App,
    caller: Principal,
    topics: Vec<Topic>,
    /// Stream → may the caller see it (for entities whose answer cannot change).
    seen: HashMap<String, bool>,
    events: mpsc::Sender<Event>,
    slow_after: Duration,
}

impl Pump {
    async fn run(mut self, mut after: u64, cut_off: oneshot::Sender<Event>, _slot: Slot) {
        let mut head = self.app.log.watch_head();
        let mut stopping = self.app.serving.watch_stopping();
        loop {
            let page = match self.app.log.read_global(after + 1, PAGE) {
                Ok(page) => page,
                Err(e) => return tracing::warn!(error = %e, "event stream: cannot read the log"),
            };
            let full = page.len() == PAGE;
            for record in page {
                let position = record.global_position;
                if let Some(event) = self.visible(record).await {
                    match tokio::time::timeout(self.slow_after, self.events.send(event)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return, // the client went away
                        Err(_) => return self.cut(cut_off, after),
                    }
                }
                after = position;
            }
            if full {
                continue;
            }
            tokio::select! {
                biased;
                _ = self.events.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
                changed = head.wait_for(|h| *h > after) => if changed.is_err() { return },
            }
        }
    }

    /// Ends a connection that left its buffer full too long; the client resumes after `after`.
    fn cut(self, cut_off: oneshot::Sender<Event>, after: u64) {
        metrics::counter!("dispatch_stream_cut_off_total").increment(1);
        tracing::info!(sub = %self.caller.sub, after, "event stream cut off: its consumer is too slow");
        let data = serde_json::json!({
            "code": "SLOW_CONSUMER",
            "message": format!("the client did not keep up for {:?}; resume after the last event it got", self.slow_after),
            "resume_after": after,
        });
        let _ = cut_off.send(Event::default().event("cut_off").data(data.to_string()));
    }

    /// The event as sent, if the caller asked for its topic and may read it now.
    async fn visible(&mut self, record: EventRecord) -> Option<Event> {
        let topic = Topic::of(&record.stream, &record.kind).filter(|t| self.topics.contains(t))?;
        let spec = policy::tool(topic.read_tool())?;
        policy::authorize(&self.caller, spec, None).ok()?;
        if !self.may_read(topic, &record.stream).await {
            return None;
        }
        let mut entry = TimelineEntry::from(record);
        if topic == Topic::Task && !super::tickets::sees_task_contents(&self.caller) {
            entry.payload = serde_json::Value::Null;
        }
        let data = serde_json::to_string(&entry).ok()?;
        Some(Event::default().id(entry.global_position.to_string()).event(entry.kind).data(data))
    }

    /// The read rule of the entity behind `stream`.
    async fn may_read(&mut self, topic: Topic, stream: &str) -> bool {
        let caller = &self.caller;
        let (_, id) = stream.split_once('/').unwrap_or_default();
        match topic {
            Topic::Node => true,
            // A lane's queue changes with its handoffs: checked for every event.
            Topic::Lane | Topic::Handoff => match super::lanes::load_lane(&self.app, id).await {
                Ok(lane) => super::lanes::may_see(caller, &lane),
                Err(_) => false,
            },
            // A ticket's and a task's account and site never change: checked once.
            Topic::Ticket | Topic::Task => {
                if let Some(known) = self.seen.get(stream) {
                    return *known;
                }
                let scope = match topic {
                    Topic::Ticket => super::tickets::parse_ticket_id(id)
                        .ok()
                        .and_then(|id| actors::ticket::store::load(&self.app.log, id).ok().flatten())
                        .map(|t| (t.account_id, t.site_id)),
                    _ => actors::task::store::load(&self.app.log, id)
                        .ok()
                        .flatten()
                        .map(|(t, _)| (t.spec.account_id, t.spec.site_id)),
                };
                let may = scope.is_some_and(|(account, site)| caller.in_scope(&account, &site));
                if self.seen.len() >= REMEMBERED {
                    self.seen.clear();
                }
                self.seen.insert(stream.to_owned(), may);
                may
            }
        }
    }
}

/// Open streams per principal, capped.
#[derive(Default)]
pub struct Streams {
    open: Arc<Mutex<HashMap<String, usize>>>,
    cap: usize,
}

/// One open stream of a principal; closing it (drop) frees the place.
pub struct Slot {
    open: Arc<Mutex<HashMap<String, usize>>>,
    sub: String,
}

impl Streams {
    pub fn new(limits: &StreamLimits) -> Self {
        Streams { open: Arc::default(), cap: limits.per_principal }
    }

    fn open(&self, sub: &str) -> Result<Slot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(sub.to_owned()).or_default();
        if *count >= self.cap {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TOO_MANY_STREAMS",
                format!("this caller already holds {} event streams open; close one first", self.cap),
            ));
        }
        *count += 1;
        Ok(Slot { open: self.open.clone(), sub: sub.to_owned() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.sub) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.sub);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stored_event_has_one_topic_or_none() {
        let cases = [
            ("ticket/0199", "ticket.created", Some(Topic::Ticket)),
            ("lane/l-1", "lane.created", Some(Topic::Lane)),
            ("lane/l-1", "handoff.requested", Some(Topic::Handoff)),
            ("task/t-1", "task.dispatched", Some(Topic::Task)),
            ("node/node-1", "node.joined", Some(Topic::Node)),
            ("user/ann", "user.created", None),
            ("session/s-1", "session.started", None),
            ("join_token/j", "join_token.created", None),
        ];
        for (stream, kind, topic) in cases {
            assert_eq!(Topic::of(stream, kind), topic, "{stream} {kind}");
        }
    }

    #[test]
    fn topics_are_parsed_strictly() {
        assert_eq!(parse_topics(None).unwrap(), Topic::ALL);
        assert_eq!(parse_topics(Some("task,node")).unwrap(), [Topic::Task, Topic::Node]);
        assert!(parse_topics(Some("ticket,users")).is_err());
        assert!(parse_topics(Some("")).is_err());
    }

    #[test]
    fn a_principal_holds_at_most_its_cap_of_streams() {
        let streams = Streams::new(&StreamLimits { per_principal: 2, ..StreamLimits::default() });
        let (a, _b) = (streams.open("ann").unwrap(), streams.open("ann").unwrap());
        assert_eq!(streams.open("ann").err().map(|e| e.code), Some("TOO_MANY_STREAMS"));
        assert!(streams.open("bob").is_ok(), "another principal is not affected");
        drop(a);
        assert!(streams.open("ann").is_ok(), "a closed stream frees its place");
    }
}

//! Simulated clients of the orchestrator's HTTP API: real HTTP/1.1 (hyper) over
//! turmoil's TCP, so requests cross the same partitions and crashes as the cluster.
//! The simulated orchestrator runs with development identity headers, so a client
//! says who it is with `X-Actor-*` instead of signing in.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::{HTTP_PORT, ORCHESTRATOR};

/// Who a simulated client is.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: &'static str,
    pub role: &'static str,
    pub accounts: &'static str,
    pub sites: &'static str,
}

/// A dispatcher of account `acct-1`, site `site-1`.
pub const DISPATCHER: Actor = Actor { id: "dana", role: "dispatcher", accounts: "acct-1", sites: "site-1" };
/// An agent that owns the lanes it creates.
pub const AGENT: Actor = Actor { id: "bot", role: "agent", accounts: "acct-1", sites: "site-1" };

/// One request and its answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub method: &'static str,
    pub path: String,
    pub key: Option<String>,
    pub body: Option<Value>,
}

/// The status and JSON body of an answer.
pub type Answer = (u16, Value);

/// Sends one request from the current simulated host; `Err` when no answer came
/// within `limit` (refused connection, broken connection, partition, crash).
pub async fn send(actor: &Actor, request: &Exchange, limit: Duration) -> Result<Answer, String> {
    tokio::time::timeout(limit, send_once(actor, request)).await.map_err(|_| format!("no answer within {limit:?}"))?
}

async fn send_once(actor: &Actor, request: &Exchange) -> Result<Answer, String> {
    let stream = turmoil::net::TcpStream::connect((ORCHESTRATOR, HTTP_PORT)).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(request.method)
        .uri(&request.path)
        .header("host", ORCHESTRATOR)
        .header("content-type", "application/json")
        .header("x-actor-id", actor.id)
        .header("x-actor-role", actor.role)
        .header("x-actor-accounts", actor.accounts)
        .header("x-actor-sites", actor.sites);
    if let Some(key) = &request.key {
        builder = builder.header("idempotency-key", key);
    }
    let body = request.body.as_ref().map(Value::to_string).unwrap_or_default();
    let http = builder.body(Full::new(Bytes::from(body))).map_err(|e| e.to_string())?;
    let response = sender.send_request(http).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// Sends until an answer comes (the same request, with the same idempotency key,
/// every time), at most `attempts` times, one simulated second apart. Returns the
/// answer and how many sends it took.
pub async fn send_until_answered(actor: &Actor, request: &Exchange, attempts: u32) -> Result<(Answer, u32), String> {
    let mut last = String::new();
    for attempt in 1..=attempts {
        match send(actor, request, Duration::from_secs(3)).await {
            // Unavailable while the orchestrator starts or the log is busy: try again.
            Ok((503, _)) => last = "503".into(),
            Ok(answer) => return Ok((answer, attempt)),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("{} {}: no answer after {attempts} attempts (last: {last})", request.method, request.path))
}

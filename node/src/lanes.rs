//! What keeps lanes moving without a request: durable timers (first-response SLAs
//! and decision deadlines, kept in the log so they fire after a restart too) and the
//! delivery of decisions to lane callbacks — at least once, signed with the lane's
//! secret, with exponential backoff, and into the dead-letter queue after the last try.

use std::time::Duration;

use actors::lane::LaneCommand;
use actors::lane::actor::{LaneRequest, Lanes};
use actors::lane::store::{self, DLQ, OUTBOX, SECRETS, TimerKind};
use actors::node::Origin;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use storage::{Append, IndexOp, Log, LogWriter};

const TICK: Duration = Duration::from_millis(200);

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Fires due timers on their lanes, forever.
pub async fn run_timers(log: Log, lanes: Lanes) {
    loop {
        tokio::time::sleep(TICK).await;
        let due = match store::due_timers(&log, now_ms()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading lane timers");
                continue;
            }
        };
        for t in due {
            let now = now_ms();
            let command = match t.kind {
                TimerKind::Sla => LaneCommand::SlaDue { handoff_id: t.handoff.clone(), now_ms: now },
                TimerKind::Deadline => LaneCommand::DeadlineDue { handoff_id: t.handoff.clone(), now_ms: now },
            };
            let request = LaneRequest {
                lane_id: t.lane.clone(),
                command,
                origin: Origin::system("lane.timer"),
                idempotency: None,
                index_ops: vec![IndexOp::Delete { index: store::TIMERS.into(), key: t.key.clone() }],
            };
            if let Err(e) = lanes.run(request).await {
                tracing::warn!(lane = %t.lane, error = %e, "lane timer not applied; will retry");
            }
        }
    }
}

/// How callback deliveries retry.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy { attempts: 6, first_backoff: Duration::from_millis(500), timeout: Duration::from_secs(5) }
    }
}

/// A decision waiting to be delivered (or dead-lettered).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub lane_id: String,
    pub handoff_id: String,
    pub url: String,
    /// The signed body: a `handoff.decided` envelope.
    pub body: String,
    pub attempts: u32,
    pub next_ms: i64,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Events written about this delivery so far (its stream's sequence).
    #[serde(default)]
    pub events: u64,
}

/// `sha256=<hex HMAC-SHA256 of body with the lane's secret>`: what a receiver checks.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A new lane's callback secret: random, kept in an index (never in an event).
pub fn new_secret(lane: &str) -> (String, IndexOp) {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    (secret.clone(), IndexOp::Put { index: SECRETS.into(), key: lane.to_owned(), value: secret.into_bytes() })
}

/// Records what happened to a delivery and moves it between outbox and dead letters.
async fn record(writer: &LogWriter, d: &Delivery, kind: &str, ops: Vec<IndexOp>) -> Result<(), String> {
    let event = Origin::system("lane.callback").event(kind, None, None, &serde_json::json!({
        "delivery_id": d.id, "lane_id": d.lane_id, "handoff_id": d.handoff_id, "attempts": d.attempts, "error": d.last_error,
    }));
    let append = Append {
        stream: format!("delivery/{}", d.id),
        expected_seq: d.events,
        events: vec![event],
        index_ops: ops,
        ..Default::default()
    };
    writer.append(append).await.map(|_| ()).map_err(|e| e.to_string())
}

fn entries(log: &Log, index: &str) -> Vec<Delivery> {
    log.index_scan(index, "", usize::MAX)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect()
}

/// Deliveries waiting in the outbox.
pub fn outbox(log: &Log) -> Vec<Delivery> {
    entries(log, OUTBOX)
}

/// Deliveries in the dead-letter queue.
pub fn dead_letters(log: &Log) -> Vec<Delivery> {
    entries(log, DLQ)
}

fn put(index: &str, d: &Delivery) -> IndexOp {
    IndexOp::Put { index: index.into(), key: d.id.clone(), value: serde_json::to_vec(d).unwrap_or_default() }
}

/// Moves a dead letter back to the outbox for one more round of attempts.
pub async fn replay(log: &Log, writer: &LogWriter, id: &str) -> Result<Option<Delivery>, String> {
    let Some(mut d) = dead_letters(log).into_iter().find(|d| d.id == id) else { return Ok(None) };
    d.attempts = 0;
    d.next_ms = 0;
    let ops = vec![
        IndexOp::Delete { index: DLQ.into(), key: d.id.clone() },
        put(OUTBOX, &Delivery { events: d.events + 1, ..d.clone() }),
    ];
    record(writer, &d, "delivery.replayed", ops).await?;
    metrics::gauge!("dispatch_dlq_depth").decrement(1.0);
    Ok(Some(d))
}

/// Delivers what is due in the outbox, forever.
pub async fn run_deliveries(log: Log, writer: LogWriter, policy: DeliveryPolicy) {
    let http = reqwest::Client::builder().timeout(policy.timeout).build().unwrap_or_default();
    metrics::gauge!("dispatch_dlq_depth").set(dead_letters(&log).len() as f64);
    loop {
        tokio::time::sleep(TICK).await;
        for d in outbox(&log).into_iter().filter(|d| d.next_ms <= now_ms()) {
            deliver(&log, &writer, &http, policy, d).await;
        }
    }
}

async fn deliver(log: &Log, writer: &LogWriter, http: &reqwest::Client, policy: DeliveryPolicy, mut d: Delivery) {
    let secret = log.index_get(SECRETS, &d.lane_id).ok().flatten().unwrap_or_default();
    let sent = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("x-dispatch-signature", signature(&secret, d.body.as_bytes()))
        .header("x-dispatch-delivery", &d.id)
        .body(d.body.clone())
        .send()
        .await;
    d.attempts += 1;
    metrics::counter!("dispatch_callback_attempts_total").increment(1);
    let failure = match sent {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("answered {}", r.status())),
        Err(e) => Some(e.to_string()),
    };
    let outcome = match failure {
        None => {
            let ops = vec![IndexOp::Delete { index: OUTBOX.into(), key: d.id.clone() }];
            record(writer, &d, "delivery.succeeded", ops).await
        }
        Some(error) => {
            metrics::counter!("dispatch_callback_failures_total").increment(1);
            d.last_error = Some(error);
            let next = Delivery { events: d.events + 1, ..d.clone() };
            if d.attempts >= policy.attempts {
                tracing::warn!(delivery = %d.id, lane = %d.lane_id, "callback failed its last attempt; dead-lettered");
                metrics::gauge!("dispatch_dlq_depth").increment(1.0);
                let ops = vec![IndexOp::Delete { index: OUTBOX.into(), key: d.id.clone() }, put(DLQ, &next)];
                record(writer, &d, "delivery.dead_lettered", ops).await
            } else {
                let backoff = policy.first_backoff * 2u32.saturating_pow(d.attempts - 1);
                let next = Delivery { next_ms: now_ms() + backoff.as_millis() as i64, ..next };
                record(writer, &d, "delivery.failed", vec![put(OUTBOX, &next)]).await
            }
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(delivery = %d.id, error = %e, "delivery state not recorded; it will be tried again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

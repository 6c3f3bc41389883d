//! What keeps lanes moving without a request: durable timers (first-response SLAs
//! and decision deadlines, kept in the log so they fire after a restart too) and the
//! delivery of decisions to lane callbacks — at least once, signed with the lane's
//! secret, with exponential backoff, and into the dead-letter queue after the last try.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actors::kernel::Request;
use actors::kernel::{Clock, Origin};
use actors::lane::LaneCommand;
use actors::lane::LaneHandle;
use actors::lane::store::{self, DLQ, OUTBOX, SECRETS, TimerKind};
use actors::storage::{Append, IndexOp, Log, LogWriter};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const TICK: Duration = Duration::from_millis(200);

/// Fires due timers on their lanes, forever.
pub async fn run_timers(log: Log, lanes: LaneHandle, clock: Arc<dyn Clock>) {
    loop {
        tokio::time::sleep(TICK).await;
        let due = match store::due_timers(&log, clock.now_ms()) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading lane timers");
                continue;
            }
        };
        for t in due {
            let now = clock.now_ms();
            let command = match t.kind {
                TimerKind::Sla => LaneCommand::SlaDue { handoff_id: t.handoff.clone(), now_ms: now },
                TimerKind::Deadline => LaneCommand::DeadlineDue { handoff_id: t.handoff.clone(), now_ms: now },
            };
            let request = Request {
                id: t.lane.clone(),
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
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub attempts: u32,
    pub first_backoff: Duration,
    /// Each delivery's whole time limit.
    pub timeout: Duration,
    /// Hosts allowed even though they resolve to loopback, private or link-local addresses.
    pub allow_hosts: Vec<String>,
    /// Deliveries in flight at once (each lane's in order, different lanes side by side).
    pub concurrency: usize,
    /// Roots trusted for https callbacks besides the platform's.
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            attempts: 6,
            first_backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            allow_hosts: vec![],
            concurrency: 16,
            extra_roots: vec![],
        }
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
async fn record(writer: &LogWriter, at_ms: i64, d: &Delivery, kind: &str, ops: Vec<IndexOp>) -> Result<(), String> {
    let event = Origin::system("lane.callback")
        .event((uuid::Uuid::now_v7(), at_ms), kind, (None, None), &serde_json::json!({
            "delivery_id": d.id, "lane_id": d.lane_id, "handoff_id": d.handoff_id, "attempts": d.attempts, "error": d.last_error,
        }))
        .map_err(|e| e.to_string())?;
    let append = Append {
        stream: format!("delivery/{}", d.id),
        expected_seq: d.events,
        events: vec![event],
        index_ops: ops,
        ..Default::default()
    };
    writer.append(append).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Deliveries looked at per pass (the rest wait for the next one).
const SCAN_LIMIT: usize = 4096;

fn entries(log: &Log, index: &str) -> Vec<Delivery> {
    log.index_scan(index, "", SCAN_LIMIT)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
        .collect()
}

/// Deliveries waiting in the outbox.
pub fn outbox(log: &Log) -> Vec<Delivery> {
    entries(log, OUTBOX)
}

fn put(index: &str, d: &Delivery) -> IndexOp {
    IndexOp::Put { index: index.into(), key: d.id.clone(), value: serde_json::to_vec(d).unwrap_or_default() }
}

/// Moves a dead letter back to the outbox for one more round of attempts.
pub async fn replay(log: &Log, writer: &LogWriter, id: &str, now_ms: i64) -> Result<Option<Delivery>, String> {
    let stored = log.index_get(DLQ, id).map_err(|e| e.to_string())?;
    let Some(mut d) = stored.and_then(|v| serde_json::from_slice::<Delivery>(&v).ok()) else { return Ok(None) };
    d.attempts = 0;
    d.next_ms = 0;
    let ops = vec![
        IndexOp::Delete { index: DLQ.into(), key: d.id.clone() },
        put(OUTBOX, &Delivery { events: d.events + 1, ..d.clone() }),
    ];
    record(writer, now_ms, &d, "delivery.replayed", ops).await?;
    metrics::gauge!("dispatch_dlq_depth").decrement(1.0);
    Ok(Some(d))
}

impl DeliveryPolicy {
    /// Which internal hosts callbacks may reach.
    pub fn addresses(&self) -> crate::outbound::AddressPolicy {
        crate::outbound::AddressPolicy { allow_hosts: self.allow_hosts.clone() }
    }
}

/// Delivers what is due in the outbox, forever. Each pass hands every lane with
/// something due to a task of its own (oldest due first); the tasks take turns on
/// `policy.concurrency` permits, so a permit goes to the next delivery the moment a
/// send ends, not at the next pass, and one callback that never answers holds one
/// permit for at most `policy.timeout`, never every lane's callbacks.
pub async fn run_deliveries(log: Log, writer: LogWriter, policy: DeliveryPolicy, clock: Arc<dyn Clock>) {
    let http = match crate::outbound::callback_client(&policy.addresses(), policy.timeout, &policy.extra_roots) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no client for lane callbacks; deliveries stay in the outbox");
            return;
        }
    };
    let depth = log.index_scan(DLQ, "", usize::MAX).map_or(0, |d| d.len());
    metrics::gauge!("dispatch_dlq_depth").set(depth as f64);
    let permits = tokio::sync::Semaphore::new(policy.concurrency.max(1));
    let courier = Arc::new(Courier { log, writer, http, policy, clock, permits, busy: Mutex::default() });
    loop {
        tokio::time::sleep(TICK).await;
        let now = courier.clock.now_ms();
        let due: Vec<Delivery> = outbox(&courier.log).into_iter().filter(|d| d.next_ms <= now).collect();
        let lanes = plan(due, &lock(&courier.busy));
        for (lane, ids) in lanes {
            lock(&courier.busy).insert(lane.clone());
            tokio::spawn(courier.clone().send_lane(lane, ids));
        }
    }
}

/// What every lane's delivery task shares.
struct Courier {
    log: Log,
    writer: LogWriter,
    http: reqwest::Client,
    policy: DeliveryPolicy,
    clock: Arc<dyn Clock>,
    /// Sends in flight at once, across lanes.
    permits: tokio::sync::Semaphore,
    /// Lanes whose task is running (a pass leaves them to it).
    busy: Mutex<HashSet<String>>,
}

impl Courier {
    /// Sends `lane`'s deliveries `ids` in order, each when a permit is free.
    async fn send_lane(self: Arc<Self>, lane: String, ids: Vec<String>) {
        for id in ids {
            let Ok(_permit) = self.permits.acquire().await else { break };
            // Read again: the entry this pass saw may have moved on while it waited.
            if let Some(d) = still_due(&self.log, &id, self.clock.now_ms()) {
                deliver(&self.log, &self.writer, &self.http, (&self.policy, &*self.clock), d).await;
            }
        }
        lock(&self.busy).remove(&lane);
    }
}

/// Lanes, each with the ids of the deliveries its task sends, in order.
type Plan = Vec<(String, Vec<String>)>;

/// The lanes to hand out in one pass, each with the ids of its due deliveries in the
/// order they were made: the lane whose delivery has waited longest first (never by
/// lane id, which would starve late names), and none whose task is still running.
fn plan(mut due: Vec<Delivery>, busy: &HashSet<String>) -> Plan {
    due.sort_by(|a, b| (a.next_ms, &a.id).cmp(&(b.next_ms, &b.id)));
    let mut order: Vec<String> = Vec::new();
    let mut by_lane: HashMap<String, Vec<String>> = HashMap::new();
    for d in due.into_iter().filter(|d| !busy.contains(&d.lane_id)) {
        let ids = by_lane.entry(d.lane_id.clone()).or_insert_with(|| {
            order.push(d.lane_id.clone());
            Vec::new()
        });
        ids.push(d.id);
    }
    order
        .into_iter()
        .map(|lane| {
            let mut ids = by_lane.remove(&lane).unwrap_or_default();
            ids.sort(); // ids are time-ordered: a lane's callbacks go in the order they were made
            (lane, ids)
        })
        .collect()
}

/// The delivery `id` as the outbox holds it now, if it is still there and due.
fn still_due(log: &Log, id: &str, now_ms: i64) -> Option<Delivery> {
    let stored = log.index_get(OUTBOX, id).ok().flatten()?;
    serde_json::from_slice::<Delivery>(&stored).ok().filter(|d| d.next_ms <= now_ms)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn deliver(
    log: &Log,
    writer: &LogWriter,
    http: &reqwest::Client,
    (policy, clock): (&DeliveryPolicy, &dyn Clock),
    mut d: Delivery,
) {
    let secret = log.index_get(SECRETS, &d.lane_id).ok().flatten().unwrap_or_default();
    let sent = match policy.addresses().check_url(&d.url) {
        Ok(url) => http
            .post(url)
            .header("content-type", "application/json")
            .header("x-dispatch-signature", signature(&secret, d.body.as_bytes()))
            .header("x-dispatch-delivery", &d.id)
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| describe(&e)),
        Err(refused) => Err(refused),
    };
    d.attempts += 1;
    metrics::counter!("dispatch_callback_attempts_total").increment(1);
    let failure = match sent {
        Ok(r) if r.status().is_success() => None,
        // The status is kept (operators need it) but no more: no body, no headers.
        Ok(r) => Some(format!("answered {}", r.status().as_u16())),
        Err(e) => Some(e),
    };
    let outcome = match failure {
        None => {
            let ops = vec![IndexOp::Delete { index: OUTBOX.into(), key: d.id.clone() }];
            record(writer, clock.now_ms(), &d, "delivery.succeeded", ops).await
        }
        Some(error) => {
            metrics::counter!("dispatch_callback_failures_total").increment(1);
            d.last_error = Some(error);
            let next = Delivery { events: d.events + 1, ..d.clone() };
            if d.attempts >= policy.attempts {
                tracing::warn!(delivery = %d.id, lane = %d.lane_id, "callback failed its last attempt; dead-lettered");
                metrics::gauge!("dispatch_dlq_depth").increment(1.0);
                let ops = vec![IndexOp::Delete { index: OUTBOX.into(), key: d.id.clone() }, put(DLQ, &next)];
                record(writer, clock.now_ms(), &d, "delivery.dead_lettered", ops).await
            } else {
                let backoff = policy.first_backoff * 2u32.saturating_pow(d.attempts - 1);
                let next = Delivery { next_ms: clock.now_ms() + backoff.as_millis() as i64, ..next };
                record(writer, clock.now_ms(), &d, "delivery.failed", vec![put(OUTBOX, &next)]).await
            }
        }
    };
    if let Err(e) = outcome {
        tracing::warn!(delivery = %d.id, error = %e, "delivery state not recorded; it will be tried again");
    }
}

/// A failed send in words that say what went wrong without echoing what the far side said.
fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut source = e.source();
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::Other
        {
            return io.to_string();
        }
        source = inner.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due(id: &str, lane: &str, next_ms: i64) -> Delivery {
        let (handoff_id, url, body) = (String::new(), String::new(), String::new());
        Delivery {
            id: id.into(),
            lane_id: lane.into(),
            handoff_id,
            url,
            body,
            attempts: 0,
            next_ms,
            last_error: None,
            events: 0,
        }
    }

    #[test]
    fn every_due_lane_is_handed_out_oldest_first_and_each_lane_in_order() {
        let busy: HashSet<String> = ["l-busy".to_owned()].into();
        let many: Vec<Delivery> = (0..40).map(|n| due(&format!("{n:02}"), &format!("l{n:02}"), n)).collect();
        let many_planned: Plan = (0..40).map(|n| (format!("l{n:02}"), vec![format!("{n:02}")])).collect();
        let owned = |want: Vec<(&str, Vec<&str>)>| -> Plan {
            want.into_iter().map(|(l, ids)| (l.to_owned(), ids.into_iter().map(str::to_owned).collect())).collect()
        };
        // (what is due, lanes whose task is running, what one pass hands out)
        let cases: Vec<(Vec<Delivery>, HashSet<String>, Plan)> = vec![
            // The lane that has waited longest goes first, whatever its name.
            (
                vec![due("01", "a", 300), due("02", "z", 100), due("03", "m", 200)],
                HashSet::new(),
                owned(vec![("z", vec!["02"]), ("m", vec!["03"]), ("a", vec!["01"])]),
            ),
            // A lane's callbacks keep the order they were made in, even when a later
            // one fell due first (its earlier one is backing off).
            (vec![due("02", "a", 100), due("01", "a", 150)], HashSet::new(), owned(vec![("a", vec!["01", "02"])])),
            // More lanes than the 16 permits: every one is handed out in one pass.
            (many, HashSet::new(), many_planned),
            // A lane whose task is still running is left to it.
            (vec![due("01", "l-busy", 0), due("02", "b", 5)], busy, owned(vec![("b", vec!["02"])])),
        ];
        for (n, (outbox, busy, want)) in cases.into_iter().enumerate() {
            assert_eq!(plan(outbox, &busy), want, "case {n}");
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}

//! Tickets on the kernel against a real log: waking, passivation bounds, restart, replay.

use std::sync::Arc;
use std::time::Duration;

use storage::{BlobStore, IdempotencyKey, Log, LogWriter};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::kernel::{Entities, Failure, Kernel, Origin, Outcome, RandomIds, Request, SupervisorConfig, SystemClock};
use crate::policy::{Principal, Role};
use crate::ticket::{CreateTicket, Templates, TicketCommand, TicketDeps, TicketState, Tickets};

type CommandOutcome = Outcome<Tickets>;
type CommandError = Failure<Tickets>;

struct Fixture {
    _dir: tempfile::TempDir,
    log: Log,
    sup: Entities<Tickets>,
}

async fn fixture(config: SupervisorConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log.redb")).unwrap();
    let (writer, _h) = LogWriter::start(&log).unwrap();
    let kernel = Kernel { log: log.clone(), writer, clock: Arc::new(SystemClock), ids: Arc::new(RandomIds) };
    let deps = Arc::new(TicketDeps {
        blobs: BlobStore::open(dir.path().join("blobs")).unwrap(),
        templates: Arc::new(Templates::builtin()),
    });
    let sup = Entities::start(kernel, deps, config).await.unwrap();
    Fixture { _dir: dir, log, sup }
}

fn dispatcher() -> Principal {
    Principal {
        sub: "d1".into(),
        role: Role::Dispatcher,
        accounts: vec!["*".into()],
        sites: vec!["*".into()],
        tools: None,
        queues: vec![],
    }
}

async fn send(
    sup: &Entities<Tickets>,
    id: Uuid,
    command: TicketCommand,
    key: &str,
    hash: u8,
) -> Result<CommandOutcome, CommandError> {
    send_as(dispatcher(), sup, id, command, key, hash).await
}

async fn send_as(
    principal: Principal,
    sup: &Entities<Tickets>,
    id: Uuid,
    command: TicketCommand,
    key: &str,
    hash: u8,
) -> Result<CommandOutcome, CommandError> {
    let origin = Origin::caller(&principal, command.tool(), key);
    let idempotency = IdempotencyKey { principal: "d1".into(), route: command.tool().into(), key: key.into() };
    let request = Request { idempotency: Some((idempotency, [hash; 32])), ..Request::new(id, command, origin) };
    sup.run(request).await
}

fn create() -> TicketCommand {
    TicketCommand::Create(CreateTicket {
        account_id: "a".into(),
        site_id: "s".into(),
        incident_type: "LOCKOUT".into(),
        summary: "locked out".into(),
        priority: None,
    })
}

fn cancel() -> TicketCommand {
    TicketCommand::Cancel(crate::ticket::Cancel { reason: "dup".into() })
}

async fn live(sup: &Entities<Tickets>) -> usize {
    sup.live_count().await.unwrap()
}

#[tokio::test]
async fn live_actors_stay_bounded_while_touching_many_tickets() {
    let f = fixture(SupervisorConfig { max_live: 50, idle_after: Duration::from_secs(3600) }).await;
    let mut ids = Vec::new();
    let mut peak = 0;
    for i in 0..400 {
        let id = Uuid::now_v7();
        send(&f.sup, id, create(), &format!("c{i}"), 1).await.unwrap();
        ids.push(id);
        peak = peak.max(live(&f.sup).await);
    }
    assert!(peak <= 50, "peak of {peak} live actors exceeds the bound of 50");
    // A passivated ticket wakes from its snapshot and keeps its history.
    let out = send(&f.sup, ids[0], cancel(), "x0", 2).await.unwrap();
    let ticket = out.state;
    assert_eq!((ticket.state, ticket.version), (TicketState::Cancelled, 2));
    assert_eq!(f.log.global_len().unwrap(), 401);
}

#[tokio::test]
async fn idle_actors_are_passivated_by_the_sweep() {
    let f = fixture(SupervisorConfig { max_live: 1000, idle_after: Duration::from_millis(1) }).await;
    for i in 0..20 {
        send(&f.sup, Uuid::now_v7(), create(), &format!("c{i}"), 1).await.unwrap();
    }
    // The sweep is driven explicitly rather than waited for.
    f.sup.sweep();
    assert_eq!(live(&f.sup).await, 0);
}

#[tokio::test]
async fn a_failed_actor_is_restarted_from_the_log() {
    let f = fixture(SupervisorConfig::default()).await;
    let id = Uuid::now_v7();
    send(&f.sup, id, create(), "c", 1).await.unwrap();
    f.sup.crash(&id);
    // A command queued behind the crash is lost with the actor and answered as
    // unavailable; the client's retry with the same key reaches the restarted actor.
    let mut attempts = 0;
    let out = loop {
        attempts += 1;
        match send(&f.sup, id, cancel(), "x", 2).await {
            Ok(out) => break out,
            Err(Failure::Unavailable(_)) if attempts < 5 => continue,
            Err(e) => panic!("retry {attempts} failed: {e}"),
        }
    };
    let ticket = out.state;
    assert_eq!((ticket.state, ticket.version), (TicketState::Cancelled, 2), "state rebuilt after the crash");
    assert!(f.log.verify_all().unwrap().is_empty());
}

#[tokio::test]
async fn a_retried_command_is_replayed_and_writes_nothing() {
    let f = fixture(SupervisorConfig::default()).await;
    let id = Uuid::now_v7();
    let first = send(&f.sup, id, create(), "k", 1).await.unwrap();
    let again = send(&f.sup, id, create(), "k", 1).await.unwrap();
    assert!(again.replayed && !first.replayed);
    assert_eq!(again.state, first.state);
    assert!(matches!(send(&f.sup, id, create(), "k", 9).await, Err(Failure::KeyReused)));
    assert_eq!(f.log.global_len().unwrap(), 1);
}

#[tokio::test]
async fn a_long_ticket_wakes_from_its_snapshot_and_old_retries_replay_their_own_answer() {
    use crate::ticket::{
        AddEvidence, ConfirmSchedule, DispatchAssignment, ProposeSchedule, Triage, TriageOutcome, Window, store,
    };
    let f = fixture(SupervisorConfig { max_live: 1000, idle_after: Duration::from_millis(1) }).await;
    let id = Uuid::now_v7();
    let created = send(&f.sup, id, create(), "c", 1).await.unwrap();
    let window =
        Window { start: OffsetDateTime::UNIX_EPOCH, end: OffsetDateTime::UNIX_EPOCH + time::Duration::hours(1) };
    let setup = [
        TicketCommand::Triage(Triage { workflow_outcome: TriageOutcome::ReadyToSchedule, priority: None, notes: None }),
        TicketCommand::ProposeSchedule(ProposeSchedule { windows: vec![window.clone()] }),
        TicketCommand::ConfirmSchedule(ConfirmSchedule { window }),
        TicketCommand::Dispatch(DispatchAssignment {
            technician_id: "t1".into(),
            dispatch_mode: None,
            reason: None,
            manager_confirmation: None,
        }),
    ];
    for (i, command) in setup.into_iter().enumerate() {
        send(&f.sup, id, command, &format!("s{i}"), 2).await.unwrap();
    }
    let agent = Principal { sub: "agent-1".into(), role: Role::Agent, ..dispatcher() };
    let evidence = |i: usize| {
        TicketCommand::AddEvidence(AddEvidence {
            kind: "photo".into(),
            uri: format!("blob:{i}"),
            evidence_key: format!("k{i}"),
            metadata: None,
        })
    };
    let mut answers = Vec::new();
    for i in 0..20 {
        answers.push(send_as(agent.clone(), &f.sup, id, evidence(i), &format!("e{i}"), 3).await.unwrap());
    }
    assert_eq!(f.log.snapshot(&store::stream(id)).unwrap().map(|(seq, _)| seq), Some(16), "one snapshot per 16 events");

    f.sup.sweep();
    assert_eq!(live(&f.sup).await, 0);
    let latest = answers[19].state.clone();
    assert_eq!(store::load(&f.log, id).unwrap(), Some(latest.clone()), "snapshot + tail equals the live ticket");
    assert_eq!(latest.version, 25);

    // Retries long after: each replays exactly the answer its first attempt got.
    let again = send(&f.sup, id, create(), "c", 1).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.state, created.state);
    assert!(again.created, "a replayed create still says it created");
    let again = send_as(agent, &f.sup, id, evidence(2), "e2", 3).await.unwrap();
    assert_eq!(again.state, answers[2].state);
    assert_eq!(f.log.global_len().unwrap(), 25, "replays wrote nothing");
}

#[tokio::test]
async fn a_finished_ticket_is_passivated_at_once() {
    let f = fixture(SupervisorConfig::default()).await;
    let (open, done) = (Uuid::now_v7(), Uuid::now_v7());
    send(&f.sup, open, create(), "c1", 1).await.unwrap();
    send(&f.sup, done, create(), "c2", 1).await.unwrap();
    assert_eq!(live(&f.sup).await, 2);
    send(&f.sup, done, cancel(), "x2", 2).await.unwrap();
    assert_eq!(live(&f.sup).await, 1, "the cancelled ticket's actor is gone, the open one stays");
    // Waking it again (a refused command) works and lets it go again.
    assert!(matches!(send(&f.sup, done, cancel(), "x3", 3).await, Err(Failure::Rejected(_))));
    assert_eq!(live(&f.sup).await, 1);
}

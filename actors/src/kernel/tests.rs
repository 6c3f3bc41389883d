//! The command path with a tiny entity, against a real log: what every entity gets.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use storage::{IdempotencyKey, Log, LogWriter};

use super::*;

/// A counter: created, then added to.
#[derive(Debug, Clone, Copy)]
struct Counter;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Count {
    total: i64,
    updated_ms: i64,
}

enum Cmd {
    Create,
    Add(i64),
    Nothing,
}

#[derive(Serialize, Deserialize)]
enum Ev {
    Created,
    Added(i64),
}

impl Entity for Counter {
    const KIND: &'static str = "counter";
    const STREAM: &'static str = "counter";
    const SNAPSHOT_EVERY: Option<u64> = Some(4);
    type Id = String;
    type State = Count;
    type Command = Cmd;
    type Event = Ev;
    type Error = String;
    type Deps = ();

    fn creates(c: &Cmd) -> bool {
        matches!(c, Cmd::Create)
    }
    fn not_found() -> String {
        "no such counter".into()
    }
    fn decide(_: &(), _: &Context<'_, Self>, s: Option<&Count>, c: &Cmd) -> Result<Vec<Ev>, String> {
        match (s, c) {
            (None, Cmd::Create) => Ok(vec![Ev::Created]),
            (Some(_), Cmd::Create) => Err("exists".into()),
            (None, _) => Err(Self::not_found()),
            (Some(_), Cmd::Add(n)) if *n < 0 => Err("only up".into()),
            (Some(_), Cmd::Add(n)) => Ok(vec![Ev::Added(*n)]),
            (Some(_), Cmd::Nothing) => Ok(vec![]),
        }
    }
    fn apply(s: Option<Count>, at: At<'_, String>, e: &Ev) -> Option<Count> {
        match (s, e) {
            (None, Ev::Created) => Some(Count { total: 0, updated_ms: at.time_ms }),
            (Some(c), Ev::Added(n)) => Some(Count { total: c.total + n, updated_ms: at.time_ms }),
            (s, _) => s,
        }
    }
    fn to_snapshot(c: &Count) -> Option<Result<Vec<u8>, String>> {
        Some(serde_json::to_vec(c).map_err(|e| e.to_string()))
    }
    fn from_snapshot(bytes: &[u8]) -> Option<Result<Count, String>> {
        Some(serde_json::from_slice(bytes).map_err(|e| e.to_string()))
    }
    fn event_kind(e: &Ev) -> &'static str {
        match e {
            Ev::Created => "counter.created",
            Ev::Added(_) => "counter.added",
        }
    }
    fn state_name(_: &Count) -> &'static str {
        "COUNTING"
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    kernel: Kernel,
    clock: Arc<ManualClock>,
}

fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log.redb")).unwrap();
    let (writer, _h) = LogWriter::start(&log).unwrap();
    let clock = ManualClock::at(1_000);
    let kernel = Kernel { log, writer, clock: clock.clone(), ids: SeededIds::new(seed) };
    Fixture { _dir: dir, kernel, clock }
}

fn request(command: Cmd, key: Option<&str>, hash: u8) -> Request<Counter> {
    let mut r = Request::new("c1".to_owned(), command, Origin::system("counter.test"));
    r.idempotency =
        key.map(|k| (IdempotencyKey { principal: "p".into(), route: "r".into(), key: k.into() }, [hash; 32]));
    r
}

async fn run(
    f: &Fixture,
    loaded: &mut Loaded<Counter>,
    command: Cmd,
    key: Option<&str>,
    hash: u8,
) -> Result<Outcome<Counter>, Failure<Counter>> {
    execute(&f.kernel, &(), loaded, &request(command, key, hash)).await
}

fn fresh() -> Loaded<Counter> {
    Loaded { state: None, seq: 0 }
}

#[tokio::test]
async fn a_stale_copy_reloads_and_decides_again_on_a_sequence_conflict() {
    let f = fixture(1);
    let mut a = fresh();
    run(&f, &mut a, Cmd::Create, None, 0).await.unwrap();
    let mut stale = Loaded { state: a.state.clone(), seq: a.seq };
    run(&f, &mut a, Cmd::Add(1), None, 0).await.unwrap();
    let out = run(&f, &mut stale, Cmd::Add(5), None, 0).await.unwrap();
    assert_eq!((out.state.total, out.seq), (6, 3), "the second writer saw the first's event");
    assert_eq!(stale.seq, 3);
    assert!(f.kernel.log.verify_all().unwrap().is_empty());
}

#[tokio::test]
async fn a_retry_replays_the_first_answer_and_a_different_request_is_refused() {
    let f = fixture(1);
    let mut c = fresh();
    let created = run(&f, &mut c, Cmd::Create, Some("k1"), 1).await.unwrap();
    let added = run(&f, &mut c, Cmd::Add(2), Some("k2"), 2).await.unwrap();
    run(&f, &mut c, Cmd::Add(3), Some("k3"), 3).await.unwrap();

    let again = run(&f, &mut c, Cmd::Add(2), Some("k2"), 2).await.unwrap();
    assert!(again.replayed && !again.created);
    assert_eq!((again.state.clone(), again.seq), (added.state.clone(), 2), "the state as first answered, not now");
    assert_eq!(again.records[0].event_id, added.records[0].event_id);
    assert!(run(&f, &mut c, Cmd::Create, Some("k1"), 1).await.unwrap().created, "a replayed create says so");
    assert!(created.created);
    assert!(matches!(run(&f, &mut c, Cmd::Add(9), Some("k2"), 9).await, Err(Failure::KeyReused)));
    assert_eq!(f.kernel.log.global_len().unwrap(), 3, "replays and refusals wrote nothing");
}

#[tokio::test]
async fn refusals_and_commands_that_change_nothing_write_nothing() {
    let f = fixture(1);
    let mut c = fresh();
    assert!(matches!(run(&f, &mut c, Cmd::Add(1), None, 0).await, Err(Failure::Rejected(e)) if e == "no such counter"));
    run(&f, &mut c, Cmd::Create, None, 0).await.unwrap();
    assert!(matches!(run(&f, &mut c, Cmd::Add(-1), Some("k"), 1).await, Err(Failure::Rejected(_))));
    let same = run(&f, &mut c, Cmd::Nothing, None, 0).await.unwrap();
    assert!(same.records.is_empty() && same.seq == 1);
    // The refused request left no idempotency record: a corrected retry is not a replay.
    assert!(!run(&f, &mut c, Cmd::Add(1), Some("k"), 2).await.unwrap().replayed);
    assert_eq!(f.kernel.log.global_len().unwrap(), 2);
}

#[tokio::test]
async fn time_and_ids_come_from_the_injected_sources_and_replay_gives_the_same_state() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let f = fixture(42);
        let mut c = fresh();
        run(&f, &mut c, Cmd::Create, None, 0).await.unwrap();
        for n in 1..=9 {
            f.clock.advance(250);
            run(&f, &mut c, Cmd::Add(n), None, 0).await.unwrap();
        }
        let records = f.kernel.log.read_stream("counter/c1", 0).unwrap();
        assert_eq!(records.last().unwrap().time_ms, 1_000 + 9 * 250, "event time is the injected clock's");
        // Waking from snapshot + tail (and from the events alone) equals the live state.
        let woken = load::<Counter>(&f.kernel.log, &"c1".to_owned()).unwrap();
        assert_eq!((woken.state.as_ref(), woken.seq), (c.state.as_ref(), 10));
        assert_eq!(f.kernel.log.snapshot("counter/c1").unwrap().map(|(seq, _)| seq), Some(8));
        assert_eq!(load_at::<Counter>(&f.kernel.log, &"c1".to_owned(), 10).unwrap(), c.state);
        runs.push(records.iter().map(|r| (r.event_id.clone(), r.time_ms, r.hash)).collect::<Vec<_>>());
    }
    assert_eq!(runs[0], runs[1], "same seed, same clock: the same log, byte for byte");
}

#[tokio::test]
async fn an_unknown_id_costs_no_actor_and_a_final_state_is_let_go() {
    let f = fixture(1);
    let counters =
        Entities::<Counter>::start(f.kernel.clone(), Arc::new(()), SupervisorConfig::default()).await.unwrap();
    assert!(matches!(counters.run(request(Cmd::Add(1), None, 0)).await, Err(Failure::Rejected(_))));
    assert_eq!(counters.live_count().await.unwrap(), 0, "no actor woken for an id that never existed");
    counters.run(request(Cmd::Create, None, 0)).await.unwrap();
    assert_eq!(counters.get(&"c1".to_owned()).await.unwrap().map(|c| c.total), Some(0));
    assert_eq!(counters.live_count().await.unwrap(), 1);
    counters.stop().await;
}

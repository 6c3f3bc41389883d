//! The write path on a failing disk. Writes and fsyncs fail on command while appenders
//! run (a failed fsync also undoes what was written since the last good one, as Linux
//! may after a write-back error): nothing failed is acknowledged, the log says why it
//! refuses meanwhile, it heals by itself once the disk works again, and afterwards the
//! real file, opened without faults, holds every acknowledged append, whole, with its
//! chains intact.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dispatch_storage::{AppendError, Faults, Hash, Log, LogWriter};
use rand::{Rng, SeedableRng};

const STREAMS: u64 = 8;
const ROUNDS: usize = 12;

#[derive(Default)]
struct Tally {
    acked: AtomicU64,
    refused: AtomicU64,
    /// (stream, seq) → hash of every acknowledged event.
    records: Mutex<HashMap<(String, u64), Hash>>,
}

/// Appends two-event batches to `stream` until `stop`; a refused one is tried again.
async fn appender(writer: LogWriter, log: Log, stream: String, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut seq = log.stream_head(&stream).unwrap().0;
    while !stop.load(Ordering::SeqCst) {
        let mut append = support::append(&stream, seq, seq + 1);
        append.events.push(support::event("second", seq + 2));
        match writer.append(append).await {
            Ok(done) => {
                let mut records = tally.records.lock().unwrap();
                for r in &done.records {
                    records.insert((stream.clone(), r.seq), r.hash);
                }
                seq = done.records.last().unwrap().seq;
                tally.acked.fetch_add(1, Ordering::SeqCst);
            }
            Err(AppendError::SequenceConflict { actual, .. }) => seq = actual,
            Err(AppendError::Storage(_)) => {
                tally.refused.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await; // back off while the disk fails
            }
            Err(e) => panic!("unexpected: {e}"),
        }
    }
}

/// Waits (bounded) until `counter` passes `from + by`.
async fn grows(counter: &AtomicU64, by: u64, what: &str) {
    let from = counter.load(Ordering::SeqCst);
    for _ in 0..30_000 {
        if counter.load(Ordering::SeqCst) >= from + by {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("{what} did not happen within 30 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_and_fsyncs_lose_nothing_acknowledged() {
    let seed: u64 = std::env::var("FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("fault schedule FAULT_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faults.redb");
    let faults = Faults::new();
    let log = Log::open_with_faults(&path, faults.clone()).unwrap();
    let (writer, handle) = LogWriter::start(&log).unwrap();
    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let appenders: Vec<_> = (0..STREAMS)
        .map(|s| {
            let args = (writer.clone(), log.clone(), format!("faults/{s}"), tally.clone(), stop.clone());
            tokio::spawn(appender(args.0, args.1, args.2, args.3, args.4))
        })
        .collect();

    for round in 0..ROUNDS {
        grows(&tally.acked, rng.gen_range(5..200), "appends on a working disk").await;
        match rng.gen_bool(0.5) {
            true => faults.fail_syncs(),
            false => faults.fail_writes(),
        }
        grows(&tally.refused, 1, "a refusal on the failing disk").await;
        let why = log.fault().unwrap_or_default();
        assert!(why.contains("injected"), "round {round}: the log says why it refuses: {why:?}");
        faults.heal();
        grows(&tally.acked, 1, "healing without a restart").await;
    }
    stop.store(true, Ordering::SeqCst);
    for a in appenders {
        a.await.unwrap();
    }
    drop(writer);
    handle.join();
    drop(log);

    // The real file, without the failing disk: every acknowledged event, whole.
    let log = Log::open(&path).unwrap();
    assert!(log.verify_all().unwrap().is_empty(), "seed {seed}: chains broken");
    let records = tally.records.lock().unwrap();
    for ((stream, seq), hash) in records.iter() {
        let got = log.read_stream(stream, seq - 1).unwrap();
        let found = got.first().unwrap_or_else(|| panic!("seed {seed}: acknowledged {stream}#{seq} lost"));
        assert_eq!(&found.hash, hash, "seed {seed}: {stream}#{seq} changed");
    }
    for s in 0..STREAMS {
        let (head, _) = log.stream_head(&format!("faults/{s}")).unwrap();
        assert_eq!(head % 2, 0, "seed {seed}: a two-event append was half written in faults/{s}");
    }
    println!(
        "{} appends acknowledged, {} refused, {} faults injected over {ROUNDS} rounds; nothing acknowledged lost",
        tally.acked.load(Ordering::SeqCst),
        tally.refused.load(Ordering::SeqCst),
        faults.injected()
    );
}

//! A copy of the log taken while writers append is the log at one global position:
//! it opens, verifies, and holds exactly what its summary says.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use dispatch_storage::{Log, LogWriter};
use support::append;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_taken_during_writes_is_the_log_at_one_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log.redb")).unwrap();
    let (writer, handle) = LogWriter::start(&log).unwrap();
    let evidence = format!("blob:sha256:{}", "ab".repeat(32));
    let mut first = append("ticket/evidence", 0, 0);
    first.events[0].payload = format!("{{\"photo\":\"{evidence}\"}}").into_bytes();
    writer.append(first).await.unwrap();
    // Writers keep appending to 7 streams while the copy runs.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..7)
        .map(|s| {
            let (writer, stop) = (writer.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let mut seq = 0;
                while !*stop.borrow() && seq < 2_000 {
                    writer.append(append(&format!("s/{s}"), seq, seq)).await.unwrap();
                    seq += 1;
                }
            })
        })
        .collect();
    while log.global_len().unwrap() < 200 {
        tokio::task::yield_now().await;
    }
    let copy = dir.path().join("copy.redb");
    let (summary, blobs) = {
        let (log, copy) = (log.clone(), copy.clone());
        tokio::task::spawn_blocking(move || log.copy_to(&copy)).await.unwrap().unwrap()
    };
    stop_tx.send(true).unwrap();
    for w in writers {
        w.await.unwrap();
    }
    // The copy may land between two commits at any point after the 200th event (CI once took
    // it at exactly 200), never past what the log holds once the writers have stopped.
    let written = log.global_len().unwrap();
    assert!(summary.global_position >= 200 && summary.global_position <= written, "{summary:?}");
    assert_eq!(summary.streams, 8, "{summary:?}");
    assert_eq!(blobs.into_iter().map(|b| b.to_string()).collect::<Vec<_>>(), vec![evidence]);
    let copied = Log::open(&copy).unwrap();
    assert_eq!(copied.summary().unwrap(), summary, "the copy holds what its summary says");
    assert!(copied.verify_all().unwrap().is_empty(), "every chain of the copy verifies");
    assert_eq!(copied.global_len().unwrap(), summary.global_position);
    assert!(log.copy_to(&copy).is_err(), "an existing file is never overwritten");
    drop(writer);
    handle.join();
}

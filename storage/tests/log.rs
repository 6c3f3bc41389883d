//! Behaviour of the log through its public API: appends, conflicts, idempotency,
//! indexes and snapshots, group commit, tamper detection, reopen.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use dispatch_storage::{AppendError, IdempotencyKey, IdempotencyRecord, IndexOp, Log, LogWriter, StoredResponse};
use support::append;

fn open() -> (tempfile::TempDir, Log, LogWriter, dispatch_storage::WriterHandle) {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log.redb")).unwrap();
    let (writer, handle) = LogWriter::start(&log).unwrap();
    (dir, log, writer, handle)
}

#[tokio::test]
async fn appends_chain_per_stream_and_order_globally() {
    let (_dir, log, writer, _h) = open();
    let a1 = writer.append(append("ticket/a", 0, 1)).await.unwrap();
    let b1 = writer.append(append("ticket/b", 0, 2)).await.unwrap();
    let a2 = writer.append(append("ticket/a", 1, 3)).await.unwrap();
    assert_eq!(a1.records[0].seq, 1);
    assert_eq!(a2.records[0].seq, 2);
    assert_eq!(a2.records[0].prev_hash, a1.records[0].hash);
    assert_eq!(b1.records[0].prev_hash, [0; 32], "a new stream starts a new chain");
    let positions: Vec<u64> = log.read_global(1, 10).unwrap().iter().map(|r| r.global_position).collect();
    assert_eq!(positions, vec![1, 2, 3]);
    assert_eq!(log.read_stream("ticket/a", 0).unwrap().len(), 2);
    assert_eq!(log.read_stream("ticket/a", 1).unwrap()[0].seq, 2);
    assert!(log.verify_all().unwrap().is_empty());
}

#[tokio::test]
async fn stale_expected_seq_is_refused_and_writes_nothing() {
    let (_dir, log, writer, _h) = open();
    writer.append(append("s", 0, 1)).await.unwrap();
    let mut stale = append("s", 0, 2);
    stale.index_ops.push(IndexOp::Put { index: "i".into(), key: "k".into(), value: b"v".to_vec() });
    match writer.append(stale).await {
        Err(AppendError::SequenceConflict { expected: 0, actual: 1, .. }) => {}
        other => panic!("expected a sequence conflict, got {other:?}"),
    }
    assert_eq!(log.global_len().unwrap(), 1);
    assert_eq!(log.index_get("i", "k").unwrap(), None, "index op of a refused append is not applied");
}

#[tokio::test]
async fn an_idempotency_key_is_recorded_once() {
    let (_dir, log, writer, _h) = open();
    let key = IdempotencyKey { principal: "u1".into(), route: "POST /x".into(), key: "k1".into() };
    let record = IdempotencyRecord {
        request_hash: [7; 32],
        status: 201,
        response: StoredResponse::Body(b"{}".to_vec()),
        created_ms: 1,
    };
    let mut first = append("s", 0, 1);
    first.idempotency = Some((key.clone(), record.clone()));
    writer.append(first).await.unwrap();
    let mut again = append("t", 0, 2);
    again.idempotency = Some((key.clone(), IdempotencyRecord { request_hash: [8; 32], ..record.clone() }));
    match writer.append(again).await {
        Err(AppendError::IdempotencyKeyExists(stored)) => assert_eq!(stored, record),
        other => panic!("expected the stored record, got {other:?}"),
    }
    assert_eq!(log.idempotency(&key).unwrap(), Some(record));
    assert_eq!(log.global_len().unwrap(), 1, "the duplicate wrote nothing");
}

#[tokio::test]
async fn snapshots_and_indexes_commit_with_their_events() {
    let (_dir, log, writer, _h) = open();
    let mut a = append("ticket/x", 0, 1);
    a.snapshot = Some(b"state-1".to_vec());
    a.index_ops = vec![
        IndexOp::Put { index: "by_state".into(), key: "NEW/x".into(), value: vec![] },
        IndexOp::Put { index: "by_state".into(), key: "NEW/y".into(), value: vec![] },
        IndexOp::Put { index: "by_site".into(), key: "NEW/z".into(), value: vec![] },
    ];
    writer.append(a).await.unwrap();
    let mut b = append("ticket/x", 1, 2);
    b.snapshot = Some(b"state-2".to_vec());
    b.index_ops = vec![IndexOp::Delete { index: "by_state".into(), key: "NEW/y".into() }];
    writer.append(b).await.unwrap();
    assert_eq!(log.snapshot("ticket/x").unwrap(), Some((2, b"state-2".to_vec())));
    let keys: Vec<String> = log.index_scan("by_state", "NEW/", 10).unwrap().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec!["NEW/x".to_string()], "scan stays inside its index and prefix");
}

#[tokio::test]
async fn concurrent_appends_share_commits() {
    let (_dir, log, writer, _h) = open();
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let w = writer.clone();
            tokio::spawn(async move { w.append(append(&format!("s/{i}"), 0, i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(log.global_len().unwrap(), 200);
    assert!(log.verify_all().unwrap().is_empty());
}

#[tokio::test]
async fn reopening_keeps_everything_and_a_changed_record_fails_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    {
        let log = Log::open(&path).unwrap();
        let (writer, handle) = LogWriter::start(&log).unwrap();
        for i in 0..5 {
            writer.append(append("s", i, i)).await.unwrap();
        }
        drop(writer);
        handle.join();
    }
    let log = Log::open(&path).unwrap();
    assert_eq!(log.stream_head("s").unwrap().0, 5);
    assert!(log.verify_stream("s").unwrap().is_none());

    // Rewrite event 3's payload behind the log's back: the chain must show it.
    let mut rec = log.read_stream("s", 2).unwrap().remove(0);
    rec.payload = b"{\"n\":999}".to_vec();
    let tampered = dispatch_storage::EventRecord { ..rec };
    assert_ne!(tampered.compute_hash(), tampered.hash, "a changed payload no longer matches its hash");
}

#[tokio::test]
async fn idempotency_records_past_retention_are_purged() {
    let (_dir, log, writer, _h) = open();
    let key = |k: &str| IdempotencyKey { principal: "u1".into(), route: "POST /x".into(), key: k.into() };
    for (i, (k, created_ms)) in [("old", 1_000), ("new", 5_000)].into_iter().enumerate() {
        let mut a = append("s", i as u64, i as u64);
        a.idempotency = Some((
            key(k),
            IdempotencyRecord {
                request_hash: [0; 32],
                status: 200,
                response: StoredResponse::Body(vec![]),
                created_ms,
            },
        ));
        writer.append(a).await.unwrap();
    }
    assert_eq!(writer.purge_idempotency(2_000).await.unwrap(), 1);
    assert_eq!(log.idempotency(&key("old")).unwrap(), None);
    assert!(log.idempotency(&key("new")).unwrap().is_some());
    assert_eq!(log.global_len().unwrap(), 2, "events are never purged");
}

/// A file stamped with a newer data format is refused, not misread; this one's is kept.
#[test]
fn a_log_from_a_newer_format_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    drop(Log::open(&path).unwrap());
    drop(Log::open(&path).unwrap()); // reopening its own format is fine
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            use redb::ReadableTable;
            let meta: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut table = txn.open_table(meta).unwrap();
            let stamped = table.get("format_version").unwrap().unwrap().value().to_vec();
            assert_eq!(stamped, dispatch_storage::FORMAT_VERSION.to_le_bytes());
            table.insert("format_version", (dispatch_storage::FORMAT_VERSION + 1).to_le_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let refused = Log::open(&path).err().expect("a newer format must not open").to_string();
    assert!(refused.contains("newer than this dispatch reads") && refused.contains("restore a backup"), "{refused}");
}

/// A process that briefly shares the file's lock (a dispatch's forked child between fork
/// and exec, after the dispatch died) delays a restart's open; it does not fail it.
#[test]
fn opening_waits_for_a_lock_that_is_let_go() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.redb");
    drop(Log::open(&path).unwrap());
    // flock(1) holds redb's whole-file lock until its `cat` sees the end of its input.
    let mut holder = Command::new("flock")
        .arg("-x")
        .arg(&path)
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let held = || !Command::new("flock").arg("-n").arg(&path).arg("true").status().unwrap().success();
    while !held() {
        assert!(holder.try_wait().unwrap().is_none(), "the holder died before it took the lock");
    }
    let mut input = holder.stdin.take().unwrap();
    let release = std::thread::spawn(move || {
        input.write_all(b"bye\n").unwrap();
        drop(input); // `cat` sees the end of its input, and the lock goes with flock
        holder.wait().unwrap()
    });
    let opened = Log::open(&path);
    assert!(release.join().unwrap().success());
    assert!(opened.is_ok(), "the lock was let go within the wait: {:?}", opened.err());
}

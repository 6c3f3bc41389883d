//! Property-based fuzzing of every decoder a peer reaches: wire frames in both
//! directions and join tokens. Random bytes and mutated valid frames must decode or
//! fail with an error — never panic, never try a huge allocation (that aborts the
//! test process). `FUZZ_CASES` sets the cases per target (CI: the default);
//! `fuzz/run.sh` runs them for as long as asked.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use dispatch_cluster::proto::{
    Bootstrap, Capabilities, ConfigAck, ConfigOutcome, JobAnswer, JobResult, JobSpec, NetworkPolicy, NodeConfig, Push,
    PushReply, Request, Response,
};
use dispatch_cluster::{token, wire};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

fn node_config() -> NodeConfig {
    NodeConfig {
        heartbeat_interval_ms: 1_000,
        max_concurrent_jobs: 2,
        sandbox_image: "img".into(),
        allowed_network_policies: vec!["none".into()],
        default_memory_bytes: 1 << 20,
        default_cpu_millis: 100,
        labels: [("k".to_owned(), "v".to_owned())].into(),
    }
}

fn job() -> JobSpec {
    JobSpec {
        job_id: "t/1".into(),
        task_id: "t".into(),
        attempt: 1,
        command: vec!["echo".into(), "hi".into()],
        image: "img".into(),
        network: NetworkPolicy::None,
        memory_bytes: 1 << 20,
        cpu_millis: 100,
        pids: 16,
        timeout_ms: 1_000,
        env: [("K".to_owned(), "V".to_owned())].into(),
        files: [("a.txt".to_owned(), "x".to_owned())].into(),
        output_cap: 1024,
    }
}

/// One valid frame body (version + bincode) of every message in both directions.
fn samples() -> Vec<Vec<u8>> {
    let caps = Capabilities {
        hostname: "h".into(),
        cores: 2,
        labels: [("a".into(), "b".into())].into(),
        ..Default::default()
    };
    let result = JobResult { exit_code: Some(0), stdout: "out".into(), ..Default::default() };
    let body = |frame: Vec<u8>| frame[4..].to_vec();
    vec![
        body(
            wire::encode(&Request::Join {
                token: "dspj1.a.b".into(),
                public_key: vec![1; 65],
                capabilities: caps.clone(),
            })
            .unwrap(),
        ),
        body(wire::encode(&Request::Hello { capabilities: caps }).unwrap()),
        body(wire::encode(&Request::Heartbeat { running: vec!["t/1".into()] }).unwrap()),
        body(wire::encode(&Request::JobFinished { job_id: "t/1".into(), result: result.clone() }).unwrap()),
        body(wire::encode(&Request::RenewCert { public_key: vec![2; 65] }).unwrap()),
        body(wire::encode(&Request::Ping { sent_ns: 9 }).unwrap()),
        body(
            wire::encode(&Response::Joined(Bootstrap {
                node_id: "node-1".into(),
                cert_der: vec![3; 300],
                not_after_ms: 5,
                ca_der: vec![4; 300],
                orchestrators: vec!["127.0.0.1:7443".into()],
                config_version: 1,
            }))
            .unwrap(),
        ),
        body(wire::encode(&Response::Refused { code: "X".into(), message: "no".into() }).unwrap()),
        body(wire::encode(&Push::ApplyConfig { version: 2, config: node_config() }).unwrap()),
        body(wire::encode(&Push::RunJob { job: job(), lease_ms: 5_000 }).unwrap()),
        body(wire::encode(&PushReply::ConfigAck(ConfigAck { version: 2, outcome: ConfigOutcome::Applied })).unwrap()),
        body(wire::encode(&PushReply::Job(JobAnswer::AlreadyFinished(result))).unwrap()),
    ]
}

/// Every decoder of the protocol, on the same bytes.
fn decode_all(frame: &[u8]) {
    let _ = wire::decode::<Request>(frame);
    let _ = wire::decode::<Response>(frame);
    let _ = wire::decode::<Push>(frame);
    let _ = wire::decode::<PushReply>(frame);
}

/// A mutation of a valid frame: bytes overwritten, inserted, and a cut.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let samples = samples();
    let n = samples.len();
    (0..n, proptest::collection::vec((any::<usize>(), any::<u8>(), any::<bool>()), 1..8), any::<Option<usize>>())
        .prop_map(move |(i, edits, cut)| {
            let mut frame = samples[i].clone();
            for (pos, byte, insert) in edits {
                let pos = pos % (frame.len() + 1);
                if insert || pos == frame.len() {
                    frame.insert(pos, byte);
                } else {
                    frame[pos] = byte;
                }
            }
            if let Some(cut) = cut {
                frame.truncate(cut % (frame.len() + 1));
            }
            frame
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_frames_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600), versioned in any::<bool>()) {
        if versioned {
            bytes.splice(0..0, wire::PROTOCOL_VERSION.to_be_bytes());
        }
        decode_all(&bytes);
    }

    #[test]
    fn mutated_frames_never_panic(frame in mutated()) {
        decode_all(&frame);
    }

    #[test]
    fn join_tokens_never_panic(body in "[A-Za-z0-9_-]{0,200}", mac in "[A-Za-z0-9_.=-]{0,80}", raw in ".{0,300}") {
        for t in [format!("dspj1.{body}.{mac}"), raw.clone(), format!("dspj1.{raw}")] {
            prop_assert!(token::verify(&t, b"key").is_err());
            let _ = token::read(&t);
        }
    }
}

#[test]
fn the_samples_decode_as_what_they_are() {
    // The mutation targets are real frames: if they stopped decoding, the fuzzer would
    // only be testing error paths.
    let s = samples();
    assert!(s[..6].iter().all(|f| wire::decode::<Request>(f).is_ok()));
    assert!(s[6..8].iter().all(|f| wire::decode::<Response>(f).is_ok()));
    assert!(s[8..10].iter().all(|f| wire::decode::<Push>(f).is_ok()));
    assert!(s[10..].iter().all(|f| wire::decode::<PushReply>(f).is_ok()));
}

//! The cluster protocol end to end on real UDP sockets on 127.0.0.1, in one process:
//! join, mutual TLS, configuration acknowledged, removal, refusals, renewal.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actors::node::{ConfigOutcome, Membership, MembershipConfig, NodeCommand, NodeConfig, NodeState, Origin};
use actors::storage::{Log, LogWriter};
use cluster::certs;
use cluster::proto::{Capabilities, Request, Response, codes};
use cluster::{token, transport};
use dispatch_node::cluster_edge::OrchestratorCluster;
use dispatch_node::worker::{self, Worker, WorkerError, WorkerStore};
use dispatch_node::{actors, cluster};
use tokio::sync::watch;

struct Orchestrator {
    cluster: Arc<OrchestratorCluster>,
    endpoint: quinn::Endpoint,
    log: Log,
    kernel: actors::kernel::Kernel,
    _dir: tempfile::TempDir,
}

async fn orchestrator(cert_lifetime: Duration) -> Orchestrator {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path().join("log.redb")).unwrap();
    let (writer, _handle) = LogWriter::start(&log).unwrap();
    let config = MembershipConfig {
        default_config: NodeConfig { heartbeat_interval_ms: 100, ..NodeConfig::default() },
        ..Default::default()
    };
    let kernel = actors::kernel::Kernel {
        log: log.clone(),
        writer: writer.clone(),
        clock: Arc::new(actors::kernel::SystemClock),
        ids: Arc::new(actors::kernel::RandomIds),
    };
    let membership = Membership::start(kernel.clone(), config).await.unwrap();
    let ca = Arc::new(certs::open_or_create_ca(&dir.path().join("ca"), SystemTime::now(), Default::default()).unwrap());
    let socket = transport::udp_socket("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    let cluster = OrchestratorCluster::new(membership, ca, b"token key".to_vec(), vec![addr.to_string()])
        .with_node_cert_lifetime(cert_lifetime);
    let tls = cluster.server_tls().unwrap();
    let endpoint = transport::endpoint(socket, Some(tls), None).unwrap();
    let cluster = Arc::new(cluster);
    tokio::spawn(cluster.clone().serve(endpoint.clone()));
    Orchestrator { cluster, endpoint, log, kernel, _dir: dir }
}

fn client_endpoint() -> quinn::Endpoint {
    transport::endpoint(transport::udp_socket("127.0.0.1:0".parse().unwrap()).unwrap(), None, None).unwrap()
}

fn caps(host: &str) -> Capabilities {
    Capabilities { hostname: host.into(), cores: 2, ..Default::default() }
}

async fn token(o: &Orchestrator, uses: u32, ttl: Duration) -> String {
    o.cluster.create_token(BTreeMap::new(), uses, ttl, Origin::system("test")).await.unwrap().1
}

/// Waits on the worker's status until `pred` holds (bounded).
async fn until(status: &mut watch::Receiver<worker::WorkerStatus>, pred: impl Fn(&worker::WorkerStatus) -> bool) {
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| pred(s))).await.expect("status in time").unwrap();
}

async fn node_state(o: &Orchestrator, id: &str) -> NodeState {
    o.cluster.membership.lookup(id).await.unwrap().view().await.unwrap().node.state
}

#[tokio::test]
async fn a_worker_joins_runs_its_config_and_stops_when_removed() {
    let o = orchestrator(Duration::from_secs(3600)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(WorkerStore::open(dir.path()).unwrap());
    let endpoint = client_endpoint();
    let t = token(&o, 1, Duration::from_secs(60)).await;
    let identity = worker::join(&store, &endpoint, &t, None, caps("w1"), Default::default()).await.unwrap();
    assert_eq!(identity.node_id, "node-1");

    // A used-up token is refused with its reason.
    let other = tempfile::tempdir().unwrap();
    let other_store = WorkerStore::open(other.path()).unwrap();
    match worker::join(&other_store, &endpoint, &t, None, caps("w2"), Default::default()).await {
        Err(WorkerError::Refused { code, message }) => {
            assert_eq!(code, "TOKEN_USED_UP");
            assert!(message.contains("no uses left"), "{message}");
        }
        other => panic!("expected refusal, got {other:?}"),
    }

    let worker = Arc::new(Worker::new(store.clone(), endpoint.clone(), caps("w1"), None).unwrap());
    let mut status = worker.status();
    let (stop, stopped) = watch::channel(false);
    let run = tokio::spawn({
        let w = worker.clone();
        async move { w.run(stopped).await }
    });
    until(&mut status, |s| s.ready().is_ok()).await;
    assert_eq!(status.borrow().applied_version, Some(1));
    let view = o.cluster.membership.lookup("node-1").await.unwrap().view().await.unwrap();
    assert_eq!(view.node.state, NodeState::Active);
    assert_eq!(
        view.node.config_ack.as_ref().map(|a| (a.version, a.outcome.clone())),
        Some((1, ConfigOutcome::Applied))
    );

    // A changed configuration reaches the connected node and is acknowledged.
    let changed = NodeConfig { max_concurrent_jobs: 7, ..view.node.config.clone() };
    let node = o
        .cluster
        .membership
        .command("node-1", NodeCommand::SetConfig { config: changed }, Origin::system("test"))
        .await
        .unwrap();
    assert_eq!(node.config_version, 2);
    until(&mut status, |s| s.applied_version == Some(2)).await;
    assert_eq!(store.applied_config().unwrap().map(|(v, c)| (v, c.max_concurrent_jobs)), Some((2, 7)));

    // Drain keeps it connected; remove ends it for good.
    o.cluster.membership.command("node-1", NodeCommand::Drain, Origin::system("test")).await.unwrap();
    assert_eq!(node_state(&o, "node-1").await, NodeState::Draining);
    o.cluster.membership.command("node-1", NodeCommand::Remove, Origin::system("test")).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await.expect("worker stops").unwrap();
    match ended {
        Err(WorkerError::Refused { code, .. }) => assert_eq!(code, codes::NODE_REMOVED),
        other => panic!("expected removal, got {other:?}"),
    }
    drop(stop);

    // The removed node's certificate no longer opens anything.
    let key = certs::NodeKey::from_pkcs8(&identity.key_pkcs8).unwrap();
    let tls = certs::node_client_config(&identity.ca_der, &identity.cert_der, &key).unwrap();
    let conn = transport::connect(&endpoint, o.endpoint.local_addr().unwrap(), tls).await.unwrap();
    match transport::call(&conn, &Request::Hello { capabilities: caps("w1") }).await.unwrap() {
        Response::Refused { code, .. } => assert_eq!(code, codes::NODE_REMOVED),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn forged_expired_revoked_tokens_and_certificateless_requests_are_refused() {
    let o = orchestrator(Duration::from_secs(3600)).await;
    let endpoint = client_endpoint();
    let dir = tempfile::tempdir().unwrap();
    let store = WorkerStore::open(dir.path()).unwrap();
    let join = |t: String| {
        let (store, endpoint) = (&store, &endpoint);
        async move { worker::join(store, endpoint, &t, None, caps("w"), Default::default()).await }
    };
    let code_of = |r: Result<worker::Identity, WorkerError>| match r {
        Err(WorkerError::Refused { code, .. }) => code,
        other => panic!("expected refusal, got {other:?}"),
    };

    // Forged: valid claims (right CA pin and address) signed with another key.
    let real = token(&o, 5, Duration::from_secs(60)).await;
    let forged = token::sign(&token::read(&real).unwrap(), b"not the orchestrator's key");
    assert_eq!(code_of(join(forged).await), "TOKEN_FORGED");

    let revoked = token(&o, 5, Duration::from_secs(60)).await;
    o.cluster.membership.revoke_token(&token::read(&revoked).unwrap().id, Origin::system("test")).await.unwrap();
    assert_eq!(code_of(join(revoked).await), "TOKEN_REVOKED");

    let expiring = token(&o, 5, Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(5)).await; // wall-clock expiry, not synchronization
    assert_eq!(code_of(join(expiring).await), "TOKEN_EXPIRED");
    assert!(store.identity().unwrap().is_none(), "nothing stored after refusals");

    // A token pinning another CA: the worker refuses the orchestrator, not the reverse.
    let mut wrong_pin = token::read(&real).unwrap();
    wrong_pin.ca_sha256 = "00".repeat(32);
    match join(token::sign(&wrong_pin, b"x")).await {
        Err(WorkerError::Transport(e)) => assert!(e.to_string().contains("fingerprint"), "{e}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }

    // No client certificate: anything but a join is refused.
    let pin = o.cluster.ca_fingerprint();
    let conn =
        transport::connect(&endpoint, o.endpoint.local_addr().unwrap(), certs::join_client_config(&pin).unwrap())
            .await
            .unwrap();
    match transport::call(&conn, &Request::Heartbeat { running: vec![] }).await.unwrap() {
        Response::Refused { code, .. } => assert_eq!(code, codes::CERT_REQUIRED),
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_certificate_is_renewed_before_it_expires() {
    // Node certificates live 3 s; heartbeats every 100 ms; renewal after 2 s.
    let o = orchestrator(Duration::from_secs(3)).await;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(WorkerStore::open(dir.path()).unwrap());
    let endpoint = client_endpoint();
    let first = worker::join(
        &store,
        &endpoint,
        &token(&o, 1, Duration::from_secs(60)).await,
        None,
        caps("w"),
        Default::default(),
    )
    .await
    .unwrap();
    let worker = Arc::new(Worker::new(store.clone(), endpoint, caps("w"), None).unwrap());
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn({
        let w = worker.clone();
        async move { w.run(stopped).await }
    });
    let node = o.cluster.membership.lookup(&first.node_id).await.unwrap();
    // Renewed on both sides: the orchestrator recorded the new certificate, the worker
    // saved it and reconnected with it (which retires the old one).
    let (renewed, now) = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let view = node.view().await.unwrap();
            let saved = store.identity().unwrap().unwrap();
            if view.node.certs.len() == 2 && view.node.certs[0].retired && saved.cert_der != first.cert_der {
                return (view, saved);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("renewed in time");
    assert_eq!(renewed.node.certs[1].fingerprint, certs::fingerprint(&now.cert_der));
    let by_new_cert = o.cluster.membership.identify(&certs::fingerprint(&now.cert_der)).await;
    assert_eq!(by_new_cert.map(|n| n.id), Some(first.node_id.clone()));

    // The replaced certificate opens nothing any more, for any request.
    let key = certs::NodeKey::from_pkcs8(&first.key_pkcs8).unwrap();
    let tls = certs::node_client_config(&first.ca_der, &first.cert_der, &key).unwrap();
    // A heartbeat is admitted by the node actor as it records it, not by the edge's
    // look at the node: the same refusal (each on its own connection: a refusal closes it).
    for request in [Request::Ping { sent_ns: 1 }, Request::Heartbeat { running: vec![] }] {
        let conn = transport::connect(&client_endpoint(), o.endpoint.local_addr().unwrap(), tls.clone()).await.unwrap();
        match transport::call(&conn, &request).await.unwrap() {
            Response::Refused { code, .. } => assert_eq!(code, codes::CERT_REPLACED, "{request:?}"),
            other => panic!("expected a refusal of {request:?}, got {other:?}"),
        }
    }
}

/// Sends raw bytes as one request on a new stream and reads the answer.
async fn raw_call(conn: &quinn::Connection, bytes: &[u8]) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    send.finish().unwrap();
    tokio::time::timeout(Duration::from_secs(10), cluster::wire::read::<Response>(&mut recv))
        .await
        .expect("an answer in time")
        .expect("a decodable answer")
}

#[tokio::test]
async fn a_hostile_peer_without_a_certificate_gets_refusals_and_the_orchestrator_keeps_answering() {
    let o = orchestrator(Duration::from_secs(3600)).await;
    let endpoint = client_endpoint();
    let pin = o.cluster.ca_fingerprint();
    let addr = o.endpoint.local_addr().unwrap();
    let dial =
        || async { transport::connect(&endpoint, addr, certs::join_client_config(&pin).unwrap()).await.unwrap() };

    // The frame from the security report: a Join whose token claims 2^62 bytes.
    let frame = [0, 0, 0, 0x0C, 0, 1, 0, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0x40];
    match raw_call(&dial().await, &frame).await {
        Response::Refused { code, .. } => assert_eq!(code, codes::BAD_REQUEST),
        other => panic!("expected refusal, got {other:?}"),
    }
    // The same claim in every request type, and a frame that is cut short.
    for variant in 0u8..6 {
        let body = [0, 1, variant, 0xFD, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F];
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        assert!(matches!(raw_call(&dial().await, &frame).await, Response::Refused { .. }), "variant {variant}");
    }
    let conn = dial().await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&[0, 0, 0, 100, 0, 1]).await.unwrap();
    send.finish().unwrap();
    assert!(cluster::wire::read::<Response>(&mut recv).await.is_ok(), "a truncated frame is answered");

    // Still answering: a real join goes through.
    let dir = tempfile::tempdir().unwrap();
    let store = WorkerStore::open(dir.path()).unwrap();
    let t = token(&o, 1, Duration::from_secs(60)).await;
    assert_eq!(
        worker::join(&store, &endpoint, &t, None, caps("w"), Default::default()).await.unwrap().node_id,
        "node-1"
    );
}

#[tokio::test]
async fn a_retried_join_with_the_same_key_gets_the_same_node() {
    let o = orchestrator(Duration::from_secs(3600)).await;
    let endpoint = client_endpoint();
    let t = token(&o, 1, Duration::from_secs(60)).await;
    let key = certs::NodeKey::generate(Default::default()).unwrap();
    let join = Request::Join { token: t.clone(), public_key: key.public_raw(), capabilities: caps("w") };
    let pin = o.cluster.ca_fingerprint();
    let mut answers = Vec::new();
    for _ in 0..2 {
        let conn =
            transport::connect(&endpoint, o.endpoint.local_addr().unwrap(), certs::join_client_config(&pin).unwrap())
                .await
                .unwrap();
        answers.push(transport::call(&conn, &join).await.unwrap());
    }
    let ids: Vec<String> = answers
        .into_iter()
        .map(|a| match a {
            Response::Joined(b) => b.node_id,
            other => panic!("expected a join, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, vec!["node-1".to_owned(), "node-1".to_owned()], "the retry answers with the same node");
    let tokens = o.cluster.membership.tokens().await.unwrap();
    assert_eq!(tokens[0].uses, 1, "the retry does not use the token again");
    assert_eq!(o.cluster.membership.nodes().await.unwrap().len(), 1);
    // Another key with the used-up token is still refused.
    let other = Request::Join {
        token: t,
        public_key: certs::NodeKey::generate(Default::default()).unwrap().public_raw(),
        capabilities: caps("x"),
    };
    let conn =
        transport::connect(&endpoint, o.endpoint.local_addr().unwrap(), certs::join_client_config(&pin).unwrap())
            .await
            .unwrap();
    match transport::call(&conn, &other).await.unwrap() {
        Response::Refused { code, .. } => assert_eq!(code, "TOKEN_USED_UP"),
        other => panic!("expected refusal, got {other:?}"),
    }
}

/// A worker's own mTLS connection, opened with the identity it saved at join.
async fn node_conn(o: &Orchestrator, identity: &worker::Identity) -> quinn::Connection {
    let key = certs::NodeKey::from_pkcs8(&identity.key_pkcs8).unwrap();
    let tls = certs::node_client_config(&identity.ca_der, &identity.cert_der, &key).unwrap();
    transport::connect(&client_endpoint(), o.endpoint.local_addr().unwrap(), tls).await.unwrap()
}

#[tokio::test]
async fn a_node_cannot_report_another_nodes_job() {
    use actors::task::{AttemptOutcome, TaskSpec};
    use cluster::proto::JobResult;
    use dispatch_node::dispatch::{DispatchConfig, Dispatcher};
    let o = orchestrator(Duration::from_secs(3600)).await;
    let dispatcher = Dispatcher::start(
        o.kernel.clone(),
        o.cluster.membership.clone(),
        o.cluster.links.clone(),
        DispatchConfig { tick: Duration::from_millis(50), ..DispatchConfig::default() },
    )
    .await
    .unwrap();
    o.cluster.attach_dispatcher(dispatcher.clone());

    // node-1 can take jobs (it has no executor, so it refuses them: the attempt stays its own).
    let engine = Capabilities { docker_version: Some("test".into()), ..caps("w1") };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let s1 = Arc::new(WorkerStore::open(d1.path()).unwrap());
    let endpoint = client_endpoint();
    let id1 = worker::join(
        &s1,
        &endpoint,
        &token(&o, 1, Duration::from_secs(60)).await,
        None,
        engine.clone(),
        Default::default(),
    )
    .await
    .unwrap();
    let s2 = WorkerStore::open(d2.path()).unwrap();
    let id2 = worker::join(
        &s2,
        &endpoint,
        &token(&o, 1, Duration::from_secs(60)).await,
        None,
        caps("w2"),
        Default::default(),
    )
    .await
    .unwrap();
    let w1 = Arc::new(Worker::new(s1, endpoint, engine, None).unwrap());
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn({
        let w = w1.clone();
        async move { w.run(stopped).await }
    });

    let spec = TaskSpec {
        command: vec!["true".into()],
        pids: 16,
        timeout_seconds: 10,
        account_id: "a".into(),
        site_id: "s".into(),
        max_attempts: 3,
        ..Default::default()
    };
    dispatcher.submit("t1".into(), spec, Origin::system("test"), None).await.unwrap();
    let log = o.log.clone();
    tokio::time::timeout(Duration::from_secs(10), async {
        while actors::task::store::load(&log, "t1").unwrap().is_none_or(|(t, _)| t.attempts.is_empty()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("placed on node-1");

    let forged =
        Request::JobFinished { job_id: "t1/1".into(), result: JobResult { exit_code: Some(0), ..Default::default() } };
    match transport::call(&node_conn(&o, &id2).await, &forged).await.unwrap() {
        Response::Refused { code, .. } => assert_eq!(code, codes::NOT_YOURS),
        other => panic!("node-2 reported node-1's job: {other:?}"),
    }
    let (task, _) = actors::task::store::load(&log, "t1").unwrap().unwrap();
    let ran = |t: &actors::task::Task| t.attempts.iter().any(|a| matches!(a.outcome, Some(AttemptOutcome::Ran { .. })));
    assert!(!ran(&task), "the forged result was not recorded: {task:?}");
    // The holder itself is heard.
    let own = transport::call(&node_conn(&o, &id1).await, &forged).await.unwrap();
    assert!(matches!(own, Response::Recorded), "{own:?}");
}

//! Lane callbacks are outbound calls to URLs an agent chose: internal addresses are
//! refused unless allowlisted, https goes through rustls, redirects are not
//! followed, and one callback that never answers stalls no other lane.

#![allow(clippy::unwrap_used)] // a test unwraps what it set up: a failure there is the test failing

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, key};
use tokio::sync::mpsc;

async fn create_lane(s: &Server, agent: &str, id: &str, callback: &str) -> (u16, Value) {
    s.send("POST", "/v1/lanes", agent, Some(&key()), Some(json!({ "lane_id": id, "callback_url": callback }))).await
}

/// A lane with checkpoint c1 and an open handoff in queue `ops`, decided by `ops_token`.
async fn decided_lane(s: &Server, agent: &str, ops_token: &str, id: &str, callback: &str) {
    let (status, body) = create_lane(s, agent, id, callback).await;
    assert_eq!(status, 201, "{body}");
    let cp = json!({ "name": "c1", "state": {} });
    let (status, _) = s.send("POST", &format!("/v1/lanes/{id}/checkpoints"), agent, Some(&key()), Some(cp)).await;
    assert_eq!(status, 200);
    let handoff = json!({ "checkpoint": "c1", "trigger_class": "policy", "reason": "r", "context": {}, "queue": "ops",
        "sla_seconds": 600, "deadline_seconds": 3600, "timeout_action": "reject" });
    let (status, created) =
        s.send("POST", &format!("/v1/lanes/{id}/handoffs"), agent, Some(&key()), Some(handoff)).await;
    assert_eq!(status, 201, "{created}");
    let hid = created["lane"]["handoff"]["handoff_id"].as_str().unwrap().to_owned();
    let decision = json!({ "action": "approve", "reason": "fine" });
    let (status, _) =
        s.send("POST", &format!("/v1/handoffs/{hid}/decision"), ops_token, Some(&key()), Some(decision)).await;
    assert_eq!(status, 200);
}

async fn operator(s: &Server) -> String {
    let body = json!({ "sub": "ann", "role": "operator", "accounts": ["*"], "sites": ["*"], "queues": ["ops"], "ttl_seconds": 600 });
    s.send("POST", "/v1/admin/tokens", &s.admin_token, None, Some(body)).await.1["token"].as_str().unwrap().to_owned()
}

/// Waits (bounded) until the DLQ holds `lane`'s delivery; returns its last error.
async fn dead_letter_error(s: &Server, ops: &str, lane: &str) -> String {
    for _ in 0..200 {
        let (_, d) = s.send("GET", "/v1/dlq", ops, None, None).await;
        if let Some(e) = d["deliveries"].as_array().unwrap().iter().find(|e| e["lane_id"] == lane) {
            return e["last_error"].as_str().unwrap_or_default().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{lane} never reached the DLQ");
}

#[tokio::test]
async fn internal_callback_addresses_are_refused_unless_allowlisted() {
    let dir = support::tempdir();
    let s = Server::start(dir.path());
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    for (i, url) in ["http://127.0.0.1:9/x", "http://169.254.169.254/latest", "http://10.0.0.1/", "http://localhost:9/"]
        .iter()
        .enumerate()
    {
        let (status, body) = create_lane(&s, &agent, &format!("l{i}"), url).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("CALLBACK_HOST_FORBIDDEN")), "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("internal address"), "{body}");
    }
    // Outside the documented form (an IPv6 literal, another scheme, credentials): 422.
    for url in ["http://[::1]/", "ftp://example.com/", "http://user:pw@example.com/", "http://a:65536/"] {
        let (status, body) = create_lane(&s, &agent, "bad-form", url).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("VALIDATION_ERROR")), "{url}: {body}");
    }
    drop(s);
    let allowed = Server::start_with(dir.path(), &["--callback-allow-host", "127.0.0.1"]);
    let (status, body) = create_lane(&allowed, &agent, "ok", "http://127.0.0.1:9/x").await;
    assert_eq!(status, 201, "{body}");
}

/// A TLS server on 127.0.0.1 for `localhost`, with its own self-signed certificate;
/// answers 200 to every request and reports each body.
async fn tls_receiver(dir: &std::path::Path) -> (String, std::path::PathBuf, mpsc::UnboundedReceiver<Vec<u8>>) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let ca = dir.join("callback-ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://localhost:{}/hook", listener.local_addr().unwrap().port());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                        let _ = tx.send(body);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (url, ca, rx)
}

#[tokio::test]
async fn an_https_callback_is_delivered_through_rustls() {
    let dir = support::tempdir();
    let (url, ca, mut received) = tls_receiver(dir.path()).await;
    let data = dir.path().join("data");
    let s =
        Server::start_with(&data, &["--callback-allow-host", "localhost", "--callback-ca-file", ca.to_str().unwrap()]);
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let ops = operator(&s).await;
    decided_lane(&s, &agent, &ops, "tls-lane", &url).await;
    let body =
        tokio::time::timeout(Duration::from_secs(20), received.recv()).await.expect("delivered in time").unwrap();
    let envelope: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope["type"], "handoff.decided");
}

#[tokio::test]
async fn redirects_are_not_followed_and_a_hung_callback_stalls_no_other_lane() {
    let dir = support::tempdir();
    // One receiver redirects to another that must never be hit; one never answers.
    let hits = Arc::new(AtomicUsize::new(0));
    let target = {
        let hits = hits.clone();
        let app = axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { "reached" }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(l, app).await });
        url
    };
    let redirect = {
        let to = target.clone();
        let app = axum::Router::new().fallback(move || {
            let to = to.clone();
            async move { (axum::http::StatusCode::FOUND, [("location", to)]) }
        });
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port());
        tokio::spawn(async move { axum::serve(l, app).await });
        url
    };
    let (conn_tx, mut connected) = mpsc::unbounded_channel();
    let hung = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://127.0.0.1:{}/hook", l.local_addr().unwrap().port());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((c, _)) = l.accept().await {
                let _ = conn_tx.send(());
                held.push(c); // accepted, never answered
            }
        });
        url
    };
    let (good_url, _ca, mut good) = tls_receiver(dir.path()).await;
    let ca = dir.path().join("callback-ca.pem");
    let s = Server::start_with(
        &dir.path().join("data"),
        &[
            "--callback-allow-host",
            "127.0.0.1",
            "--callback-allow-host",
            "localhost",
            "--callback-ca-file",
            ca.to_str().unwrap(),
            "--callback-backoff-ms",
            "20",
            "--callback-timeout-ms",
            "60000",
        ],
    );
    let agent = s.token("bot", "agent", &["*"], &["*"]).await;
    let ops = operator(&s).await;

    decided_lane(&s, &agent, &ops, "hung-lane", &hung).await;
    tokio::time::timeout(Duration::from_secs(20), connected.recv()).await.expect("the hung callback is in flight");
    // While that delivery hangs (for up to 60 s), another lane's callback goes through.
    decided_lane(&s, &agent, &ops, "good-lane", &good_url).await;
    tokio::time::timeout(Duration::from_secs(20), good.recv()).await.expect("not stalled behind the hung callback");

    decided_lane(&s, &agent, &ops, "redirect-lane", &redirect).await;
    let error = dead_letter_error(&s, &ops, "redirect-lane").await;
    assert_eq!(error, "answered 302");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the redirect was followed");
}

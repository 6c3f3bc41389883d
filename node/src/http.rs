//! The HTTP listener, with the limits `axum::serve` leaves out: at most
//! [`HttpLimits::max_connections`] connections at once (past that the socket is
//! closed at once), a deadline for a request's head (slowloris) and for reading its
//! body, and a graceful shutdown that finishes in-flight requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, watch};

/// What the HTTP server accepts connections from: a TCP listener, or the simulator's.
pub use axum::serve::Listener;

/// Bounds on what one client can hold of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time a client has to send a whole request head.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once the handler reads it.
    pub body_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `router` on `listener` (a TCP listener, or the simulator's) until `stop`
/// resolves, then lets in-flight requests finish. With `tls`, every connection is HTTPS.
pub async fn serve<L: Listener<Addr = SocketAddr>>(
    mut listener: L,
    router: Router,
    limits: HttpLimits,
    tls: Option<Arc<crate::tls::Https>>,
    stop: impl std::future::Future<Output = ()>,
) {
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    tokio::pin!(stop);
    loop {
        // The listener backs off by itself when accepting fails (out of file descriptors).
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stop => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics::counter!("dispatch_http_connections_refused_total").increment(1);
            drop(stream);
            continue;
        };
        let service = Tagged { router: router.clone(), remote };
        let (shutdown, done) = (shutdown_rx.clone(), done_rx.clone());
        let header_timeout = limits.header_timeout;
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, service, header_timeout, shutdown).await,
                Some(tls) => {
                    if let Some(stream) = tls.accept(stream, header_timeout).await {
                        serve_connection(stream, service, header_timeout, shutdown).await;
                    }
                }
            }
            drop((permit, done));
        });
    }
    let _ = shutdown_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
}

/// Serves HTTP/1.1 on one connection until it ends, or gracefully once `shutdown` says so.
async fn serve_connection<S>(stream: S, service: Tagged, header_timeout: Duration, mut shutdown: watch::Receiver<bool>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        _ = shutdown.wait_for(|s| *s) => true,
    };
    if stopping {
        conn.as_mut().graceful_shutdown();
        let _ = conn.as_mut().await;
    }
}

/// The router for one connection, with the client's address for `ConnectInfo`.
#[derive(Clone)]
struct Tagged {
    router: Router,
    remote: SocketAddr,
}

impl hyper::service::Service<hyper::Request<Incoming>> for Tagged {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(self.remote));
        tower::Service::call(&mut self.router.clone(), req)
    }
}

/// `s` as one path segment or query value (RFC 3986: unreserved characters kept, the
/// rest escaped), for the edges that call the API's routes in-process.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

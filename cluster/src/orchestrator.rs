//! The orchestrator's side of the transport: accepts connections, lets a peer
//! without a certificate do one thing (join), identifies every other peer by its
//! client certificate, and hands each request to the [`Inbound`] handler the node
//! implements. What a request means (membership, tasks) is the handler's business;
//! this module only guarantees who is asking and that every wait is bounded.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use quinn::{Connection, Endpoint, RecvStream, SendStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::proto::{Capabilities, Push, PushReply, Request, Response, codes};
use crate::transport::{REQUEST_TIMEOUT, TransportError};
use crate::wire::{self, WireError};

/// Handshakes in progress plus connections without a certificate (joins) at once.
pub const MAX_UNAUTHENTICATED: usize = 64;

/// What the orchestrator does with requests from the cluster.
pub trait Inbound: Send + Sync + 'static {
    /// Whatever the handler keeps about an identified peer for the life of its connection.
    type Peer: Send + Sync + 'static;

    /// A join: the token, the joiner's public key, what it reports about itself.
    /// Answers `Joined` or `Refused`.
    fn join(
        &self,
        token: String,
        public_key: Vec<u8>,
        capabilities: Capabilities,
    ) -> impl Future<Output = Response> + Send;

    /// The peer a client certificate (its SHA-256) was issued to; `None` closes the
    /// connection with `CERT_UNKNOWN`.
    fn identify(&self, fingerprint: &str, conn: &Connection) -> impl Future<Output = Option<Self::Peer>> + Send;

    /// One request from an identified peer.
    fn request(&self, peer: &Self::Peer, request: Request) -> impl Future<Output = Response> + Send;

    /// The peer's connection ended.
    fn closed(&self, peer: &Self::Peer);
}

/// Accepts connections until the endpoint is closed. Handshakes and connections
/// without a certificate share [`MAX_UNAUTHENTICATED`] slots; past that a new peer
/// is refused before any TLS work is done for it.
pub async fn serve<H: Inbound>(endpoint: Endpoint, handler: Arc<H>) {
    let unauthenticated = Arc::new(Semaphore::new(MAX_UNAUTHENTICATED));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = unauthenticated.clone().try_acquire_owned() else {
            metrics::counter!("dispatch_cluster_connections_refused_total").increment(1);
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(REQUEST_TIMEOUT, incoming).await {
                Ok(Ok(conn)) => connection(handler, conn, permit).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "cluster handshake failed"),
                Err(_) => tracing::debug!("cluster handshake timed out"),
            }
        });
    }
}

async fn connection<H: Inbound>(handler: Arc<H>, conn: Connection, permit: OwnedSemaphorePermit) {
    metrics::gauge!("dispatch_cluster_connections").increment(1.0);
    match peer_fingerprint(&conn) {
        None => unauthenticated(&*handler, &conn).await,
        Some(fingerprint) => {
            drop(permit);
            match handler.identify(&fingerprint, &conn).await {
                Some(peer) => identified(handler, conn, Arc::new(peer)).await,
                None => refuse_next(&conn, codes::CERT_UNKNOWN, "this certificate was not issued to any node").await,
            }
        }
    }
    metrics::gauge!("dispatch_cluster_connections").decrement(1.0);
}

/// Without a certificate the only thing a peer may do is join, once.
async fn unauthenticated<H: Inbound>(handler: &H, conn: &Connection) {
    let Ok(Ok((mut send, mut recv))) = tokio::time::timeout(REQUEST_TIMEOUT, conn.accept_bi()).await else {
        return;
    };
    let response = match wire::read::<Request>(&mut recv).await {
        Ok(Request::Join { token, public_key, capabilities }) => handler.join(token, public_key, capabilities).await,
        Ok(_) => refused(codes::CERT_REQUIRED, "this request needs a cluster certificate; join with a token first"),
        Err(e) => refused(codes::BAD_REQUEST, &e.to_string()),
    };
    answer_and_close(conn, &mut send, &response).await;
}

async fn identified<H: Inbound>(handler: Arc<H>, conn: Connection, peer: Arc<H::Peer>) {
    while let Ok((send, recv)) = conn.accept_bi().await {
        let (handler, conn, peer) = (handler.clone(), conn.clone(), peer.clone());
        tokio::spawn(async move { request(&*handler, &conn, &peer, send, recv).await });
    }
    handler.closed(&peer);
}

async fn request<H: Inbound>(
    handler: &H,
    conn: &Connection,
    peer: &H::Peer,
    mut send: SendStream,
    mut recv: RecvStream,
) {
    let request = match wire::read::<Request>(&mut recv).await {
        Ok(r) => r,
        Err(e) => {
            let _ = wire::write(&mut send, &refused(codes::BAD_REQUEST, &e.to_string())).await;
            let _ = send.finish();
            return;
        }
    };
    metrics::counter!("dispatch_cluster_requests_total", "request" => request.name()).increment(1);
    let response = handler.request(peer, request).await;
    // A removed node or a replaced certificate gets its answer, then the connection ends.
    let last = matches!(&response, Response::Refused { code, .. }
        if code == codes::NODE_REMOVED || code == codes::CERT_REPLACED);
    if last {
        answer_and_close(conn, &mut send, &response).await;
    } else {
        let _ = wire::write(&mut send, &response).await;
        let _ = send.finish();
    }
}

/// A refusal with a stable code and a message for people.
pub fn refused(code: &str, message: &str) -> Response {
    Response::Refused { code: code.into(), message: message.into() }
}

/// Answers the peer's next request with a refusal, then closes the connection.
async fn refuse_next(conn: &Connection, code: &str, message: &str) {
    tracing::warn!(code, remote = %conn.remote_address(), "cluster connection refused");
    if let Ok(Ok((mut send, _recv))) = tokio::time::timeout(REQUEST_TIMEOUT, conn.accept_bi()).await {
        answer_and_close(conn, &mut send, &refused(code, message)).await;
    } else {
        conn.close(1u32.into(), code.as_bytes());
    }
}

/// Writes the last answer, waits (bounded) until the peer has it, then closes.
async fn answer_and_close(conn: &Connection, send: &mut SendStream, response: &Response) {
    let _ = wire::write(send, response).await;
    let _ = send.finish();
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, send.stopped()).await;
    let code = match response {
        Response::Refused { code, .. } => code.as_str(),
        _ => "done",
    };
    conn.close(0u32.into(), code.as_bytes());
}

/// SHA-256 of the client certificate the peer presented, if any.
fn peer_fingerprint(conn: &Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>().ok()?;
    chain.first().map(|c| certs::fingerprint(c))
}

/// One push on a connection and its answer, within [`REQUEST_TIMEOUT`].
pub async fn push(conn: &Connection, push: &Push) -> Result<PushReply, TransportError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| WireError::Stream(e.to_string()))?;
        wire::write(&mut send, push).await?;
        send.finish().map_err(|e| WireError::Stream(e.to_string()))?;
        Ok::<_, TransportError>(wire::read::<PushReply>(&mut recv).await?)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| TransportError::Timeout(REQUEST_TIMEOUT))?
}

/// The live connection of each node, for pushing to it.
#[derive(Default)]
pub struct Links {
    conns: Mutex<HashMap<String, Connection>>,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node's current connection.
    pub fn set(&self, node: &str, conn: Connection) {
        self.lock().insert(node.to_owned(), conn);
    }

    /// Forgets the connection if it is still the node's current one.
    pub fn closed(&self, node: &str, conn: &Connection) {
        let mut conns = self.lock();
        if conns.get(node).is_some_and(|c| c.stable_id() == conn.stable_id()) {
            conns.remove(node);
        }
    }

    /// One push to the node's live connection and its answer; `None` when the node
    /// has no connection or does not answer in time.
    pub async fn offer(&self, node: &str, message: &Push) -> Option<PushReply> {
        let conn = self.lock().get(node).cloned()?;
        push(&conn, message).await.ok()
    }
}

//! QUIC endpoints over any UDP socket (a real one, or the simulator's), and one
//! request/response per bidirectional stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn::{AsyncUdpSocket, Connection, Endpoint, EndpointConfig, Runtime, TokioRuntime};

use crate::proto::{Request, Response};
use crate::wire::{self, WireError};

/// How long a request may take before the caller gives up on it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection silent this long is closed (heartbeats keep healthy ones busy).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The dialling side (a worker) pings after this much silence, so a connection whose
/// heartbeats are slower than [`IDLE_TIMEOUT`] stays open. It is longer than the
/// default heartbeat (5 s), so a healthy connection sends no pings at all: with 2 s on
/// both sides, pings and their acks were most of a heartbeating cluster's packets.
const KEEP_ALIVE: Duration = Duration::from_secs(6);
/// Requests one peer may have open at once on a connection.
pub const MAX_STREAMS: u32 = 32;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    /// The TLS handshake itself was refused (a certificate did not verify): retrying
    /// will not help.
    #[error("handshake with {addr} refused: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A real UDP socket bound to `addr`, for endpoints outside the simulator.
pub fn udp_socket(addr: SocketAddr) -> Result<Arc<dyn AsyncUdpSocket>, TransportError> {
    let socket = std::net::UdpSocket::bind(addr)?;
    Ok(TokioRuntime.wrap_udp_socket(socket)?)
}

/// The transport settings; only the dialling side keeps the connection alive (one
/// side's pings, acknowledged, reset both sides' idle timers).
fn transport(dialling: bool) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(IDLE_TIMEOUT.as_millis() as u32))));
    t.keep_alive_interval(dialling.then_some(KEEP_ALIVE));
    // One request per bidirectional stream: this many may be open at once per
    // connection; unidirectional streams are not part of the protocol.
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    Arc::new(t)
}

/// An endpoint on `socket`; with `server` it also accepts connections. `seed` fixes
/// quinn's own randomness (simulations pass one so runs repeat).
pub fn endpoint(
    socket: Arc<dyn AsyncUdpSocket>,
    server: Option<rustls::ServerConfig>,
    seed: Option<[u8; 32]>,
) -> Result<Endpoint, TransportError> {
    let mut config = EndpointConfig::default();
    config.rng_seed(seed);
    let server = match server {
        Some(tls) => {
            let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            let mut s = quinn::ServerConfig::with_crypto(Arc::new(crypto));
            s.transport_config(transport(false));
            Some(s)
        }
        None => None,
    };
    Ok(Endpoint::new_with_abstract_socket(config, server, socket, Arc::new(TokioRuntime))?)
}

/// Dials `addr` with `tls` (its server name is always the orchestrator's).
pub async fn connect(
    endpoint: &Endpoint,
    addr: SocketAddr,
    tls: rustls::ClientConfig,
) -> Result<Connection, TransportError> {
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| TransportError::Tls(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(true));
    let fail = |reason: String| TransportError::Connect { addr, reason };
    let connecting = endpoint.connect_with(config, addr, certs::SERVER_NAME).map_err(|e| fail(e.to_string()))?;
    match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(quinn::ConnectionError::TransportError(e))) if is_crypto(e.code) => {
            Err(TransportError::Handshake { addr, reason: e.to_string() })
        }
        Ok(Err(e)) => Err(fail(e.to_string())),
        Err(_) => Err(fail(format!("no handshake within {REQUEST_TIMEOUT:?}"))),
    }
}

/// TLS alerts travel as QUIC transport error codes 0x100–0x1ff.
fn is_crypto(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

impl TransportError {
    /// Worth trying again later (the network, not the peer, said no).
    pub fn is_transient(&self) -> bool {
        !matches!(self, TransportError::Handshake { .. } | TransportError::Tls(_))
    }
}

/// Sends one request on a new stream and waits for its answer.
pub async fn call(conn: &Connection, request: &Request) -> Result<Response, TransportError> {
    call_within(conn, request, REQUEST_TIMEOUT).await
}

/// [`call`] with its own time limit (heartbeats wait less than other requests).
pub async fn call_within(conn: &Connection, request: &Request, limit: Duration) -> Result<Response, TransportError> {
    let started = Instant::now();
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| WireError::Stream(e.to_string()))?;
        wire::write(&mut send, request).await?;
        send.finish().map_err(|e| WireError::Stream(e.to_string()))?;
        wire::read::<Response>(&mut recv).await
    };
    let result = tokio::time::timeout(limit, exchange).await;
    let outcome = match &result {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    metrics::histogram!("dispatch_cluster_request_duration_seconds", "request" => request.name(), "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    Ok(result.map_err(|_| TransportError::Timeout(limit))??)
}

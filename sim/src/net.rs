//! The simulator's network under the node's real stacks: quinn on turmoil's UDP
//! ([`SimUdp`]) and the HTTP server on turmoil's TCP ([`SimTcp`]).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};

type ReadyFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// quinn's socket on turmoil's UDP: one datagram per transmit and per receive.
pub struct SimUdp {
    socket: Arc<turmoil::net::UdpSocket>,
    local: SocketAddr,
    /// Datagrams sent, for scenarios that count a protocol's packets.
    sent: Arc<AtomicU64>,
    /// The pending "readable" wait, kept across polls so its waker stays registered.
    readable: Mutex<Option<ReadyFuture>>,
}

impl fmt::Debug for SimUdp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimUdp").field("local", &self.local).finish()
    }
}

impl SimUdp {
    /// Binds `0.0.0.0:port` on the current simulated host (0: an ephemeral port).
    pub async fn bind(port: u16) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        Self::bind_counted(port, Arc::default()).await
    }

    /// [`SimUdp::bind`], adding each datagram it sends to `sent`.
    pub async fn bind_counted(port: u16, sent: Arc<AtomicU64>) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let socket = turmoil::net::UdpSocket::bind(("0.0.0.0", port)).await?;
        let local = socket.local_addr()?;
        Ok(Arc::new(SimUdp { socket: Arc::new(socket), local, sent, readable: Mutex::new(None) }))
    }
}

/// turmoil's UDP has no send backpressure: always writable.
#[derive(Debug)]
struct AlwaysWritable;

impl UdpPoller for AlwaysWritable {
    fn poll_writable(self: Pin<&mut Self>, _cx: &mut Context) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncUdpSocket for SimUdp {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(AlwaysWritable)
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.socket.try_send_to(transmit.contents, transmit.destination)?;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let mut readable = self.readable.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(wait) = readable.as_mut() {
                match wait.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        *readable = None;
                        result?;
                    }
                }
            }
            let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else { return Poll::Ready(Ok(0)) };
            match self.socket.try_recv_from(buf) {
                Ok((len, from)) => {
                    *slot = RecvMeta { addr: from, len, stride: len, ecn: None, dst_ip: None };
                    return Poll::Ready(Ok(1));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let socket = self.socket.clone();
                    *readable = Some(Box::pin(async move { socket.readable().await }));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// The orchestrator's HTTP listener on turmoil's TCP, for the node's own server.
pub struct SimTcp(turmoil::net::TcpListener);

impl SimTcp {
    /// Binds `0.0.0.0:port` on the current simulated host.
    pub async fn bind(port: u16) -> io::Result<SimTcp> {
        Ok(SimTcp(turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?))
    }
}

impl dispatch_node::http::Listener for SimTcp {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "simulated accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

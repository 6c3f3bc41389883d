//! HTTPS on the API port: rustls on the ring provider, with a certificate from PEM files
//! (read again on SIGHUP, so a renewed certificate needs no restart) or issued by the
//! cluster CA for the names given. A client that speaks plain HTTP to the TLS port is
//! answered in plain HTTP with what to do, instead of a handshake error it cannot read.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Where the API's certificate comes from.
#[derive(Debug, Clone)]
pub enum HttpsConfig {
    /// PEM files (chain and key), read again on SIGHUP.
    Files { cert: PathBuf, key: PathBuf },
    /// Issued at start by the cluster CA for these DNS names or addresses; clients
    /// trust the CA's certificate (`<data-dir>/ca/ca.crt.pem`).
    ClusterCa { names: Vec<String> },
}

/// The API's TLS: one rustls config whose certificate can be swapped while serving.
pub struct Https {
    acceptor: tokio_rustls::TlsAcceptor,
    current: Arc<CurrentCert>,
    files: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certified(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> anyhow::Result<Arc<CertifiedKey>> {
    anyhow::ensure!(!chain.is_empty(), "no certificate found");
    let signing = provider().key_provider.load_private_key(key).context("the private key")?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

fn read_files(cert: &Path, key: &Path) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the key {}", key.display()))?;
    certified(chain, key)
}

impl Https {
    /// The API's TLS from `config`; `ca_dir` holds the cluster CA (for `ClusterCa`).
    pub fn load(config: &HttpsConfig, ca_dir: &Path) -> anyhow::Result<Arc<Https>> {
        let (key, files) = match config {
            HttpsConfig::Files { cert, key } => (read_files(cert, key)?, Some((cert.clone(), key.clone()))),
            HttpsConfig::ClusterCa { names } => (issue_from_ca(ca_dir, names)?, None),
        };
        let current = Arc::new(CurrentCert(RwLock::new(key)));
        let mut tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(Https { acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(tls)), current, files }))
    }

    /// Reads the certificate files again; on failure the current certificate stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let Some((cert, key)) = &self.files else { return Ok(()) };
        let fresh = read_files(cert, key)?;
        *self.current.0.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads the certificate files on every SIGHUP, for as long as the process runs.
    pub fn reload_on_sighup(self: &Arc<Self>) {
        if self.files.is_none() {
            return;
        }
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        let https = self.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match https.reload() {
                    Ok(()) => tracing::info!("SIGHUP: HTTPS certificate reloaded"),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "SIGHUP: HTTPS certificate NOT reloaded; the old one stays")
                    }
                }
            }
        });
    }

    /// Serves TLS on `stream`, or answers a plain-HTTP client with what to do. `None`
    /// when the connection ends before a handshake (or takes longer than `within`).
    pub async fn accept<S>(
        &self,
        mut stream: S,
        within: Duration,
    ) -> Option<tokio_rustls::server::TlsStream<Prefixed<S>>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut first = [0u8; 1];
        let read = tokio::time::timeout(within, stream.read(&mut first)).await;
        if !matches!(read, Ok(Ok(1))) {
            return None;
        }
        let stream = Prefixed { first: Some(first[0]), inner: stream };
        // Every TLS connection opens with a handshake record (content type 22).
        if first[0] != 0x16 {
            tokio::time::timeout(within, answer_plain_http(stream)).await.ok();
            return None;
        }
        tokio::time::timeout(within, self.acceptor.accept(stream)).await.ok()?.ok()
    }
}

/// Most of a plain request read before answering it (so the answer is not lost to a reset).
const PLAIN_HEAD_LIMIT: usize = 8 * 1024;

async fn answer_plain_http<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < PLAIN_HEAD_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "This port speaks HTTPS: use an https:// URL (with --ca-cert or $DISPATCH_CA_CERT \
                naming the cluster CA's certificate when the server's certificate comes from it).\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The cluster CA's certificate for HTTPS clients, as PEM: `<ca_dir>/ca.crt.pem`.
pub fn ca_pem_path(ca_dir: &Path) -> PathBuf {
    ca_dir.join("ca.crt.pem")
}

fn issue_from_ca(ca_dir: &Path, names: &[String]) -> anyhow::Result<Arc<CertifiedKey>> {
    anyhow::ensure!(!names.is_empty(), "--tls-san needs at least one name");
    let now = SystemTime::now();
    // A CA made here is P-256: it is the one a browser is asked to trust.
    let ca = cluster::certs::open_or_create_ca(ca_dir, now, Default::default()).context("opening the cluster CA")?;
    let (cert, key) = ca.issue_https(names, now).context("issuing the HTTPS certificate")?;
    write_ca_pem(ca_dir, ca.cert_der())?;
    let chain = vec![CertificateDer::from(cert.der), CertificateDer::from(ca.cert_der().to_vec())];
    certified(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
}

fn write_ca_pem(ca_dir: &Path, der: &[u8]) -> anyhow::Result<()> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    let pem = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"));
    let path = ca_pem_path(ca_dir);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, pem)?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
}

/// A stream whose first byte was already read (to tell TLS from plain HTTP).
pub struct Prefixed<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(b) = self.first.take() {
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

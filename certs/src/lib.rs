//! The cluster's own certificate authority and the TLS settings both sides use.
//!
//! The orchestrator creates a CA on first start (rcgen, ECDSA P-256 unless
//! [`KeyAlgorithm`] says otherwise) and signs its own
//! server certificate and one client certificate per joined node; the node's id is the
//! certificate's common name. Everything runs on rustls' ring provider, passed
//! explicitly, TLS 1.3 only, ALPN `dispatch/1`. A joining worker has no CA yet: it pins
//! the CA by the SHA-256 carried in its bootstrap token ([`join_client_config`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData, SerialNumber, SignatureAlgorithm,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};

/// ALPN protocol id of the cluster protocol; a peer speaking anything else is refused.
pub const ALPN: &[u8] = b"dispatch/1";
/// The name the orchestrator's certificate is issued for and workers verify, whatever
/// address they dialled (addresses change; the CA does not).
pub const SERVER_NAME: &str = "dispatch-orchestrator";
const CA_NAME: &str = "dispatch cluster CA";
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const SERVER_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates are valid from a little before they are issued, for clocks that disagree.
const BACKDATE: Duration = Duration::from_secs(3600);

/// Why a certificate or TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("node public key is neither an uncompressed P-256 point nor an Ed25519 key ({0} bytes)")]
    BadPublicKey(usize),
}

/// The key type of the CA and of the keys made for it (a node's own key included).
///
/// ECDSA P-256 is the default: browsers accept the CA for the HTTPS API. Ed25519 signs
/// deterministically, with signatures of one size, so a TLS handshake is the same bytes
/// in the same packets every time: simulations use it, because ECDSA's random signatures
/// (70–72 bytes) made one seed of `the_same_seed_gives_the_same_trace` give two histories
/// in one run of six. A CA or key once stored keeps its type; certificates chain either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    Ed25519,
}

impl KeyAlgorithm {
    fn rcgen(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &PKCS_ED25519,
        }
    }
}

/// The crypto provider of every TLS config here: ring, never a process default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Lowercase hex SHA-256 of a DER certificate: how tokens pin the CA and how the
/// orchestrator recognises a node's certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn validity(params: &mut CertificateParams, now: SystemTime, lifetime: Duration) {
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + lifetime).into();
}

/// A serial of a fixed 20 bytes (RFC 5280's most) from the certified key's hash: as
/// unpredictable as the key, and one length every time (rcgen's own drops a leading
/// zero byte, so one certificate in 128 came out a byte shorter).
fn serial_for(key: &impl PublicKeyData) -> Option<SerialNumber> {
    let mut bytes = Sha256::digest(key.der_bytes())[..20].to_vec();
    bytes[0] = (bytes[0] & 0x7f) | 0x40; // positive, and no leading zero to drop
    Some(SerialNumber::from(bytes))
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, CA_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// The cluster CA: its certificate and signing key.
pub struct ClusterCa {
    cert_der: Vec<u8>,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and the time it stops being valid.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub der: Vec<u8>,
    pub not_after: SystemTime,
}

impl ClusterCa {
    /// A new CA valid for ten years.
    pub fn generate(now: SystemTime, algorithm: KeyAlgorithm) -> Result<Self, CertError> {
        let key = KeyPair::generate_for(algorithm.rcgen())?;
        let mut params = ca_params();
        params.serial_number = serial_for(&key);
        validity(&mut params, now, CA_VALIDITY);
        let cert_der = params.self_signed(&key)?.der().to_vec();
        let key_pem = key.serialize_pem();
        Ok(ClusterCa { cert_der, key_pem, issuer: Issuer::new(ca_params(), key) })
    }

    /// The CA as stored: its DER certificate and PEM key. Its subject is fixed, so the
    /// issuer is rebuilt from the key alone.
    pub fn load(cert_der: Vec<u8>, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        Ok(ClusterCa { cert_der, key_pem: key_pem.to_owned(), issuer: Issuer::new(ca_params(), key) })
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA private key (PEM), to be stored 0600.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A fresh server certificate and key (of the CA's own type) for the orchestrator's
    /// QUIC listener.
    pub fn issue_server(&self, now: SystemTime) -> Result<(IssuedCert, Vec<u8>), CertError> {
        let key = KeyPair::generate_for(self.issuer.key().algorithm())?;
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, SERVER_NAME);
        params.serial_number = serial_for(&key);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, now, SERVER_VALIDITY);
        let der = params.signed_by(&key, &self.issuer)?.der().to_vec();
        Ok((IssuedCert { der, not_after: now + SERVER_VALIDITY }, key.serialize_der()))
    }

    /// A server certificate for the HTTPS API under `names` (DNS names or IP
    /// addresses), and its key (PKCS#8 DER): always P-256, what every browser takes.
    pub fn issue_https(&self, names: &[String], now: SystemTime) -> Result<(IssuedCert, Vec<u8>), CertError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(DnType::CommonName, names.first().map_or(SERVER_NAME, String::as_str));
        params.serial_number = serial_for(&key);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, now, SERVER_VALIDITY);
        let der = params.signed_by(&key, &self.issuer)?.der().to_vec();
        Ok((IssuedCert { der, not_after: now + SERVER_VALIDITY }, key.serialize_der()))
    }

    /// A client certificate for node `node_id` over the node's own public key (the
    /// node keeps its private key; only the public half crosses the wire).
    pub fn issue_node(
        &self,
        node_id: &str,
        public_key: &[u8],
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<IssuedCert, CertError> {
        let key = NodePublicKey::new(public_key)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.serial_number = serial_for(&key);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params, now, lifetime);
        let der = params.signed_by(&key, &self.issuer)?.der().to_vec();
        Ok(IssuedCert { der, not_after: now + lifetime })
    }
}

/// A node's public key as sent at join: an uncompressed P-256 point (65 bytes from
/// 0x04) or an Ed25519 key (32 bytes); the length tells them apart.
struct NodePublicKey<'a> {
    raw: &'a [u8],
    algorithm: KeyAlgorithm,
}

impl<'a> NodePublicKey<'a> {
    fn new(raw: &'a [u8]) -> Result<Self, CertError> {
        let algorithm = match raw {
            [0x04, rest @ ..] if rest.len() == 64 => KeyAlgorithm::EcdsaP256,
            _ if raw.len() == 32 => KeyAlgorithm::Ed25519,
            _ => return Err(CertError::BadPublicKey(raw.len())),
        };
        Ok(NodePublicKey { raw, algorithm })
    }
}

impl PublicKeyData for NodePublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.raw
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm.rcgen()
    }
}

/// A node's own key pair, generated on the node; its private half never leaves it.
pub struct NodeKey(KeyPair);

impl NodeKey {
    /// A new key pair.
    pub fn generate(algorithm: KeyAlgorithm) -> Result<Self, CertError> {
        Ok(NodeKey(KeyPair::generate_for(algorithm.rcgen())?))
    }

    /// A key stored as PKCS#8 DER (its type is read from it).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, CertError> {
        Ok(NodeKey(KeyPair::try_from(der)?))
    }

    /// The key's type: a renewal makes its new key of the same type.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.0.algorithm() == &PKCS_ED25519 {
            true => KeyAlgorithm::Ed25519,
            false => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The private key as PKCS#8 DER, for the node's own store.
    pub fn pkcs8(&self) -> Vec<u8> {
        self.0.serialize_der()
    }

    /// The public key sent at join (an uncompressed P-256 point or 32 Ed25519 bytes).
    pub fn public_raw(&self) -> Vec<u8> {
        self.0.public_key_raw().to_vec()
    }
}

fn roots(ca_der: &[u8]) -> Result<Arc<RootCertStore>, CertError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec()))?;
    Ok(Arc::new(roots))
}

/// The orchestrator's listener: TLS 1.3, its certificate chain, and client
/// certificates verified against the cluster CA. A client without one may connect
/// (it can only ask to join; the cluster layer refuses it anything else).
pub fn server_config(ca_der: &[u8], server: &IssuedCert, server_key_pkcs8: &[u8]) -> Result<ServerConfig, CertError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca_der)?, provider.clone())
        .allow_unauthenticated()
        .build()?;
    let chain = vec![CertificateDer::from(server.der.clone()), CertificateDer::from(ca_der.to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key_pkcs8.to_vec()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A joined node's connections: the cluster CA as the only root and the node's
/// certificate as its identity.
pub fn node_client_config(ca_der: &[u8], cert_der: &[u8], key: &NodeKey) -> Result<ClientConfig, CertError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8()));
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_der)?)
        .with_client_auth_cert(vec![CertificateDer::from(cert_der.to_vec())], key)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// A joining worker's connection: no client certificate, and the server is trusted
/// only if its chain carries a CA whose SHA-256 is `ca_sha256` (from the token) and
/// the server certificate verifies against that CA.
pub fn join_client_config(ca_sha256: &str) -> Result<ClientConfig, CertError> {
    let provider = provider();
    let verifier = Arc::new(PinnedCa { pin: ca_sha256.to_ascii_lowercase(), provider: provider.clone() });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// Trusts the CA in the server's chain whose fingerprint matches the pin, then
/// verifies the server certificate against it as a normal WebPKI check would.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates.iter().find(|c| fingerprint(c) == self.pin).ok_or_else(|| {
            rustls::Error::General("the server's CA does not match the fingerprint in the join token".into())
        })?;
        let roots = roots(ca).map_err(|e| rustls::Error::General(e.to_string()))?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The CA files of an orchestrator's data dir: created on first start (of type
/// `algorithm`), the key 0600; a stored CA keeps its own type.
pub fn open_or_create_ca(
    dir: &std::path::Path,
    now: SystemTime,
    algorithm: KeyAlgorithm,
) -> Result<ClusterCa, CaFileError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let (cert_path, key_path) = (dir.join("ca.crt.der"), dir.join("ca.key.pem"));
    if cert_path.exists() && key_path.exists() {
        let mode = std::fs::metadata(&key_path)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CaFileError::KeyReadable(key_path, mode));
        }
        let key_pem = std::fs::read_to_string(&key_path)?;
        return Ok(ClusterCa::load(std::fs::read(&cert_path)?, &key_pem)?);
    }
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let ca = ClusterCa::generate(now, algorithm)?;
    let write = |path: &std::path::Path, bytes: &[u8], mode: u32| -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write(&key_path, ca.key_pem().as_bytes(), 0o600)?;
    write(&cert_path, ca.cert_der(), 0o644)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(ca)
}

/// Why the CA files could not be opened or created.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("CA files: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{0} is readable by others (mode {1:o}); it must be 0600")]
    KeyReadable(std::path::PathBuf, u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: [KeyAlgorithm; 2] = [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519];

    #[test]
    fn a_stored_ca_signs_what_the_original_would() {
        let now = SystemTime::now();
        for algorithm in BOTH {
            let ca = ClusterCa::generate(now, algorithm).unwrap();
            let again = ClusterCa::load(ca.cert_der().to_vec(), ca.key_pem()).unwrap();
            let node = NodeKey::generate(algorithm).unwrap();
            let cert = again.issue_node("node-1", &node.public_raw(), now, Duration::from_secs(60)).unwrap();
            // The reloaded CA's certificate verifies against the original CA as a root.
            let roots = roots(ca.cert_der()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider()).build().unwrap();
            verifier
                .verify_client_cert(&CertificateDer::from(cert.der), &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{algorithm:?}: node certificate chains to the CA: {e}"));
        }
    }

    #[test]
    fn a_ca_of_either_type_certifies_a_node_key_of_either_type() {
        let now = SystemTime::now();
        for (ca_type, node_type) in BOTH.into_iter().flat_map(|a| BOTH.map(|b| (a, b))) {
            let ca = ClusterCa::generate(now, ca_type).unwrap();
            let node = NodeKey::generate(node_type).unwrap();
            let reloaded = NodeKey::from_pkcs8(&node.pkcs8()).unwrap();
            assert_eq!(reloaded.algorithm(), node_type, "a stored key keeps its type");
            let cert = ca.issue_node("n", &reloaded.public_raw(), now, Duration::from_secs(60)).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca.cert_der()).unwrap(), provider());
            verifier
                .build()
                .unwrap()
                .verify_client_cert(&CertificateDer::from(cert.der), &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{ca_type:?} CA, {node_type:?} node: {e}"));
        }
    }

    #[test]
    fn ed25519_certificates_are_the_same_size_every_time() {
        // What a simulation relies on: ECDSA's DER signatures vary by a byte or two.
        let now = SystemTime::now();
        let sizes = |algorithm| -> std::collections::BTreeSet<usize> {
            let ca = ClusterCa::generate(now, algorithm).unwrap();
            (0..256).map(|_| ca.issue_server(now).unwrap().0.der.len()).collect()
        };
        assert_eq!(sizes(KeyAlgorithm::Ed25519).len(), 1);
        assert!(sizes(KeyAlgorithm::EcdsaP256).len() > 1, "P-256 sizes vary (else this test proves nothing)");
    }

    #[test]
    fn the_ca_is_created_once_with_a_private_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let first = open_or_create_ca(&dir.path().join("ca"), now, KeyAlgorithm::EcdsaP256).unwrap();
        // A stored CA keeps its type whatever a later start asks for.
        let again = open_or_create_ca(&dir.path().join("ca"), now, KeyAlgorithm::Ed25519).unwrap();
        assert_eq!(first.cert_der(), again.cert_der(), "the second start reuses the CA");
        let key = dir.path().join("ca/ca.key.pem");
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = open_or_create_ca(&dir.path().join("ca"), now, KeyAlgorithm::EcdsaP256).err().expect("refused");
        assert!(err.to_string().contains("0600"), "{err}");
    }

    #[test]
    fn malformed_node_keys_are_refused() {
        let ca = ClusterCa::generate(SystemTime::now(), KeyAlgorithm::EcdsaP256).unwrap();
        for bad in [&[][..], &[4u8; 10][..], &[2u8; 65][..], &[4u8; 33][..], &[4u8; 66][..]] {
            let err = ca.issue_node("n", bad, SystemTime::now(), Duration::from_secs(60)).unwrap_err();
            assert!(matches!(err, CertError::BadPublicKey(_)), "{err}");
        }
    }

    #[test]
    fn configs_build_on_ring_with_tls13_only() {
        let now = SystemTime::now();
        for algorithm in BOTH {
            let ca = ClusterCa::generate(now, algorithm).unwrap();
            let (server, key) = ca.issue_server(now).unwrap();
            let config = server_config(ca.cert_der(), &server, &key).unwrap();
            assert_eq!(config.alpn_protocols, vec![ALPN.to_vec()]);
            let node = NodeKey::generate(algorithm).unwrap();
            let cert = ca.issue_node("n", &node.public_raw(), now, Duration::from_secs(60)).unwrap();
            let reloaded = NodeKey::from_pkcs8(&node.pkcs8()).unwrap();
            node_client_config(ca.cert_der(), &cert.der, &reloaded).unwrap();
            join_client_config(&fingerprint(ca.cert_der())).unwrap();
        }
    }
}

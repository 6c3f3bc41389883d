//! Access tokens: EdDSA (Ed25519) JWTs signed with the orchestrator's key, which is
//! created at first start and kept in the log's database. Verification fails closed
//! and caches verified tokens, since signature checks dominate a request's CPU cost.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use actors::policy::{Principal, Role};
use actors::session;
use actors::storage::Log;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// `iss` of every token this orchestrator mints.
pub const ISSUER: &str = "dispatch";
/// `aud` the API accepts.
pub const AUDIENCE: &str = "dispatch-api";
const KEY_META: &str = "auth/signing-key/ed25519-pkcs8";
/// Keys added by rotation: key `NNNNNN` (rotation order) → PKCS#8 DER.
pub const ROTATED_KEYS_INDEX: &str = "signing_keys";
/// Keys that stopped signing: kid → i64 (LE) millis when the next key took over.
pub const SUPERSEDED_KEYS_INDEX: &str = "signing_keys_superseded";
/// Retired keys, which verify nothing: kid → i64 (LE) millis of the retirement.
pub const RETIRED_KEYS_INDEX: &str = "signing_keys_retired";
const CACHE_LIMIT: usize = 16 * 1024;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    /// `iat` in milliseconds: a revocation of the subject at time T must spare a token
    /// minted later within the same second (a login right after a password reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    #[serde(default)]
    pub nbf: Option<i64>,
    pub jti: String,
    pub role: Role,
    pub accounts: Vec<String>,
    pub sites: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    /// The login session this token belongs to, if it came from a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Claims {
    /// Fresh claims for `principal`, valid for `ttl_seconds` from now.
    pub fn for_principal(principal: &Principal, ttl_seconds: i64, sid: Option<String>) -> Claims {
        let now_ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
        let now = now_ms.div_euclid(1000);
        Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: principal.sub.clone(),
            exp: now + ttl_seconds,
            iat: now,
            iat_ms: Some(now_ms),
            nbf: Some(now),
            jti: Uuid::new_v4().to_string(),
            role: principal.role,
            accounts: principal.accounts.clone(),
            sites: principal.sites.clone(),
            tools: principal.tools.clone(),
            queues: principal.queues.clone(),
            sid,
        }
    }

    /// When the token was issued, in milliseconds (tokens without `iat_ms`: the
    /// end of their `iat` second, so a revocation in that second still covers them).
    fn issued_ms(&self) -> i64 {
        self.iat_ms.unwrap_or(self.iat.saturating_mul(1000).saturating_add(999))
    }

    fn principal(&self) -> Principal {
        Principal {
            sub: self.sub.clone(),
            role: self.role,
            accounts: self.accounts.clone(),
            sites: self.sites.clone(),
            tools: self.tools.clone(),
            queues: self.queues.clone(),
        }
    }
}

/// Audience of a manager's emergency-bypass confirmation (never an access token).
pub const BYPASS_AUDIENCE: &str = "dispatch-bypass-confirmation";
/// How long a bypass confirmation may be used.
pub const BYPASS_TTL_SECONDS: i64 = 10 * 60;

/// A manager's signed "yes" to one emergency bypass of one ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BypassClaims {
    pub iss: String,
    pub aud: String,
    /// The manager who confirmed.
    pub sub: String,
    pub role: Role,
    pub ticket: String,
    pub reason: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
}

/// Why a token did not verify, in words for the person holding it (not the library's
/// variant names). Times are checked with [`CLOCK_LEEWAY_SECONDS`] of tolerance.
fn plain(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as Kind;
    match e.kind() {
        Kind::ExpiredSignature => "the token has expired: log in again or mint a new one".into(),
        Kind::ImmatureSignature => {
            "the token is not valid yet: check the clocks of this machine and the issuer's".into()
        }
        Kind::InvalidSignature => "the token's signature does not verify".into(),
        Kind::InvalidIssuer => "the token was issued by someone else".into(),
        Kind::InvalidAudience => "the token is meant for another service".into(),
        Kind::MissingRequiredClaim(claim) => format!("the token has no {claim} claim"),
        Kind::InvalidToken | Kind::Base64(_) | Kind::Json(_) | Kind::Utf8(_) => {
            "not a token (expected three base64url parts signed by this server)".into()
        }
        _ => "the token does not verify".into(),
    }
}

/// Seconds of clock difference tolerated when checking a token's `exp` and `nbf`: a
/// token is refused from `exp` + this many seconds on.
pub const CLOCK_LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("access token revoked")]
    Revoked,
    #[error("signing key unavailable: {0}")]
    Key(String),
}

struct Key {
    kid: String,
    /// Retired keys stay listed (the first key lives in the meta table) but verify nothing.
    retired: bool,
    public: [u8; 32],
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl Key {
    fn from_pkcs8(der: &[u8]) -> Result<Key, AuthError> {
        let key = <SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
            .map_err(|e| AuthError::Key(format!("stored signing key does not decode: {e}")))?;
        let public = key.verifying_key().to_bytes();
        Ok(Key {
            kid: hex::encode(&Sha256::digest(public)[..8]),
            retired: false,
            public,
            encoding: EncodingKey::from_ed_der(der),
            decoding: DecodingKey::from_ed_der(&public),
        })
    }
}

/// A new Ed25519 signing key as PKCS#8 DER.
pub fn generate_key() -> Result<Vec<u8>, AuthError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    Ok(key.to_pkcs8_der().map_err(|e| AuthError::Key(e.to_string()))?.as_bytes().to_vec())
}

/// Tokens that must die before their `exp`.
#[derive(Default)]
struct Revocations {
    jtis: HashMap<String, i64>,
    sessions: HashSet<String>,
    /// Subject → tokens issued at or before this (milliseconds) are refused.
    subjects: HashMap<String, i64>,
}

/// A public verification key, as published at `/v1/auth/keys`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PublicKey {
    pub kid: String,
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    /// The raw public key, base64url without padding.
    pub x: String,
}

/// Signs and verifies access tokens.
pub struct Auth {
    /// Oldest first; the last one signs.
    keys: RwLock<Vec<Key>>,
    validation: Validation,
    verified: Mutex<HashMap<String, Claims>>,
    revoked: RwLock<Revocations>,
}

impl Auth {
    /// Loads the signing keys and the revocation set from the log, creating the
    /// first key on first start.
    pub fn load_or_create(log: &Log) -> Result<Auth, AuthError> {
        let storage = |e: actors::storage::StorageError| AuthError::Key(e.to_string());
        let first = log.meta_get_or_insert(KEY_META, &generate_key()?).map_err(storage)?;
        let mut keys = vec![Key::from_pkcs8(&first)?];
        for (_, der) in log.index_scan(ROTATED_KEYS_INDEX, "", usize::MAX).map_err(storage)? {
            keys.push(Key::from_pkcs8(&der)?);
        }
        for (kid, _) in log.index_scan(RETIRED_KEYS_INDEX, "", usize::MAX).map_err(storage)? {
            keys.iter_mut().filter(|k| k.kid == kid).for_each(|k| k.retired = true);
        }
        let mut revoked = Revocations::default();
        for (key, value) in log.index_scan(session::REVOKED_INDEX, "", usize::MAX).map_err(storage)? {
            let Some((kind, v)) = key.split_once('\u{1f}') else { continue };
            let at = value.get(..8).and_then(|b| b.try_into().ok()).map_or(i64::MAX, i64::from_le_bytes);
            match kind {
                "jti" => drop(revoked.jtis.insert(v.to_owned(), at)),
                "sid" => drop(revoked.sessions.insert(v.to_owned())),
                "sub" => drop(revoked.subjects.insert(v.to_owned(), at)),
                _ => {}
            }
        }
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_LEEWAY_SECONDS;
        Ok(Auth {
            keys: RwLock::new(keys),
            validation,
            verified: Mutex::new(HashMap::new()),
            revoked: RwLock::new(revoked),
        })
    }

    /// Mints a token for `principal` valid for `ttl_seconds`.
    pub fn mint(&self, principal: &Principal, ttl_seconds: i64) -> Result<(String, Claims), AuthError> {
        let claims = Claims::for_principal(principal, ttl_seconds, None);
        Ok((self.sign(&claims)?, claims))
    }

    /// Signs arbitrary claims with the current key (tests craft edge cases with it).
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, AuthError> {
        let keys = read(&self.keys);
        let key = keys.last().ok_or_else(|| AuthError::Key("no signing key".into()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(|e| AuthError::Key(e.to_string()))
    }

    /// Verifies a bearer token: algorithm, key id, signature, issuer, audience, time,
    /// then the revocation set (checked on every request, cached or not).
    pub fn verify(&self, token: &str) -> Result<(Principal, Claims), AuthError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let cached = lock(&self.verified).get(token).filter(|c| c.exp > now).cloned();
        let claims = match cached {
            Some(c) => c,
            None => {
                let claims = self.verify_signature(token)?;
                let mut cache = lock(&self.verified);
                if cache.len() >= CACHE_LIMIT {
                    cache.retain(|_, c| c.exp > now);
                    if cache.len() >= CACHE_LIMIT {
                        cache.clear();
                    }
                }
                cache.insert(token.to_owned(), claims.clone());
                claims
            }
        };
        let revoked = read(&self.revoked);
        if revoked.jtis.contains_key(&claims.jti)
            || claims.sid.as_ref().is_some_and(|s| revoked.sessions.contains(s))
            || revoked.subjects.get(&claims.sub).is_some_and(|before| claims.issued_ms() <= *before)
        {
            return Err(AuthError::Revoked);
        }
        Ok((claims.principal(), claims))
    }

    fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        self.decode(token, &self.validation)
    }

    /// Checks algorithm, key id (a known key, not retired) and signature, then the
    /// claims against `validation`: the one way any token of ours is read.
    fn decode<C: serde::de::DeserializeOwned>(&self, token: &str, validation: &Validation) -> Result<C, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(plain(&e)))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid("algorithm must be EdDSA".into()));
        }
        let keys = read(&self.keys);
        let kid = header.kid.ok_or_else(|| AuthError::Invalid("token has no key id".into()))?;
        let key =
            keys.iter().find(|k| k.kid == kid).ok_or_else(|| AuthError::Invalid("unknown signing key id".into()))?;
        if key.retired {
            return Err(AuthError::Invalid("the signing key of this token was retired".into()));
        }
        let data =
            jsonwebtoken::decode::<C>(token, &key.decoding, validation).map_err(|e| AuthError::Invalid(plain(&e)))?;
        Ok(data.claims)
    }

    /// A bypass confirmation signed now for `manager` on `ticket`.
    pub fn sign_bypass(
        &self,
        manager: &Principal,
        ticket: &str,
        reason: &str,
    ) -> Result<(String, BypassClaims), AuthError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = BypassClaims {
            iss: ISSUER.into(),
            aud: BYPASS_AUDIENCE.into(),
            sub: manager.sub.clone(),
            role: manager.role,
            ticket: ticket.into(),
            reason: reason.into(),
            exp: now + BYPASS_TTL_SECONDS,
            iat: now,
            jti: Uuid::new_v4().to_string(),
        };
        Ok((self.sign(&claims)?, claims))
    }

    /// Checks a bypass confirmation: our signature, its audience, unexpired, for `ticket`,
    /// from a manager whose tokens are not revoked.
    pub fn verify_bypass(&self, token: &str, ticket: &str) -> Result<BypassClaims, AuthError> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[BYPASS_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims: BypassClaims = self.decode(token, &validation)?;
        if claims.ticket != ticket {
            return Err(AuthError::Invalid("the confirmation is for another ticket".into()));
        }
        if claims.role != Role::Manager {
            return Err(AuthError::Invalid("the confirmation is not a manager's".into()));
        }
        let revoked = read(&self.revoked);
        if revoked.subjects.get(&claims.sub).is_some_and(|before| claims.iat.saturating_mul(1000) <= *before) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }

    /// Starts signing with `der` (already stored durably); older keys keep verifying.
    pub fn add_key(&self, der: &[u8]) -> Result<String, AuthError> {
        let key = Key::from_pkcs8(der)?;
        let kid = key.kid.clone();
        self.keys.write().unwrap_or_else(|p| p.into_inner()).push(key);
        Ok(kid)
    }

    /// How many keys have been added by rotation (names the next index entry).
    pub fn rotated_key_count(&self) -> usize {
        read(&self.keys).len() - 1
    }

    /// The key id tokens are signed with now.
    pub fn current_kid(&self) -> String {
        read(&self.keys).last().map(|k| k.kid.clone()).unwrap_or_default()
    }

    /// Stops `kid` verifying anything (already recorded in the log). The current
    /// signing key cannot be retired: rotate first.
    pub fn retire(&self, kid: &str) -> Result<(), AuthError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if keys.last().is_some_and(|k| k.kid == kid) {
            return Err(AuthError::Key("the current signing key cannot be retired; rotate first".into()));
        }
        let key = keys.iter_mut().find(|k| k.kid == kid).ok_or_else(|| AuthError::Key("no such key".into()))?;
        key.retired = true;
        // Cached verifications of its tokens must not outlive it.
        lock(&self.verified).clear();
        Ok(())
    }

    /// True when `kid` names a key this orchestrator has (retired or not).
    pub fn has_key(&self, kid: &str) -> bool {
        read(&self.keys).iter().any(|k| k.kid == kid)
    }

    /// The verification keys still in use, newest last.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        use base64::Engine;
        read(&self.keys)
            .iter()
            .filter(|k| !k.retired)
            .map(|k| PublicKey {
                kid: k.kid.clone(),
                kty: "OKP",
                crv: "Ed25519",
                alg: "EdDSA",
                x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(k.public),
            })
            .collect()
    }

    /// The login session `sid` was ended (logout, reuse, a change to its user, an admin).
    pub fn session_revoked(&self, sid: &str) -> bool {
        read(&self.revoked).sessions.contains(sid)
    }

    /// The access token `jti` was revoked.
    pub fn jti_revoked(&self, jti: &str) -> bool {
        read(&self.revoked).jtis.contains_key(jti)
    }

    /// Applies a revocation already written to the log.
    pub fn revoke(&self, kind: session::RevokedKind, value: &str, at: i64) {
        let mut r = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        match kind {
            session::RevokedKind::Jti => drop(r.jtis.insert(value.to_owned(), at)),
            session::RevokedKind::Session => drop(r.sessions.insert(value.to_owned())),
            session::RevokedKind::Subject => drop(r.subjects.insert(value.to_owned(), at)),
        }
    }
}

// A panic while holding these locks cannot leave the maps inconsistent.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn fresh_auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("l.redb")).unwrap();
        let auth = Auth::load_or_create(&log).unwrap();
        (dir, auth)
    }

    fn someone() -> Principal {
        Principal {
            sub: "u".into(),
            role: Role::Dispatcher,
            accounts: vec!["*".into()],
            sites: vec!["*".into()],
            tools: None,
            queues: vec![],
        }
    }

    #[test]
    fn the_key_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let token = {
            let log = Log::open(dir.path().join("l.redb")).unwrap();
            Auth::load_or_create(&log).unwrap().mint(&someone(), 60).unwrap().0
        };
        let log = Log::open(dir.path().join("l.redb")).unwrap();
        assert_eq!(Auth::load_or_create(&log).unwrap().verify(&token).unwrap().0.sub, "u");
    }

    #[test]
    fn bad_tokens_fail_closed() {
        let (_d, auth) = fresh_auth();
        let (_d2, other) = fresh_auth();
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let (good, _) = auth.mint(&someone(), 60).unwrap();
        let (expired, _) = auth.mint(&someone(), -120).unwrap();
        let (foreign, _) = other.mint(&someone(), 60).unwrap();
        let parts: Vec<&str> = good.split('.').collect();
        let alg_none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        let tampered = format!("{}.{}.{}", parts[0], b64(r#"{"sub":"admin","role":"admin"}"#), parts[2]);
        let cases = [
            ("expired", expired),
            ("signed by another key", foreign),
            ("alg none", alg_none),
            ("claims changed", tampered),
            ("garbage", "not-a-token".to_string()),
        ];
        for (name, token) in cases {
            assert!(auth.verify(&token).is_err(), "{name} was accepted");
        }
        assert!(auth.verify(&good).is_ok());
    }
}

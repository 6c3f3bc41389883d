//! Access tokens: EdDSA (Ed25519) JWTs signed with the orchestrator's key, which is
//! created at first start and kept in the log's database. Verification fails closed
//! and caches verified tokens, since signature checks dominate a request's CPU cost.

use std::collections::HashMap;
use std::sync::Mutex;

use actors::policy::{Principal, Role};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storage::Log;
use uuid::Uuid;

/// `iss` of every token this orchestrator mints.
pub const ISSUER: &str = "dispatch";
/// `aud` the API accepts.
pub const AUDIENCE: &str = "dispatch-api";
const KEY_META: &str = "auth/signing-key/ed25519-pkcs8";
const CACHE_LIMIT: usize = 16 * 1024;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
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
}

impl Claims {
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

/// Why a token was refused. The message never echoes the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid access token: {0}")]
    Invalid(String),
    #[error("signing key unavailable: {0}")]
    Key(String),
}

/// Signs and verifies access tokens.
pub struct Auth {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    verified: Mutex<HashMap<String, (Principal, i64)>>,
}

impl Auth {
    /// Loads the signing key from the log, creating it on first start.
    pub fn load_or_create(log: &Log) -> Result<Auth, AuthError> {
        let fresh = SigningKey::generate(&mut rand::rngs::OsRng);
        let fresh_der = fresh.to_pkcs8_der().map_err(|e| AuthError::Key(e.to_string()))?;
        let der = log.meta_get_or_insert(KEY_META, fresh_der.as_bytes()).map_err(|e| AuthError::Key(e.to_string()))?;
        let key = <SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(&der)
            .map_err(|e| AuthError::Key(format!("stored signing key does not decode: {e}")))?;
        let public = key.verifying_key().to_bytes();
        let kid = hex::encode(&Sha256::digest(public)[..8]);
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 5;
        Ok(Auth {
            kid,
            encoding: EncodingKey::from_ed_der(&der),
            decoding: DecodingKey::from_ed_der(&public),
            validation,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Mints a token for `principal` valid for `ttl_seconds`.
    pub fn mint(&self, principal: &Principal, ttl_seconds: i64) -> Result<(String, Claims), AuthError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: principal.sub.clone(),
            exp: now + ttl_seconds,
            iat: now,
            nbf: Some(now),
            jti: Uuid::new_v4().to_string(),
            role: principal.role,
            accounts: principal.accounts.clone(),
            sites: principal.sites.clone(),
            tools: principal.tools.clone(),
            queues: principal.queues.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| AuthError::Key(e.to_string()))?;
        Ok((token, claims))
    }

    /// Verifies a bearer token: algorithm, key id, signature, issuer, audience, time.
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some((p, exp)) = self.cache().get(token)
            && *exp > now
        {
            return Ok(p.clone());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Invalid("algorithm must be EdDSA".into()));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(AuthError::Invalid("unknown signing key id".into()));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let principal = data.claims.principal();
        let mut cache = self.cache();
        if cache.len() >= CACHE_LIMIT {
            cache.retain(|_, (_, exp)| *exp > now);
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
        }
        cache.insert(token.to_owned(), (principal.clone(), data.claims.exp));
        Ok(principal)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Principal, i64)>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
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
        assert_eq!(Auth::load_or_create(&log).unwrap().verify(&token).unwrap().sub, "u");
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

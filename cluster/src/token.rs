//! The bootstrap token string: `dspj1.<claims>.<mac>`, base64url without padding.
//! The claims (token id, expiry, orchestrator addresses, CA fingerprint) are readable
//! by the joining worker without any key, so it can pin the CA before trusting the
//! orchestrator; the HMAC-SHA256 over them proves to the orchestrator that it made
//! the token. Use counts and revocation live in the orchestrator's log.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

const PREFIX: &str = "dspj1";

/// What a token says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub id: String,
    pub expires_ms: i64,
    /// Where the orchestrator listens for QUIC (`host:port`).
    pub orchestrators: Vec<String>,
    /// SHA-256 (hex) of the cluster CA certificate.
    pub ca_sha256: String,
}

/// Why a token string could not be read or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a dispatch join token (expected dspj1.<claims>.<mac>)")]
    Malformed,
    #[error("the join token's signature does not verify (forged or altered)")]
    Forged,
}

/// Signs `claims` with the orchestrator's token key.
pub fn sign(claims: &TokenClaims, key: &[u8]) -> String {
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let mac = URL_SAFE_NO_PAD.encode(mac(key, &body));
    format!("{PREFIX}.{body}.{mac}")
}

fn mac(key: &[u8], body: &str) -> Vec<u8> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn split(token: &str) -> Result<(&str, &str), TokenError> {
    let mut parts = token.trim().split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(PREFIX), Some(body), Some(mac), None) => Ok((body, mac)),
        _ => Err(TokenError::Malformed),
    }
}

/// Reads the claims without verifying them (the worker's side: it has no key).
pub fn read(token: &str) -> Result<TokenClaims, TokenError> {
    let (body, _) = split(token)?;
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// Reads and verifies a token (the orchestrator's side), in constant time.
pub fn verify(token: &str, key: &[u8]) -> Result<TokenClaims, TokenError> {
    let (body, given) = split(token)?;
    let given = URL_SAFE_NO_PAD.decode(given).map_err(|_| TokenError::Forged)?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).map_err(|_| TokenError::Forged)?;
    mac.update(body.as_bytes());
    mac.verify_slice(&given).map_err(|_| TokenError::Forged)?;
    read(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TokenClaims {
        TokenClaims {
            id: "t1".into(),
            expires_ms: 9,
            orchestrators: vec!["127.0.0.1:7443".into()],
            ca_sha256: "ab".into(),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_reads_back() {
        let token = sign(&claims(), b"key");
        assert_eq!(read(&token), Ok(claims()));
        assert_eq!(verify(&token, b"key"), Ok(claims()));
    }

    #[test]
    fn altered_foreign_or_garbled_tokens_are_refused() {
        let token = sign(&claims(), b"key");
        assert_eq!(verify(&token, b"other key"), Err(TokenError::Forged));
        let forged_claims = TokenClaims { id: "t2".into(), ..claims() };
        let (_, mac) = token.rsplit_once('.').unwrap();
        let altered = format!("{}.{mac}", sign(&forged_claims, b"key").rsplit_once('.').unwrap().0);
        assert_eq!(verify(&altered, b"key"), Err(TokenError::Forged));
        for bad in ["", "dspj1", "dspj1.a", "x.y.z", "dspj1.!!.??", "dspj1.a.b.c"] {
            assert!(verify(bad, b"key").is_err(), "{bad:?}");
        }
        assert_eq!(read("dspj1.bm90IGpzb24.x"), Err(TokenError::Malformed));
    }
}

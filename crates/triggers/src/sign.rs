//! Webhook signatures in the Standard Webhooks format: headers `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature: v1,<base64>` where the
//! signature is HMAC-SHA256 over `id.timestamp.body` keyed by the secret's bytes; secrets
//! are written `whsec_<base64>`. HMAC is the RFC 2104 construction over `sha2`, checked
//! against the specification's published example.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";
const PREFIX: &str = "whsec_";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("a webhook secret is 'whsec_' followed by base64 bytes")]
    NoPrefix,
    #[error("the webhook secret after 'whsec_' is not base64: {0}")]
    NotBase64(String),
    #[error("the webhook secret has {0} bytes; at least 16 are needed")]
    TooShort(usize),
    #[error("no v1 signature matches")]
    Mismatch,
    #[error("the timestamp is {0} s away from now; at most {1} s are accepted")]
    Stale(i64, i64),
}

/// A signing secret's key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl Secret {
    pub fn parse(text: &str) -> Result<Secret, SignError> {
        let b64 = text
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SignError::NoPrefix)?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|e| SignError::NotBase64(e.to_string()))?;
        if bytes.len() < 16 {
            return Err(SignError::TooShort(bytes.len()));
        }
        Ok(Secret(bytes))
    }

    /// A secret from key bytes (e.g. 32 random bytes).
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The `whsec_…` form.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for part in message {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The `webhook-signature` header value for one delivery attempt.
pub fn sign(secret: &Secret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac_sha256(&secret.0, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

/// Checks a `webhook-signature` header (space-separated `v1,…` entries, any of which may
/// match) and that the timestamp is within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), SignError> {
    use subtle::ConstantTimeEq;
    let off = (now_secs - timestamp).abs();
    if off > tolerance_secs {
        return Err(SignError::Stale(off, tolerance_secs));
    }
    let want = sign(secret, id, timestamp, body);
    let ok = header
        .split_whitespace()
        .filter(|s| s.starts_with("v1,"))
        .any(|s| bool::from(s.as_bytes().ct_eq(want.as_bytes())));
    if ok {
        Ok(())
    } else {
        Err(SignError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_standard_webhooks_example_reproduces() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let header = format!("v1,bm9wZQ== {sig}");
        verify(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
            &header,
            1614265330 + 10,
            300,
        )
        .unwrap();
        assert_eq!(
            verify(
                &secret,
                "msg_other",
                1614265330,
                b"{}",
                &header,
                1614265330,
                300
            ),
            Err(SignError::Mismatch)
        );
        assert_eq!(
            verify(
                &secret,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                b"{}",
                &header,
                1614266330,
                300
            ),
            Err(SignError::Stale(1000, 300))
        );
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_parse_and_print() {
        assert_eq!(Secret::parse("MfKQ"), Err(SignError::NoPrefix));
        assert!(matches!(
            Secret::parse("whsec_!!"),
            Err(SignError::NotBase64(_))
        ));
        assert_eq!(Secret::parse("whsec_AAAA"), Err(SignError::TooShort(3)));
        let s = Secret::from_bytes(vec![7; 32]);
        assert_eq!(Secret::parse(&s.to_text()).unwrap(), s);
        assert_eq!(format!("{s:?}"), "Secret(32 bytes)");
    }
}

//! Standard Webhooks signing (<https://www.standardwebhooks.com>): the secret is `whsec_` and
//! the base64 of random bytes; a delivery carries `webhook-id`, `webhook-timestamp` (Unix
//! seconds) and `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`,
//! several space-separated signatures while a rotated secret still signs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new random secret, `whsec_` + base64 of 32 bytes.
pub fn new_secret() -> SecretString {
    let bytes = mailroom_core::id::random_bytes::<32>();
    SecretString::from(format!("{PREFIX}{}", STANDARD.encode(bytes)))
}

/// The HMAC key of a secret: the bytes its base64 encodes (after `whsec_`).
fn key(secret: &SecretString) -> Option<Vec<u8>> {
    let s = secret.expose_secret();
    STANDARD.decode(s.strip_prefix(PREFIX).unwrap_or(s)).ok()
}

/// `v1,<signature>` of one message under one secret.
pub fn sign(secret: &SecretString, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = key(secret)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header value: one signature per secret still signing.
pub fn signature_header(
    secrets: &[SecretString],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .filter_map(|s| sign(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification (its reference libraries' tests).
    #[test]
    fn matches_the_specification_example() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let body = br#"{"test": 2432232314}"#;
        let got = sign(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(got, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn new_secrets_decode_to_32_bytes() {
        let s = new_secret();
        assert!(s.expose_secret().starts_with("whsec_"));
        assert_eq!(key(&s).unwrap().len(), 32);
    }
}

//! Signature checks for push deliveries, run over the raw body before any JSON is parsed so that
//! an unauthenticated sender cannot reach the parser or trigger anything.
//!
//! Every comparison is constant time: HMACs through [`Mac::verify_slice`], plain tokens through
//! [`subtle`]. Errors name the header that was expected but never echo the secret or the
//! signature that was sent, so they are safe to log and to return to the sender.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::provider::{Provider, first_header, header_text};

type HmacSha256 = Hmac<Sha256>;

/// How far a Standard Webhooks `webhook-timestamp` may be from our clock, either way. Bounds how
/// long a captured delivery can be replayed and tolerates modest clock skew.
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// The prefix of GitHub-style signature headers; the only algorithm accepted (SHA-1 is not).
const SHA256_PREFIX: &str = "sha256=";

/// The prefix of Standard Webhooks secrets; the rest is the base64 key.
const STANDARD_WEBHOOKS_SECRET_PREFIX: &str = "whsec_";

/// Why a delivery was not accepted as authentic. Display never includes secret or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The header that should carry the signature or token is absent.
    #[error("missing signature: expected header `{header}`")]
    MissingSignature {
        /// The header (or headers) the provider signs with.
        header: &'static str,
    },
    /// A signature header is present but cannot be read, e.g. not hex or an unknown algorithm.
    #[error("malformed signature: {reason}")]
    Malformed {
        /// What was wrong, without the value itself.
        reason: &'static str,
    },
    /// The signature or token does not match the configured secret.
    #[error("signature does not match")]
    Mismatch,
    /// A Standard Webhooks timestamp further from now than [`TIMESTAMP_TOLERANCE`].
    #[error("webhook timestamp is outside the accepted window of {} seconds", TIMESTAMP_TOLERANCE.as_secs())]
    StaleTimestamp,
    /// The configured secret cannot be used for Standard Webhooks (`whsec_<base64>` expected).
    /// A configuration error on our side, not the sender's.
    #[error("the configured secret is not a Standard Webhooks key (`whsec_<base64>`)")]
    InvalidSecret,
}

/// Checks that a delivery to the shared receiver of `provider` is signed with `secret`.
/// `now` is passed in so that timestamp checks are testable.
pub fn verify_request(
    provider: Provider,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    match provider {
        Provider::GitHub => verify_prefixed_header(secret, headers, body, "x-hub-signature-256"),
        Provider::Gitea | Provider::Forgejo => verify_gitea(secret, headers, body),
        Provider::GitLab => verify_gitlab(secret, headers, body, now),
        Provider::Bitbucket => verify_prefixed_header(secret, headers, body, "x-hub-signature"),
        Provider::Generic => verify_prefixed_header(secret, headers, body, "x-signature"),
    }
}

/// Gitea, Gogs and Forgejo send a bare hex HMAC under their own names and usually a GitHub-style
/// copy too; the first present header decides, so a wrong one is never skipped over.
fn verify_gitea(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> Result<(), VerifyError> {
    const BARE_HEX: [&str; 3] = [
        "x-forgejo-signature",
        "x-gitea-signature",
        "x-gogs-signature",
    ];
    if let Some(hex) = first_header(headers, &BARE_HEX) {
        return verify_sha256_hex(secret, body, hex);
    }
    match header_text(headers, "x-hub-signature-256") {
        Some(value) => verify_prefixed_sha256(secret, body, value),
        None => Err(VerifyError::MissingSignature {
            header: "X-Gitea-Signature, X-Forgejo-Signature or X-Hub-Signature-256",
        }),
    }
}

/// GitLab either signs (Standard Webhooks, preferred when present) or sends the secret itself.
fn verify_gitlab(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    if headers.contains_key("webhook-signature") {
        return verify_standard_webhook(secret, headers, body, now);
    }
    match header_text(headers, "x-gitlab-token") {
        Some(token) => verify_token(secret, token.as_bytes()),
        None => Err(VerifyError::MissingSignature {
            header: "X-Gitlab-Token or webhook-signature",
        }),
    }
}

fn verify_prefixed_header(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    header: &'static str,
) -> Result<(), VerifyError> {
    match header_text(headers, header) {
        Some(value) => verify_prefixed_sha256(secret, body, value),
        None => Err(VerifyError::MissingSignature { header }),
    }
}

/// Checks a `sha256=<hex HMAC-SHA256(secret, body)>` header value (GitHub, Bitbucket, generic).
pub fn verify_prefixed_sha256(secret: &[u8], body: &[u8], value: &str) -> Result<(), VerifyError> {
    let hex = strip_prefix_ignore_case(value, SHA256_PREFIX).ok_or(VerifyError::Malformed {
        reason: "expected `sha256=<hex>`",
    })?;
    verify_sha256_hex(secret, body, hex)
}

/// Checks a bare hex HMAC-SHA256 of the body (Gitea, Forgejo, Gogs).
pub fn verify_sha256_hex(secret: &[u8], body: &[u8], hex: &str) -> Result<(), VerifyError> {
    let expected = decode_hex(hex).ok_or(VerifyError::Malformed {
        reason: "signature is not hexadecimal",
    })?;
    verify_hmac(secret, &[body], &expected)
}

/// Compares a plain shared token (GitLab's `X-Gitlab-Token`) in constant time. Lengths may leak;
/// contents do not.
pub fn verify_token(expected: &[u8], given: &[u8]) -> Result<(), VerifyError> {
    if bool::from(expected.ct_eq(given)) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Checks the Standard Webhooks headers `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` (space-separated `v1,<base64>` entries, any of which may match) against a
/// `whsec_<base64>` secret. Id and timestamp are signed, so unlike the other schemes a captured
/// delivery cannot be replayed under a fresh id or after the tolerance window.
pub fn verify_standard_webhook(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), VerifyError> {
    let id = required_header(headers, "webhook-id")?;
    let timestamp = required_header(headers, "webhook-timestamp")?;
    let signatures = required_header(headers, "webhook-signature")?;
    check_timestamp(timestamp, now)?;
    let key = standard_webhooks_key(secret)?;
    let signed = [id.as_bytes(), b".", timestamp.as_bytes(), b".", body];
    verify_any_v1_signature(&key, &signed, signatures)
}

fn required_header<'a>(
    headers: &'a HeaderMap,
    header: &'static str,
) -> Result<&'a str, VerifyError> {
    header_text(headers, header).ok_or(VerifyError::MissingSignature { header })
}

pub(crate) fn check_timestamp(timestamp: &str, now: SystemTime) -> Result<(), VerifyError> {
    let seconds: u64 = timestamp.parse().map_err(|_| VerifyError::Malformed {
        reason: "webhook-timestamp is not a number of seconds",
    })?;
    // Checked: the header is read before the signature is, so any u64 arrives here, and
    // `SystemTime + Duration` panics past the platform's range.
    let sent = UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or(VerifyError::StaleTimestamp)?;
    let skew = match now.duration_since(sent) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    if skew > TIMESTAMP_TOLERANCE {
        return Err(VerifyError::StaleTimestamp);
    }
    Ok(())
}

/// The HMAC key of a `whsec_<base64>` secret. The prefix is optional, as in the reference
/// libraries.
fn standard_webhooks_key(secret: &[u8]) -> Result<Vec<u8>, VerifyError> {
    let encoded = secret
        .strip_prefix(STANDARD_WEBHOOKS_SECRET_PREFIX.as_bytes())
        .unwrap_or(secret);
    BASE64
        .decode(encoded)
        .map_err(|_| VerifyError::InvalidSecret)
}

fn verify_any_v1_signature(
    key: &[u8],
    signed: &[&[u8]],
    signatures: &str,
) -> Result<(), VerifyError> {
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64.decode(encoded).ok())
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::Malformed {
            reason: "webhook-signature holds no `v1,<base64>` entry",
        });
    }
    let matched = candidates
        .iter()
        .any(|candidate| verify_hmac(key, signed, candidate).is_ok());
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// Constant-time check of an HMAC-SHA256 over the concatenation of `parts`.
fn verify_hmac(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> Result<(), VerifyError> {
    hmac_sha256_mac(key, parts)
        .verify_slice(expected)
        .map_err(|_| VerifyError::Mismatch)
}

/// HMAC-SHA256 over the concatenation of `parts`, used both to verify and to derive per-object
/// hook ids.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    hmac_sha256_mac(key, parts).finalize().into_bytes().into()
}

fn hmac_sha256_mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

/// Lowercase hex of `bytes`.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 0xf)],
            ]
        })
        .map(char::from)
        .collect()
}

/// Bytes of a hex string in either case; `None` for odd lengths or other characters.
pub(crate) fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(hex_digit(pair[0])? << 4 | hex_digit(pair[1])?))
        .collect()
}

fn hex_digit(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB_SECRET: &[u8] = b"It's a Secret to Everybody";
    const GITHUB_BODY: &[u8] = b"Hello, World!";
    const GITHUB_SIGNATURE: &str =
        "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    // Standard Webhooks reference vector (also reproduced with Python's hmac module).
    const SW_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: u64 = 1_614_265_330;
    const SW_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn sw_time(offset_seconds: i64) -> SystemTime {
        let base = UNIX_EPOCH + Duration::from_secs(SW_TIMESTAMP);
        if offset_seconds >= 0 {
            base + Duration::from_secs(offset_seconds.unsigned_abs())
        } else {
            base - Duration::from_secs(offset_seconds.unsigned_abs())
        }
    }

    fn sw_headers(signature: &str) -> HeaderMap {
        headers(&[
            ("webhook-id", SW_ID),
            ("webhook-timestamp", &SW_TIMESTAMP.to_string()),
            ("webhook-signature", signature),
        ])
    }

    fn github(pairs: &[(&'static str, &str)]) -> Result<(), VerifyError> {
        verify_request(
            Provider::GitHub,
            GITHUB_SECRET,
            &headers(pairs),
            GITHUB_BODY,
            SystemTime::now(),
        )
    }

    #[test]
    fn github_test_vector_verifies() {
        let value = format!("sha256={GITHUB_SIGNATURE}");
        assert_eq!(github(&[("x-hub-signature-256", &value)]), Ok(()));
        let upper = format!("SHA256={}", GITHUB_SIGNATURE.to_uppercase());
        assert_eq!(github(&[("x-hub-signature-256", &upper)]), Ok(()));
    }

    #[test]
    fn github_rejects_missing_wrong_and_malformed_signatures() {
        assert_eq!(
            github(&[]),
            Err(VerifyError::MissingSignature {
                header: "x-hub-signature-256"
            })
        );
        let wrong = format!("sha256={}", GITHUB_SIGNATURE.replace('7', "8"));
        assert_eq!(
            github(&[("x-hub-signature-256", &wrong)]),
            Err(VerifyError::Mismatch)
        );
        let sha1 = "sha1=0123456789abcdef0123456789abcdef01234567";
        assert!(matches!(
            github(&[("x-hub-signature-256", sha1)]),
            Err(VerifyError::Malformed { .. })
        ));
        assert!(matches!(
            github(&[("x-hub-signature-256", "sha256=zz")]),
            Err(VerifyError::Malformed { .. })
        ));
        let truncated = format!("sha256={}", &GITHUB_SIGNATURE[..32]);
        assert_eq!(
            github(&[("x-hub-signature-256", &truncated)]),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn gitea_and_forgejo_accept_bare_hex_or_github_style() {
        for provider in [Provider::Gitea, Provider::Forgejo] {
            for header in ["x-gitea-signature", "x-forgejo-signature"] {
                let map = headers(&[(header, GITHUB_SIGNATURE)]);
                let result = verify_request(
                    provider,
                    GITHUB_SECRET,
                    &map,
                    GITHUB_BODY,
                    SystemTime::now(),
                );
                assert_eq!(result, Ok(()), "{provider} {header}");
            }
            let value = format!("sha256={GITHUB_SIGNATURE}");
            let map = headers(&[("x-hub-signature-256", &value)]);
            let result = verify_request(
                provider,
                GITHUB_SECRET,
                &map,
                GITHUB_BODY,
                SystemTime::now(),
            );
            assert_eq!(result, Ok(()));
        }
    }

    #[test]
    fn gitea_does_not_fall_back_past_a_wrong_bare_signature() {
        let good = format!("sha256={GITHUB_SIGNATURE}");
        let map = headers(&[("x-gitea-signature", "00"), ("x-hub-signature-256", &good)]);
        let result = verify_request(
            Provider::Gitea,
            GITHUB_SECRET,
            &map,
            GITHUB_BODY,
            SystemTime::now(),
        );
        assert_eq!(result, Err(VerifyError::Mismatch));
    }

    #[test]
    fn bitbucket_and_generic_use_their_own_headers() {
        let value = format!("sha256={GITHUB_SIGNATURE}");
        for (provider, header) in [
            (Provider::Bitbucket, "x-hub-signature"),
            (Provider::Generic, "x-signature"),
        ] {
            let map = headers(&[(header, &value)]);
            let result = verify_request(
                provider,
                GITHUB_SECRET,
                &map,
                GITHUB_BODY,
                SystemTime::now(),
            );
            assert_eq!(result, Ok(()));
            let other = headers(&[("x-hub-signature-256", &value)]);
            let result = verify_request(
                provider,
                GITHUB_SECRET,
                &other,
                GITHUB_BODY,
                SystemTime::now(),
            );
            assert!(matches!(result, Err(VerifyError::MissingSignature { .. })));
        }
    }

    #[test]
    fn gitlab_token_is_compared_exactly() {
        let check = |token: &str| {
            verify_request(
                Provider::GitLab,
                b"s3cret",
                &headers(&[("x-gitlab-token", token)]),
                b"{}",
                SystemTime::now(),
            )
        };
        assert_eq!(check("s3cret"), Ok(()));
        assert_eq!(check("s3cre"), Err(VerifyError::Mismatch));
        assert_eq!(check("s3cret2"), Err(VerifyError::Mismatch));
        assert_eq!(check("S3CRET"), Err(VerifyError::Mismatch));
    }

    #[test]
    fn standard_webhooks_vector_verifies() {
        let result = verify_request(
            Provider::GitLab,
            SW_SECRET,
            &sw_headers(SW_SIGNATURE),
            SW_BODY,
            sw_time(30),
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn standard_webhooks_accepts_any_of_several_signatures() {
        let several = format!("v1,AAAA v1a,ignored {SW_SIGNATURE}");
        let result = verify_standard_webhook(SW_SECRET, &sw_headers(&several), SW_BODY, sw_time(0));
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn standard_webhooks_rejects_tampering() {
        let tampered_body = verify_standard_webhook(
            SW_SECRET,
            &sw_headers(SW_SIGNATURE),
            br#"{"test": 2432232315}"#,
            sw_time(0),
        );
        assert_eq!(tampered_body, Err(VerifyError::Mismatch));

        let mut other_id = sw_headers(SW_SIGNATURE);
        other_id.insert("webhook-id", "msg_other".parse().unwrap());
        let result = verify_standard_webhook(SW_SECRET, &other_id, SW_BODY, sw_time(0));
        assert_eq!(result, Err(VerifyError::Mismatch));
    }

    #[test]
    fn standard_webhooks_rejects_stale_and_future_timestamps() {
        for offset in [-301, 301, 100_000] {
            let result = verify_standard_webhook(
                SW_SECRET,
                &sw_headers(SW_SIGNATURE),
                SW_BODY,
                sw_time(offset),
            );
            assert_eq!(result, Err(VerifyError::StaleTimestamp), "offset {offset}");
        }
        for offset in [-299, 299] {
            let result = verify_standard_webhook(
                SW_SECRET,
                &sw_headers(SW_SIGNATURE),
                SW_BODY,
                sw_time(offset),
            );
            assert_eq!(result, Ok(()), "offset {offset}");
        }
    }

    #[test]
    fn standard_webhooks_reports_missing_and_malformed_parts() {
        let mut map = sw_headers(SW_SIGNATURE);
        map.remove("webhook-id");
        assert_eq!(
            verify_standard_webhook(SW_SECRET, &map, SW_BODY, sw_time(0)),
            Err(VerifyError::MissingSignature {
                header: "webhook-id"
            })
        );
        assert!(matches!(
            verify_standard_webhook(SW_SECRET, &sw_headers("v2,abc"), SW_BODY, sw_time(0)),
            Err(VerifyError::Malformed { .. })
        ));
        let mut bad_time = sw_headers(SW_SIGNATURE);
        bad_time.insert("webhook-timestamp", "yesterday".parse().unwrap());
        assert!(matches!(
            verify_standard_webhook(SW_SECRET, &bad_time, SW_BODY, sw_time(0)),
            Err(VerifyError::Malformed { .. })
        ));
        assert_eq!(
            verify_standard_webhook(
                b"whsec_not base64!",
                &sw_headers(SW_SIGNATURE),
                SW_BODY,
                sw_time(0)
            ),
            Err(VerifyError::InvalidSecret)
        );
    }

    #[test]
    fn timestamps_past_the_clock_range_are_stale_not_a_panic() {
        for timestamp in [
            "18446744073709551615",
            "9223372036854775808",
            "9223372036854775807",
        ] {
            assert_eq!(
                check_timestamp(timestamp, SystemTime::now()),
                Err(VerifyError::StaleTimestamp),
                "{timestamp}"
            );
            let mut map = sw_headers(SW_SIGNATURE);
            map.insert("webhook-timestamp", timestamp.parse().unwrap());
            let result = verify_request(Provider::GitLab, SW_SECRET, &map, SW_BODY, sw_time(0));
            assert_eq!(result, Err(VerifyError::StaleTimestamp), "{timestamp}");
        }
        assert!(matches!(
            check_timestamp("18446744073709551616", SystemTime::now()),
            Err(VerifyError::Malformed { .. })
        ));
    }

    #[test]
    fn error_messages_never_contain_secret_or_signature() {
        let secret = "TopSecretValue123";
        let signature = "sha256=deadbeef";
        let errors = [
            verify_request(
                Provider::GitHub,
                secret.as_bytes(),
                &headers(&[("x-hub-signature-256", signature)]),
                b"body",
                SystemTime::now(),
            ),
            verify_request(
                Provider::GitLab,
                secret.as_bytes(),
                &headers(&[("x-gitlab-token", "WrongGuess")]),
                b"body",
                SystemTime::now(),
            ),
            verify_request(
                Provider::GitHub,
                secret.as_bytes(),
                &headers(&[("x-hub-signature-256", "md5=cafebabe")]),
                b"body",
                SystemTime::now(),
            ),
        ];
        for error in errors {
            let message = error.unwrap_err().to_string();
            for leaked in [secret, "deadbeef", "WrongGuess", "cafebabe"] {
                assert!(!message.contains(leaked), "{message}");
            }
        }
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(encode_hex(&bytes), "007fabff");
        assert_eq!(decode_hex("007FabfF"), Some(bytes.to_vec()));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("gg"), None);
        assert_eq!(decode_hex("+1"), None);
    }
}

//! Webhook payloads and signatures: every provider's parser over mutated real deliveries, and
//! the signature checks, which must accept exactly the deliveries signed with the secret.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use driftless::webhook::payload::{Event, parse_event};
use driftless::webhook::verify::verify_request;
use driftless::webhook::{Provider, VerifyError};
use hmac::{Hmac, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use crate::support::{config, each_entry, mutated, timed};

const PARSER: &str = "webhook";

/// What JSON and the payload readers give meaning to.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b",",
    b":",
    b"null",
    b"true",
    b"1e999",
    b"\\u0000",
    b"\\ud800",
    b"\"ref\":\"refs/heads/main\"",
    b"\"after\":\"0000000000000000000000000000000000000000\"",
    b"\"deleted\":true",
    b"\"object_kind\":\"push\"",
    b"\"checkout_sha\":null",
    b"\"changes\":[{}]",
    b"\"push\":{\"changes\":[{\"new\":{\"type\":\"tag\",\"name\":1}}]}",
    b"\"clone_url\":\"https://github.com/org/repo.git\"",
];

/// The event header each provider sends with a push, so the payload is read at all.
fn push_headers(provider: Provider, delivery: &str) -> HeaderMap {
    let pairs: &[(&str, &str)] = match provider {
        Provider::GitHub => &[("x-github-event", "push"), ("x-github-delivery", delivery)],
        Provider::Gitea => &[("x-gitea-event", "push"), ("x-gitea-delivery", delivery)],
        Provider::Forgejo => &[
            ("x-forgejo-event", "push"),
            ("x-forgejo-delivery", delivery),
        ],
        Provider::GitLab => &[("x-gitlab-event", "Push Hook"), ("webhook-id", delivery)],
        Provider::Bitbucket => &[("x-event-key", "repo:push"), ("x-request-uuid", delivery)],
        Provider::Generic => &[("x-delivery-id", delivery)],
    };
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    headers
}

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(Provider::ALL.to_vec())
}

/// A parsed push names a repository and never reports the all-zero commit (a deletion), for
/// any body.
fn check_parse(provider: Provider, body: &[u8]) {
    let headers = push_headers(provider, "delivery-1");
    let event = timed("parse_event", || parse_event(provider, &headers, body));
    if let Ok(Event::Push(pushes)) = event {
        assert!(
            !pushes.is_empty(),
            "{provider:?}: a push event with no push"
        );
        for push in pushes {
            assert!(
                !push.repository_urls.is_empty(),
                "{provider:?}: a push without a repository URL: {push:?}"
            );
            assert_ne!(
                push.commit.as_deref(),
                Some("0000000000000000000000000000000000000000"),
                "{provider:?}: a deletion read as a push"
            );
        }
    }
}

#[test]
fn corpus_payloads_parse_for_every_provider() {
    each_entry(PARSER, |body| {
        for provider in Provider::ALL {
            check_parse(provider, body);
        }
    });
}

fn hmac_hex(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn hmac_base64(secret: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Headers carrying a correct signature of `body` with `secret`, as each provider signs.
/// GitLab uses Standard Webhooks here, whose secret is `whsec_<base64 key>`.
fn signed_headers(provider: Provider, secret: &[u8], body: &[u8], now: SystemTime) -> HeaderMap {
    let mut headers = push_headers(provider, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
    let mut set = |name: &'static str, value: String| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("ascii header"),
        );
    };
    match provider {
        Provider::GitHub => set(
            "x-hub-signature-256",
            format!("sha256={}", hmac_hex(secret, &[body])),
        ),
        Provider::Gitea => set("x-gitea-signature", hmac_hex(secret, &[body])),
        Provider::Forgejo => set("x-forgejo-signature", hmac_hex(secret, &[body])),
        Provider::Bitbucket => set(
            "x-hub-signature",
            format!("sha256={}", hmac_hex(secret, &[body])),
        ),
        Provider::Generic => set(
            "x-signature",
            format!("sha256={}", hmac_hex(secret, &[body])),
        ),
        Provider::GitLab => {
            let timestamp = now
                .duration_since(UNIX_EPOCH)
                .expect("after the epoch")
                .as_secs()
                .to_string();
            let id = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
            let signature = hmac_base64(
                secret,
                &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
            );
            set("webhook-id", id.to_string());
            set("webhook-timestamp", timestamp);
            set("webhook-signature", format!("v1,{signature}"));
        }
    }
    headers
}

/// The secret as the receiver is configured with it.
fn configured_secret(provider: Provider, secret: &[u8]) -> Vec<u8> {
    match provider {
        Provider::GitLab => format!("whsec_{}", BASE64.encode(secret)).into_bytes(),
        _ => secret.to_vec(),
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_000_000)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_payloads_never_panic_and_pushes_are_well_formed(
        provider in provider(),
        body in mutated(PARSER, TOKENS),
    ) {
        check_parse(provider, &body);
    }

    /// The signature check accepts the delivery signed with the secret, and refuses it once a
    /// single bit of the body, the secret or the signature differs.
    #[test]
    fn a_signature_check_accepts_exactly_the_signed_body(
        provider in provider(),
        body in mutated(PARSER, TOKENS),
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        flip_at in any::<usize>(),
        flip_bit in 0u8..8,
        signature_edit in any::<usize>(),
    ) {
        let configured = configured_secret(provider, &secret);
        let headers = signed_headers(provider, &secret, &body, now());
        let verdict = timed("verify_request", || {
            verify_request(provider, &configured, &headers, &body, now())
        });
        prop_assert_eq!(verdict, Ok(()), "{:?} refused its own signature", provider);

        if !body.is_empty() {
            let mut tampered = body.clone();
            tampered[flip_at % body.len()] ^= 1 << flip_bit;
            let verdict = verify_request(provider, &configured, &headers, &tampered, now());
            prop_assert_eq!(verdict, Err(VerifyError::Mismatch), "{:?} accepted a changed body", provider);
        }

        let mut other_secret = secret.clone();
        other_secret[flip_at % secret.len()] ^= 1 << flip_bit;
        let other = configured_secret(provider, &other_secret);
        let verdict = verify_request(provider, &other, &headers, &body, now());
        prop_assert!(verdict.is_err(), "{:?} accepted a delivery signed with another secret", provider);

        // Any change to the signature header itself: a different character, or a cut.
        let (name, value) = signature_header(provider, &headers);
        let mut edited = value.into_bytes();
        let index = signature_edit % edited.len();
        if signature_edit % 2 == 0 {
            edited.truncate(index);
        } else {
            edited[index] = if edited[index] == b'0' { b'1' } else { b'0' };
        }
        if let Ok(edited) = HeaderValue::from_bytes(&edited) {
            let mut headers = headers.clone();
            headers.insert(name, edited);
            let verdict = verify_request(provider, &configured, &headers, &body, now());
            prop_assert!(verdict.is_err(), "{:?} accepted an edited signature", provider);
        }
    }

    /// A Standard Webhooks delivery outside the five-minute window is refused even when signed.
    #[test]
    fn a_stale_gitlab_delivery_is_refused(
        body in mutated(PARSER, TOKENS),
        secret in proptest::collection::vec(any::<u8>(), 1..64),
        skew in 301u64..100_000_000,
        ahead in any::<bool>(),
    ) {
        let sent = if ahead { now() + Duration::from_secs(skew) } else { now() - Duration::from_secs(skew) };
        let headers = signed_headers(Provider::GitLab, &secret, &body, sent);
        let configured = configured_secret(Provider::GitLab, &secret);
        let verdict = verify_request(Provider::GitLab, &configured, &headers, &body, now());
        prop_assert_eq!(verdict, Err(VerifyError::StaleTimestamp));
    }
}

/// The header carrying the signature of `provider`, and its value.
fn signature_header(provider: Provider, headers: &HeaderMap) -> (HeaderName, String) {
    let name = match provider {
        Provider::GitHub => "x-hub-signature-256",
        Provider::Gitea => "x-gitea-signature",
        Provider::Forgejo => "x-forgejo-signature",
        Provider::Bitbucket => "x-hub-signature",
        Provider::Generic => "x-signature",
        Provider::GitLab => "webhook-signature",
    };
    let value = headers[name].to_str().expect("ascii").to_string();
    (HeaderName::from_static(name), value)
}

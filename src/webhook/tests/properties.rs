//! Property tests over hostile input: arbitrary bytes and header values through every
//! provider's verification and parsing, and through the router. Case counts are bounded so that
//! `make test` stays quick; proptest prints a minimal failing input when one is found.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;
use crate::webhook::payload::parse_event;
use crate::webhook::replay::{DeliveryKey, MAX_DELIVERY_ID_LEN, bounded_delivery_id};
use crate::webhook::verify::{
    check_timestamp, decode_hex, verify_prefixed_sha256, verify_request, verify_sha256_hex,
    verify_standard_webhook,
};

const CASES: u32 = 256;

/// Every header a provider reads for its signature, event kind or delivery id.
const HEADER_NAMES: &[&str] = &[
    "x-hub-signature-256",
    "x-hub-signature",
    "x-signature",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
    "x-gitlab-token",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-github-event",
    "x-gitea-event",
    "x-forgejo-event",
    "x-gogs-event",
    "x-gitlab-event",
    "x-event-key",
    "x-github-delivery",
    "x-gitea-delivery",
    "x-forgejo-delivery",
    "x-gitlab-event-uuid",
    "idempotency-key",
    "x-request-uuid",
    "content-type",
];

/// Header values: raw bytes, and values shaped like the real ones so the checks get past
/// their first branches.
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..80),
        "sha256=[0-9a-fA-F]{0,70}".prop_map(String::into_bytes),
        "[0-9a-f]{64}".prop_map(String::into_bytes),
        "v1,[A-Za-z0-9+/=]{0,60}( v1,[A-Za-z0-9+/=]{0,60})?".prop_map(String::into_bytes),
        "-?[0-9]{0,20}".prop_map(String::into_bytes),
        any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        prop::sample::select(vec![
            "push",
            "ping",
            "Push Hook",
            "Tag Push Hook",
            "repo:push"
        ])
        .prop_map(|value| value.as_bytes().to_vec()),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    let header = (prop::sample::select(HEADER_NAMES), header_value());
    proptest::collection::vec(header, 0..8).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            // Bytes hyper would refuse never reach the handler either.
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                map.append(HeaderName::from_static(name), value);
            }
        }
        map
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1024),
        json_body().prop_map(|(body, _)| body),
    ]
}

fn provider() -> impl Strategy<Value = Provider> {
    prop::sample::select(Provider::ALL.to_vec())
}

/// What a generated push names: its ref (`None` when absent or not a string; an unknown ref
/// matches every branch-following target by design) and which known repository its URLs point at.
#[derive(Debug, Clone)]
struct Pushed {
    git_ref: Option<String>,
    github_repo: bool,
    gitlab_repo: bool,
}

const GITHUB_URLS: &[&str] = &[
    "https://github.com/org/repo.git",
    "git@github.com:org/repo.git",
    "https://GitHub.com/org/repo",
    "ssh://git@github.com/org/repo.git",
];
const GITLAB_URLS: &[&str] = &["https://gitlab.example.com/group/repo.git"];
const OTHER_URLS: &[&str] = &["https://github.com/org/other", "", "not a url", "git@:"];

fn url() -> impl Strategy<Value = String> {
    let known: Vec<&str> = [GITHUB_URLS, GITLAB_URLS, OTHER_URLS].concat();
    prop_oneof![
        3 => prop::sample::select(known).prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// GitHub-shaped push payloads with any field missing, mistyped or odd.
fn json_body() -> impl Strategy<Value = (Vec<u8>, Pushed)> {
    let git_ref = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "refs/heads/main",
            "refs/heads/staging",
            "refs/heads/feature",
            "refs/tags/v1.0.0",
            "main",
            "",
        ])
        .prop_map(|r| Some(r.to_string())),
        any::<String>().prop_map(Some),
    ];
    let url_fields = proptest::collection::vec(
        (
            prop::sample::select(vec!["clone_url", "ssh_url", "html_url", "git_url", "url"]),
            url(),
        ),
        0..3,
    );
    let after = prop_oneof![Just(SHA.to_string()), any::<String>()];
    let default_branch = prop::option::of(prop::sample::select(vec!["main", "staging", ""]));
    (git_ref, url_fields, after, default_branch, any::<bool>()).prop_map(
        |(git_ref, url_fields, after, default_branch, ref_as_number)| {
            let mut repository = serde_json::Map::new();
            for (field, url) in &url_fields {
                repository.insert(field.to_string(), json!(url));
            }
            if let Some(branch) = default_branch {
                repository.insert("default_branch".into(), json!(branch));
            }
            let mut body = json!({ "after": after, "repository": repository });
            match &git_ref {
                Some(_) if ref_as_number => body["ref"] = json!(42),
                Some(value) => body["ref"] = json!(value),
                None => {}
            }
            let urls = || url_fields.iter().map(|(_, url)| url.as_str());
            let pushed = Pushed {
                git_ref: git_ref.filter(|_| !ref_as_number),
                github_repo: urls().any(|url| GITHUB_URLS.contains(&url)),
                gitlab_repo: urls().any(|url| GITLAB_URLS.contains(&url)),
            };
            (body.to_string().into_bytes(), pushed)
        },
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request(path: &str, headers: &HeaderMap, body: Vec<u8>) -> Request<Body> {
    let mut request = Request::post(path).body(Body::from(body)).unwrap();
    *request.headers_mut() = headers.clone();
    request
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// No provider accepts a delivery without the secret, and no parser panics on anything.
    #[test]
    fn verification_and_parsing_survive_any_input(
        provider in provider(),
        headers in headers(),
        body in body(),
    ) {
        let verified = verify_request(provider, SECRET, &headers, &body, std::time::SystemTime::now());
        prop_assert!(verified.is_err(), "{provider} accepted an unsigned delivery");
        let _ = parse_event(provider, &headers, &body);
    }

    /// Through the router, a delivery without a valid signature never triggers anything, on
    /// any receiver, and is answered 401 or 404.
    #[test]
    fn unsigned_requests_never_trigger(
        segment in prop_oneof![
            prop::sample::select(Provider::ALL.to_vec()).prop_map(|p| p.path_segment().to_string()),
            Just("object".to_string()),
            "[0-9a-f]{64}",
            "[a-zA-Z0-9._~-]{1,80}",
        ],
        headers in headers(),
        body in body(),
    ) {
        let harness = Harness::new();
        let path = match segment.as_str() {
            "object" => harness.state.object_hooks.write().unwrap().insert("apps", "site", b"object-token"),
            _ => format!("/hooks/{segment}"),
        };
        let (status, _) = runtime().block_on(harness.send(request(&path, &headers, body)));
        prop_assert!(
            [StatusCode::UNAUTHORIZED, StatusCode::NOT_FOUND].contains(&status),
            "{path}: {status}"
        );
        prop_assert!(harness.trigger.calls().is_empty());
    }

    /// A correctly signed body of any shape answers 200, 202 or 400 without panicking, and
    /// triggers only the objects that follow the pushed repository and branch.
    #[test]
    fn signed_pushes_trigger_only_matching_targets(
        (body, pushed) in prop_oneof![
            json_body(),
            proptest::collection::vec(any::<u8>(), 0..512).prop_map(|body| {
                (body, Pushed { git_ref: None, github_repo: false, gitlab_repo: false })
            }),
        ],
        event in prop_oneof![3 => Just("push"), 1 => prop::sample::select(vec!["ping", "issues", ""])],
        delivery in "[a-z0-9-]{0,40}",
    ) {
        let harness = Harness::new();
        let signature = github_signature(SECRET, &body);
        let request = github_request("/hooks/github", event, &delivery, &signature, body);
        let (status, _) = runtime().block_on(harness.send(request));
        prop_assert!(
            [StatusCode::OK, StatusCode::ACCEPTED, StatusCode::BAD_REQUEST].contains(&status),
            "{status}"
        );
        let calls = harness.trigger.calls();
        if status != StatusCode::ACCEPTED {
            prop_assert!(calls.is_empty());
        }
        // Payload strings are trimmed, and an empty ref counts as absent.
        let pushed_ref = pushed.git_ref.as_deref().map(str::trim).filter(|r| !r.is_empty());
        let ref_fits = |branch: &str| match pushed_ref {
            None => true,
            Some(pushed_ref) => pushed_ref == format!("refs/heads/{branch}"),
        };
        for (_, name, _) in &calls {
            let fits = match name.as_str() {
                "site" => pushed.github_repo && ref_fits("main"),
                "staging" => pushed.github_repo && ref_fits("staging"),
                "gl" => pushed.gitlab_repo && ref_fits("main"),
                _ => false,
            };
            prop_assert!(fits, "triggered {name} for {pushed:?}");
        }
    }

    /// Any text as a Standard Webhooks timestamp, the extremes of u64 included, is judged
    /// without panicking; only one within the tolerance of now can pass the clock check.
    #[test]
    fn timestamps_never_panic(
        timestamp in prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            prop::sample::select(vec![u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MAX as u64 + 1])
                .prop_map(|n| n.to_string()),
            "[-+]?[0-9]{0,40}",
            any::<String>(),
        ],
        now_seconds in any::<u32>(),
    ) {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(u64::from(now_seconds));
        let checked = check_timestamp(&timestamp, now);
        if let Ok(seconds) = timestamp.parse::<u64>() {
            let skew = seconds.abs_diff(u64::from(now_seconds));
            prop_assert_eq!(checked.is_ok(), skew <= 300, "{} at {}", timestamp, now_seconds);
        } else {
            prop_assert!(checked.is_err());
        }
        let mut map = HeaderMap::new();
        map.insert("webhook-id", HeaderValue::from_static("msg_1"));
        map.insert("webhook-signature", HeaderValue::from_static("v1,AAAA"));
        if let Ok(value) = HeaderValue::from_str(&timestamp) {
            map.insert("webhook-timestamp", value);
        }
        let verified = verify_standard_webhook(b"whsec_AAAA", &map, b"{}", now);
        prop_assert!(verified.is_err());
    }

    /// Signature header values of any shape are rejected without panicking.
    #[test]
    fn signature_headers_never_panic(
        value in prop_oneof![
            any::<String>(),
            "(sha256=|SHA256=|sha1=)?[0-9a-fA-FxX]{0,70}",
            "(v1,[A-Za-z0-9+/=]{0,50} ?){0,4}",
        ],
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assert!(verify_prefixed_sha256(SECRET, &body, &value).is_err());
        prop_assert!(verify_sha256_hex(SECRET, &body, &value).is_err());
        if let Some(bytes) = decode_hex(&value) {
            prop_assert_eq!(bytes.len() * 2, value.len());
        }
        let mut map = HeaderMap::new();
        map.insert("webhook-id", HeaderValue::from_static("msg_1"));
        map.insert("webhook-timestamp", HeaderValue::from_static("1614265330"));
        if let Ok(signature) = HeaderValue::from_str(&value) {
            map.insert("webhook-signature", signature);
        }
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_614_265_330);
        prop_assert!(verify_standard_webhook(b"whsec_AAAA", &map, &body, at).is_err());
    }

    /// Delivery ids of any length and content end up bounded where they are shown, and as a
    /// fixed-size key where they are remembered.
    #[test]
    fn delivery_ids_are_bounded(
        id in prop_oneof![
            any::<String>(),
            (1usize..4096).prop_map(|n| "i".repeat(n)),
        ],
        provider in provider(),
    ) {
        prop_assert!(bounded_delivery_id(&id).len() <= MAX_DELIVERY_ID_LEN);
        let short_enough = id.len() <= MAX_DELIVERY_ID_LEN;
        prop_assert_eq!(bounded_delivery_id(&id) == id, short_enough);
        let _ = DeliveryKey::of_id(provider, "", &id);
    }
}

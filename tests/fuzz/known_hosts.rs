//! known_hosts text from a user's Secret: whatever the text, a host key it does not list is
//! never accepted, a listed one is, and a revoked one never is.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use driftless::source::known_hosts::{HostKeyError, KnownHosts};
use proptest::prelude::*;

use crate::support::{config, each_entry, mutated_text, timed};

const PARSER: &str = "known_hosts";

const TOKENS: &[&[u8]] = &[
    b" ",
    b"\t",
    b"\n",
    b",",
    b"!",
    b"*",
    b"?",
    b"[",
    b"]:2222",
    b"|1|",
    b"|",
    b"@revoked ",
    b"@cert-authority ",
    b"#",
    b"ssh-ed25519 ",
    b"ssh-rsa ",
    b"AAAAC3NzaC1lZDI1NTE5AAAAI",
    b"=",
];

/// An SSH wire-format ed25519 key blob with the given key bytes.
fn ed25519_blob(key: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), key.as_slice()] {
        blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
        blob.extend_from_slice(part);
    }
    blob
}

fn hosts() -> Vec<(&'static str, u16)> {
    vec![
        ("github.com", 22),
        ("git.example.com", 2222),
        ("host1.example.com", 22),
        ("gitlab.com", 22),
        ("172.65.251.78", 22),
        ("a.example.org", 22),
        ("bad.example.org", 22),
        ("", 22),
        ("*", 0),
    ]
}

/// A key the text cannot list (fresh random bytes) is refused for every host.
fn check(text: &str, unlisted: &[u8; 32]) {
    let parsed = timed("KnownHosts::parse", || KnownHosts::parse(text));
    let Ok(known) = parsed else { return };
    let blob = ed25519_blob(unlisted);
    assert!(
        !text.contains(&BASE64.encode(&blob)),
        "the unlisted key is in the text"
    );
    for (host, port) in hosts() {
        let verdict = timed("KnownHosts::verify", || known.verify(host, port, &blob));
        assert!(
            verdict.is_err(),
            "{text:?} accepted an unlisted key for {host}:{port}"
        );
    }
}

#[test]
fn corpus_known_hosts_refuse_unlisted_keys() {
    each_entry(PARSER, |bytes| {
        check(&String::from_utf8_lossy(bytes), &[7; 32])
    });
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_known_hosts_refuse_unlisted_keys(
        text in mutated_text(PARSER, TOKENS),
        unlisted in any::<[u8; 32]>(),
    ) {
        check(&text, &unlisted);
    }

    /// A generated line lets exactly its key in for its host, and `@revoked` beats it.
    #[test]
    fn a_listed_key_is_accepted_and_a_revoked_one_never(
        host in "[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}",
        port in prop_oneof![Just(22u16), 1u16..],
        key in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        noise in "(#[ -~]{0,40}\n)?",
    ) {
        prop_assume!(key != other);
        let blob = ed25519_blob(&key);
        let host_field = if port == 22 { host.clone() } else { format!("[{host}]:{port}") };
        let line = format!("{noise}{host_field} ssh-ed25519 {} comment\n", BASE64.encode(&blob));
        let known = KnownHosts::parse(&line).expect("a well-formed line parses");
        prop_assert_eq!(known.verify(&host, port, &blob), Ok(()));
        let mismatch = known.verify(&host, port, &ed25519_blob(&other));
        prop_assert!(matches!(mismatch, Err(HostKeyError::KeyMismatch { .. })), "{:?}", mismatch);
        let elsewhere = known.verify(&format!("x{host}"), port, &blob);
        prop_assert!(matches!(elsewhere, Err(HostKeyError::UnknownHost { .. })), "{:?}", elsewhere);

        let revoked = format!("{line}@revoked * ssh-ed25519 {}\n", BASE64.encode(&blob));
        let known = KnownHosts::parse(&revoked).expect("a revoked line parses");
        let verdict = known.verify(&host, port, &blob);
        prop_assert!(matches!(verdict, Err(HostKeyError::Revoked { .. })), "{:?}", verdict);
    }
}

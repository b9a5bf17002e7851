//! Repository URLs (`spec.url`): what is printed re-parses to the same repository, and no
//! printed form carries the embedded password.

use driftless::source::url::{RepositoryUrl, redact_unparsed};
use proptest::prelude::*;

use crate::support::{config, each_entry, mutated_text, timed};

const PARSER: &str = "url";

const TOKENS: &[&[u8]] = &[
    b"://",
    b"@",
    b":",
    b"/",
    b"[",
    b"]",
    b"%",
    b"%40",
    b".git",
    b"ssh://",
    b"https://",
    b"git@",
    b":22",
    b":0",
    b"user:s3cr3t-t0ken@",
    b" ",
    b"\n",
];

/// A password that can only appear in a printed form by being leaked: long enough not to
/// occur by chance, and absent from the rest of the URL.
fn distinctive_password(url: &RepositoryUrl, input: &str) -> Option<String> {
    let (_, password) = url.embedded_credentials()?;
    let without = input.replacen(&password, "", 1);
    let distinctive = password.len() >= 6
        && !password.contains('%')
        && input.matches(password.as_str()).count() == 1
        && !without.contains(&password);
    distinctive.then_some(password)
}

fn check(input: &str) {
    let parsed = timed("RepositoryUrl::parse", || RepositoryUrl::parse(input));
    let redacted_unparsed = redact_unparsed(input);
    let Ok(url) = parsed else {
        // The unparsed form hides everything between the scheme and the last `@` after it.
        let trimmed = input.trim();
        let start = trimmed.find("://").map(|i| i + 3).unwrap_or(0);
        if let Some(at) = trimmed[start..].rfind('@') {
            let secret = &trimmed[start..start + at];
            if secret.len() >= 6
                && !trimmed[start + at..].contains(secret)
                && !trimmed[..start].contains(secret)
            {
                assert!(
                    !redacted_unparsed.contains(secret),
                    "redact_unparsed({input:?}) = {redacted_unparsed:?} keeps the user info"
                );
            }
        }
        return;
    };
    // The URL handed to libgit2 names the same repository, as the same identity.
    let for_libgit2 = url.for_libgit2();
    let again = RepositoryUrl::parse(&for_libgit2).unwrap_or_else(|e| {
        panic!("{input:?}: for_libgit2 {for_libgit2:?} does not re-parse: {e}")
    });
    assert_eq!(
        again.cache_key(),
        url.cache_key(),
        "{input:?}: for_libgit2 {for_libgit2:?} names another cache entry"
    );
    assert_eq!(
        again.identity_key(),
        url.identity_key(),
        "{input:?}: for_libgit2 {for_libgit2:?} names another identity"
    );
    assert_eq!(again.host(), url.host());
    assert_eq!(again.is_ssh(), url.is_ssh());
    // Parsing is a function of the trimmed text.
    assert_eq!(RepositoryUrl::parse(input.trim()).as_ref(), Ok(&url));
    // Printing never shows the password.
    if let Some(password) = distinctive_password(&url, input) {
        for (form, text) in [
            ("redacted", url.redacted()),
            ("Display", url.to_string()),
            ("Debug", format!("{url:?}")),
            ("for_libgit2", for_libgit2.clone()),
            ("cache_key", url.cache_key()),
            ("identity_key", url.identity_key()),
            ("scrub", url.scrub(input)),
            ("redact_unparsed", redacted_unparsed.clone()),
        ] {
            assert!(
                !text.contains(&password),
                "{input:?}: {form} {text:?} shows the password"
            );
        }
    }
}

#[test]
fn corpus_urls_keep_their_invariants() {
    each_entry(PARSER, |bytes| check(&String::from_utf8_lossy(bytes)));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_urls_keep_their_invariants(input in mutated_text(PARSER, TOKENS)) {
        check(&input);
    }

    #[test]
    fn generated_urls_keep_their_invariants(
        scheme in prop::sample::select(vec!["https://", "http://", "ssh://", ""]),
        user in "[a-zA-Z0-9._%-]{0,12}",
        password in "[a-zA-Z0-9._~!$&'()*+,;=%:@/-]{0,24}",
        host in prop_oneof!["[a-z0-9.-]{1,20}", "\\[[0-9a-f:]{2,20}\\]"],
        port in proptest::option::of(any::<u16>()),
        path in "[a-zA-Z0-9._~/@:-]{0,30}",
    ) {
        let userinfo = match (user.is_empty(), password.is_empty()) {
            (true, true) => String::new(),
            (false, true) => format!("{user}@"),
            _ => format!("{user}:{password}@"),
        };
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let input = if scheme.is_empty() {
            format!("{userinfo}{host}:{path}")
        } else {
            format!("{scheme}{userinfo}{host}{port}/{path}")
        };
        check(&input);
    }
}

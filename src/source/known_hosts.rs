//! Strict SSH host-key checking against the `known_hosts` text of a user's Secret.
//!
//! libgit2 hands the certificate-check callback the server's host key as an SSH wire-format
//! blob: the same bytes as the base64 field of a known_hosts line. A fetch may only go ahead when
//! a line for that host lists exactly those bytes; there is no "trust on first use", because a
//! controller has nobody to ask.
//!
//! Supported from the OpenSSH format: comma-separated host patterns with `*`/`?` wildcards and
//! `!negation`, `[host]:port` for ports other than 22, hashed hosts (`|1|salt|hash`), comments,
//! and `@revoked` lines, whose keys are refused for every host. `@cert-authority` lines are
//! ignored: host certificates are not checked, so such a line can never vouch for a server.

use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The port OpenSSH writes without brackets; every other port uses `[host]:port`.
const DEFAULT_SSH_PORT: u16 = 22;

/// Why the `known_hosts` text of a Secret could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KnownHostsError {
    /// A line that is not `[marker] host-patterns key-type base64-key [comment]`.
    #[error("known_hosts in the Secret, line {line}: {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing to check against, which would make every fetch fail with a less clear error.
    #[error(
        "known_hosts in the Secret lists no host keys; add the lines `ssh-keyscan <host>` prints{}",
        cert_authority_note(*.cert_authority_ignored)
    )]
    NoHostKeys {
        /// Whether `@cert-authority` lines were present (and ignored).
        cert_authority_ignored: bool,
    },
}

/// Why a server's host key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    /// No known_hosts line names the host.
    #[error(
        "host {host} is not listed in known_hosts in the Secret; add its key line (as `ssh-keyscan` prints it); the server offered {key_type} {fingerprint}{}",
        cert_authority_note(*.cert_authority_ignored)
    )]
    UnknownHost {
        /// The host as looked up: `host`, or `[host]:port` for ports other than 22.
        host: String,
        /// Type of the key the server offered, e.g. `ssh-ed25519`.
        key_type: String,
        /// `SHA256:...` fingerprint of the offered key, as `ssh-keygen -l` prints it.
        fingerprint: String,
        /// Whether `@cert-authority` lines were ignored, which may be why the host is unknown.
        cert_authority_ignored: bool,
    },
    /// The host is listed, but not with the key it offered.
    #[error(
        "host key for {host} does not match known_hosts in the Secret; the server's key may have changed (it offered {key_type} {fingerprint})"
    )]
    KeyMismatch {
        /// The host as looked up: `host`, or `[host]:port` for ports other than 22.
        host: String,
        /// Type of the key the server offered.
        key_type: String,
        /// `SHA256:...` fingerprint of the offered key.
        fingerprint: String,
    },
    /// The offered key is listed on an `@revoked` line.
    #[error(
        "host key {key_type} {fingerprint} offered by {host} is marked @revoked in known_hosts in the Secret"
    )]
    Revoked {
        /// The host as looked up: `host`, or `[host]:port` for ports other than 22.
        host: String,
        /// Type of the key the server offered.
        key_type: String,
        /// `SHA256:...` fingerprint of the offered key.
        fingerprint: String,
    },
}

fn cert_authority_note(cert_authority_ignored: bool) -> &'static str {
    if cert_authority_ignored {
        " (@cert-authority lines are not supported and were ignored)"
    } else {
        ""
    }
}

/// Parsed known_hosts text, ready to check host keys against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    cert_authority_ignored: bool,
}

/// One usable known_hosts line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    revoked: bool,
    hosts: HostMatcher,
    /// The decoded key blob, compared byte for byte with what the server offers.
    key: Vec<u8>,
}

/// The host-patterns field of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatcher {
    /// Comma-separated patterns, lowercased.
    Patterns(Vec<HostPattern>),
    /// `|1|salt|hash`: HMAC-SHA1 of the host name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HostPattern {
    negated: bool,
    glob: String,
}

/// What a line says before its host patterns.
enum Marker {
    Plain,
    Revoked,
    CertAuthority,
}

impl KnownHosts {
    /// Parses OpenSSH known_hosts text. Unlike OpenSSH, which skips lines it cannot read, a
    /// malformed line is an error naming its line number, so a typo in the Secret shows up as
    /// such instead of as a mysterious "unknown host" later.
    pub fn parse(text: &str) -> Result<KnownHosts, KnownHostsError> {
        let mut entries = Vec::new();
        let mut cert_authority_ignored = false;
        for (index, line) in text.lines().enumerate() {
            let malformed = |reason: String| KnownHostsError::Malformed {
                line: index + 1,
                reason,
            };
            match parse_line(line).map_err(malformed)? {
                ParsedLine::Entry(entry) => entries.push(entry),
                ParsedLine::CertAuthority => cert_authority_ignored = true,
                ParsedLine::Blank => {}
            }
        }
        if !entries.iter().any(|entry| !entry.revoked) {
            return Err(KnownHostsError::NoHostKeys {
                cert_authority_ignored,
            });
        }
        Ok(KnownHosts {
            entries,
            cert_authority_ignored,
        })
    }

    /// Accepts the server's host key only when a line for `host` (looked up as `host` on port
    /// 22, else as `[host]:port`, the way OpenSSH does) lists exactly these key bytes. Keys on
    /// `@revoked` lines are refused whatever host they are offered by. The key type is read
    /// from the blob itself rather than taken from libgit2, which does not know newer types.
    pub fn verify(&self, host: &str, port: u16, key: &[u8]) -> Result<(), HostKeyError> {
        let names = lookup_names(host, port);
        let shown_host = names[0].clone();
        let key_type = blob_key_type(key).unwrap_or("unknown-key-type").to_string();
        let fingerprint = fingerprint(key);
        if self.is_revoked(key) {
            return Err(HostKeyError::Revoked {
                host: shown_host,
                key_type,
                fingerprint,
            });
        }
        let mut listed = self
            .entries
            .iter()
            .filter(|entry| !entry.revoked && entry.hosts.matches_any(&names))
            .peekable();
        if listed.peek().is_none() {
            return Err(HostKeyError::UnknownHost {
                host: shown_host,
                key_type,
                fingerprint,
                cert_authority_ignored: self.cert_authority_ignored,
            });
        }
        if listed.any(|entry| entry.key == key) {
            return Ok(());
        }
        Err(HostKeyError::KeyMismatch {
            host: shown_host,
            key_type,
            fingerprint,
        })
    }

    fn is_revoked(&self, key: &[u8]) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.revoked && entry.key == key)
    }
}

impl FromStr for KnownHosts {
    type Err = KnownHostsError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        KnownHosts::parse(text)
    }
}

/// The fingerprint of a key blob as `ssh-keygen -l` prints it (`SHA256:` and unpadded base64),
/// so that users can compare it with what their server's admin publishes.
pub fn fingerprint(key: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(key)))
}

/// The names a host is looked up under; the first is the one OpenSSH uses and messages show.
/// On port 22 a `[host]:22` line is accepted too, since it can only mean the same server.
fn lookup_names(host: &str, port: u16) -> Vec<String> {
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase();
    if port == DEFAULT_SSH_PORT {
        vec![host.clone(), format!("[{host}]:{port}")]
    } else {
        vec![format!("[{host}]:{port}")]
    }
}

enum ParsedLine {
    Entry(Entry),
    CertAuthority,
    Blank,
}

fn parse_line(line: &str) -> Result<ParsedLine, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(ParsedLine::Blank);
    }
    let mut fields = line.split_whitespace().peekable();
    let marker = match fields.next_if(|field| field.starts_with('@')) {
        Some(marker) => parse_marker(marker)?,
        None => Marker::Plain,
    };
    let (Some(hosts), Some(key_type), Some(key)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("expected `host-patterns key-type base64-key [comment]`".to_string());
    };
    let key = decode_key(key_type, key)?;
    let hosts = parse_host_matcher(hosts)?;
    if matches!(marker, Marker::CertAuthority) {
        return Ok(ParsedLine::CertAuthority);
    }
    Ok(ParsedLine::Entry(Entry {
        revoked: matches!(marker, Marker::Revoked),
        hosts,
        key,
    }))
}

fn parse_marker(marker: &str) -> Result<Marker, String> {
    match marker {
        "@revoked" => Ok(Marker::Revoked),
        "@cert-authority" => Ok(Marker::CertAuthority),
        other => Err(format!(
            "unknown marker `{other}` (expected @revoked or @cert-authority)"
        )),
    }
}

/// Decodes the base64 key field and checks it is a blob of the declared type, which catches
/// keys pasted into the wrong line or truncated.
fn decode_key(declared_type: &str, base64_key: &str) -> Result<Vec<u8>, String> {
    let key = STANDARD
        .decode(base64_key)
        .map_err(|_| "the key is not valid base64".to_string())?;
    match blob_key_type(&key) {
        Some(actual) if actual == declared_type => Ok(key),
        Some(actual) => Err(format!(
            "key type `{declared_type}` does not match the key data, which is `{actual}`"
        )),
        None => Err("the key data is not an SSH public key".to_string()),
    }
}

/// The type name an SSH wire-format key blob starts with (a length-prefixed string).
fn blob_key_type(blob: &[u8]) -> Option<&str> {
    let (length, rest) = blob.split_first_chunk::<4>()?;
    let length = usize::try_from(u32::from_be_bytes(*length)).ok()?;
    let name = std::str::from_utf8(rest.get(..length)?).ok()?;
    (!name.is_empty()).then_some(name)
}

fn parse_host_matcher(field: &str) -> Result<HostMatcher, String> {
    match field.strip_prefix("|1|") {
        Some(hashed) => parse_hashed(hashed),
        None => Ok(HostMatcher::Patterns(
            field
                .split(',')
                .filter(|pattern| !pattern.is_empty())
                .map(parse_pattern)
                .collect(),
        )),
    }
}

fn parse_hashed(hashed: &str) -> Result<HostMatcher, String> {
    let invalid = || "hashed host is not `|1|base64-salt|base64-hash`".to_string();
    let (salt, hash) = hashed.split_once('|').ok_or_else(invalid)?;
    let salt = STANDARD.decode(salt).map_err(|_| invalid())?;
    let hash = STANDARD.decode(hash).map_err(|_| invalid())?;
    Ok(HostMatcher::Hashed { salt, hash })
}

fn parse_pattern(pattern: &str) -> HostPattern {
    let (negated, glob) = match pattern.strip_prefix('!') {
        Some(glob) => (true, glob),
        None => (false, pattern),
    };
    HostPattern {
        negated,
        glob: glob.to_ascii_lowercase(),
    }
}

impl HostMatcher {
    fn matches_any(&self, names: &[String]) -> bool {
        names.iter().any(|name| self.matches(name))
    }

    /// OpenSSH semantics: a matching negated pattern rules the line out even if a positive
    /// pattern matches too.
    fn matches(&self, name: &str) -> bool {
        match self {
            HostMatcher::Patterns(patterns) => {
                let mut matching = patterns
                    .iter()
                    .filter(|pattern| glob_matches(pattern.glob.as_bytes(), name.as_bytes()))
                    .peekable();
                matching.peek().is_some() && matching.all(|pattern| !pattern.negated)
            }
            HostMatcher::Hashed { salt, hash } => hashed_name_matches(salt, hash, name),
        }
    }
}

fn hashed_name_matches(salt: &[u8], hash: &[u8], name: &str) -> bool {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(hash).is_ok()
}

/// Shell-style matching with `*` (any run) and `?` (one character), as in OpenSSH patterns.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    glob_match_counting_steps(pattern, text).0
}

/// Greedy matching that remembers only the last `*`: when a later character fails, that star
/// takes one more character and matching resumes after it. An earlier star never needs to be
/// revisited, because the last one can absorb anything an earlier one could, so each step
/// moves the text forward or the pattern forward and the work is at most
/// (pattern + 1) × (text + 2) steps, however a Secret's author arranges the stars (a recursive
/// matcher is exponential on `*a*a*a…*b`). Returns the steps taken too, for tests.
fn glob_match_counting_steps(pattern: &[u8], text: &[u8]) -> (bool, usize) {
    let (mut p, mut t, mut steps) = (0, 0, 0);
    // Pattern index after the last `*` seen, and the text index that star's run ends at.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        steps += 1;
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, t));
            }
            Some(&expected) if expected == b'?' || expected == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, run_end)) => {
                    p = after_star;
                    t = run_end + 1;
                    resume = Some((after_star, t));
                }
                None => return (false, steps),
            },
        }
    }
    // What is left of the pattern must be stars, which match the empty rest of the text.
    let matched = pattern[p..].iter().all(|&c| c == b'*');
    (matched, steps + pattern.len() - p)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with `ssh-keygen -t ed25519` / `-t ecdsa`; fingerprints from `ssh-keygen -lf`.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJ/5HPSpmSaZaWuap35yD0TwPV9w23kTuZabXcRwPhRz";
    const KEY_A_FINGERPRINT: &str = "SHA256:KXlpisoxVAaaQFEae3SoElODA5rXw8JK8kI+51pUenI";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIKG7miWkpjbv0jJuFX5UxJFN5mxZBlijZ1SMtbtha78a";
    const KEY_B_FINGERPRINT: &str = "SHA256:qIz7hUQKtS+SDyqkY3UcLuY0X+07Ze4+HCGiEGeHnAI";
    const KEY_C: &str = "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBBuCkQVR5A8Xq/AcajCLpasyfE9ydJYFalgekmAOb4Lc5UoDeTlILg24spri+CuxeQdhriVSHp4H+XZR8ofaEUw=";
    const KEY_C_FINGERPRINT: &str = "SHA256:pCiuPJ2rhOl8V+DmYIYdgeu3l+UI/NqRYjD7RlgIR9Q";
    // `ssh-keygen -H` of `github.com <KEY_A>` and `[127.0.0.1]:2222 <KEY_B>`.
    const HASHED_GITHUB_A: &str = "|1|5PfSYfKoTx/Gh9BIvVPZb8DiVn4=|5SWT/x6GsfqxREEmAotG6LwSGu0=";
    const HASHED_LOOPBACK_2222_B: &str =
        "|1|vvCVN7KU5wup2+gTC5qYwwQE5b0=|Eb2XDxTzH3kGW+sBLs51qOq6glw=";

    fn blob(base64_key: &str) -> Vec<u8> {
        STANDARD.decode(base64_key).unwrap()
    }

    fn known_hosts(text: &str) -> KnownHosts {
        KnownHosts::parse(text).unwrap_or_else(|err| panic!("{err}"))
    }

    fn line_error(text: &str) -> (usize, String) {
        match KnownHosts::parse(text) {
            Err(KnownHostsError::Malformed { line, reason }) => (line, reason),
            other => panic!("expected a malformed-line error, got {other:?}"),
        }
    }

    #[test]
    fn parse_reads_ssh_keyscan_output_with_comments_and_blank_lines() {
        let text = format!(
            "# github.com:22 SSH-2.0-babeld\n\ngithub.com ssh-ed25519 {KEY_A}\r\n\
             gitlab.com ecdsa-sha2-nistp256 {KEY_C} a comment\n"
        );
        let hosts = known_hosts(&text);
        assert_eq!(hosts.verify("github.com", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("gitlab.com", 22, &blob(KEY_C)), Ok(()));
    }

    #[test]
    fn from_str_matches_parse() {
        let text = format!("github.com ssh-ed25519 {KEY_A}");
        assert_eq!(text.parse::<KnownHosts>(), KnownHosts::parse(&text));
    }

    #[test]
    fn parse_rejects_text_without_host_keys() {
        assert_eq!(
            KnownHosts::parse("# only a comment\n\n"),
            Err(KnownHostsError::NoHostKeys {
                cert_authority_ignored: false
            })
        );
        assert_eq!(
            KnownHosts::parse(&format!("@revoked * ssh-ed25519 {KEY_A}")),
            Err(KnownHostsError::NoHostKeys {
                cert_authority_ignored: false
            })
        );
        let err = KnownHosts::parse(&format!(
            "@cert-authority *.example.com ssh-ed25519 {KEY_A}"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            KnownHostsError::NoHostKeys {
                cert_authority_ignored: true
            }
        );
        assert!(err.to_string().contains("@cert-authority"), "{err}");
    }

    #[test]
    fn parse_rejects_lines_missing_fields() {
        let (line, reason) = line_error(&format!(
            "github.com ssh-ed25519 {KEY_A}\ngitlab.com ssh-ed25519"
        ));
        assert_eq!(line, 2);
        assert!(reason.contains("expected"), "{reason}");
    }

    #[test]
    fn parse_rejects_invalid_base64() {
        let (line, reason) = line_error("host ssh-ed25519 not*base64");
        assert_eq!(line, 1);
        assert!(reason.contains("base64"), "{reason}");
    }

    #[test]
    fn parse_rejects_keys_of_another_type_than_declared() {
        let (_, reason) = line_error(&format!("host ssh-rsa {KEY_A}"));
        assert!(reason.contains("ssh-ed25519"), "{reason}");
    }

    #[test]
    fn parse_rejects_data_that_is_not_a_key_blob() {
        let (_, reason) = line_error("host ssh-ed25519 AAAA");
        assert!(reason.contains("not an SSH public key"), "{reason}");
    }

    #[test]
    fn parse_rejects_unknown_markers_and_bad_hashes() {
        let (_, reason) = line_error(&format!("@trusted host ssh-ed25519 {KEY_A}"));
        assert!(reason.contains("@trusted"), "{reason}");
        let (_, reason) = line_error(&format!("|1|nosalt ssh-ed25519 {KEY_A}"));
        assert!(reason.contains("hashed"), "{reason}");
    }

    #[test]
    fn verify_accepts_the_listed_key_on_port_22() {
        let hosts = known_hosts(&format!("github.com ssh-ed25519 {KEY_A}"));
        assert_eq!(hosts.verify("github.com", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("GitHub.com", 22, &blob(KEY_A)), Ok(()));
    }

    #[test]
    fn verify_reports_unknown_hosts_with_the_offered_fingerprint() {
        let hosts = known_hosts(&format!("github.com ssh-ed25519 {KEY_A}"));
        let err = hosts.verify("gitlab.com", 22, &blob(KEY_B)).unwrap_err();
        assert_eq!(
            err,
            HostKeyError::UnknownHost {
                host: "gitlab.com".to_string(),
                key_type: "ssh-ed25519".to_string(),
                fingerprint: KEY_B_FINGERPRINT.to_string(),
                cert_authority_ignored: false,
            }
        );
        let message = err.to_string();
        assert!(message.contains("gitlab.com is not listed"), "{message}");
        assert!(message.contains(KEY_B_FINGERPRINT), "{message}");
        assert!(!message.contains(KEY_B), "{message}");
    }

    #[test]
    fn verify_reports_changed_keys_as_mismatch() {
        let hosts = known_hosts(&format!("[127.0.0.1]:2222 ssh-ed25519 {KEY_A}"));
        let err = hosts.verify("127.0.0.1", 2222, &blob(KEY_B)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "host key for [127.0.0.1]:2222 does not match known_hosts in the Secret; \
                 the server's key may have changed (it offered ssh-ed25519 {KEY_B_FINGERPRINT})"
            )
        );
    }

    #[test]
    fn verify_treats_another_key_type_for_a_listed_host_as_mismatch() {
        let hosts = known_hosts(&format!("github.com ssh-ed25519 {KEY_A}"));
        assert!(matches!(
            hosts.verify("github.com", 22, &blob(KEY_C)),
            Err(HostKeyError::KeyMismatch { key_type, .. }) if key_type == "ecdsa-sha2-nistp256"
        ));
    }

    #[test]
    fn verify_accepts_any_of_several_keys_for_a_host() {
        let hosts = known_hosts(&format!(
            "github.com ssh-ed25519 {KEY_A}\ngithub.com ecdsa-sha2-nistp256 {KEY_C}"
        ));
        assert_eq!(hosts.verify("github.com", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("github.com", 22, &blob(KEY_C)), Ok(()));
    }

    #[test]
    fn verify_keeps_ports_apart() {
        let hosts = known_hosts(&format!(
            "host ssh-ed25519 {KEY_A}\n[host]:2222 ssh-ed25519 {KEY_B}"
        ));
        assert_eq!(hosts.verify("host", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("host", 2222, &blob(KEY_B)), Ok(()));
        assert!(matches!(
            hosts.verify("host", 2222, &blob(KEY_A)),
            Err(HostKeyError::KeyMismatch { .. })
        ));
        assert!(matches!(
            hosts.verify("host", 2200, &blob(KEY_A)),
            Err(HostKeyError::UnknownHost { host, .. }) if host == "[host]:2200"
        ));
    }

    #[test]
    fn verify_accepts_bracketed_port_22_lines() {
        let hosts = known_hosts(&format!("[host]:22 ssh-ed25519 {KEY_A}"));
        assert_eq!(hosts.verify("host", 22, &blob(KEY_A)), Ok(()));
    }

    #[test]
    fn verify_handles_ipv6_hosts() {
        let hosts = known_hosts(&format!(
            "::1 ssh-ed25519 {KEY_A}\n[::1]:2222 ssh-ed25519 {KEY_B}"
        ));
        assert_eq!(hosts.verify("::1", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("[::1]", 2222, &blob(KEY_B)), Ok(()));
    }

    #[test]
    fn verify_matches_comma_separated_patterns() {
        let hosts = known_hosts(&format!("github.com,140.82.121.4 ssh-ed25519 {KEY_A}"));
        assert_eq!(hosts.verify("140.82.121.4", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("github.com", 22, &blob(KEY_A)), Ok(()));
    }

    #[test]
    fn verify_matches_wildcards_and_honours_negation() {
        let hosts = known_hosts(&format!(
            "*.example.com,!evil.example.com,git?.example.org ssh-ed25519 {KEY_A}"
        ));
        assert_eq!(hosts.verify("git.example.com", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("git1.example.org", 22, &blob(KEY_A)), Ok(()));
        for host in ["evil.example.com", "example.com", "git12.example.org"] {
            assert!(
                matches!(
                    hosts.verify(host, 22, &blob(KEY_A)),
                    Err(HostKeyError::UnknownHost { .. })
                ),
                "{host}"
            );
        }
    }

    #[test]
    fn verify_matches_hashed_hosts() {
        let hosts = known_hosts(&format!(
            "{HASHED_GITHUB_A} ssh-ed25519 {KEY_A}\n{HASHED_LOOPBACK_2222_B} ssh-ed25519 {KEY_B}"
        ));
        assert_eq!(hosts.verify("github.com", 22, &blob(KEY_A)), Ok(()));
        assert_eq!(hosts.verify("127.0.0.1", 2222, &blob(KEY_B)), Ok(()));
        assert!(matches!(
            hosts.verify("127.0.0.1", 22, &blob(KEY_B)),
            Err(HostKeyError::UnknownHost { .. })
        ));
        assert!(matches!(
            hosts.verify("github.com", 22, &blob(KEY_B)),
            Err(HostKeyError::KeyMismatch { .. })
        ));
    }

    #[test]
    fn verify_refuses_revoked_keys_for_every_host() {
        let hosts = known_hosts(&format!(
            "github.com ssh-ed25519 {KEY_A}\n@revoked other.example.com ssh-ed25519 {KEY_A}"
        ));
        let err = hosts.verify("github.com", 22, &blob(KEY_A)).unwrap_err();
        assert_eq!(
            err,
            HostKeyError::Revoked {
                host: "github.com".to_string(),
                key_type: "ssh-ed25519".to_string(),
                fingerprint: KEY_A_FINGERPRINT.to_string(),
            }
        );
        assert!(err.to_string().contains("@revoked"), "{err}");
    }

    #[test]
    fn verify_ignores_cert_authority_lines_and_says_so() {
        let hosts = known_hosts(&format!(
            "@cert-authority *.example.com ssh-ed25519 {KEY_A}\ngithub.com ssh-ed25519 {KEY_B}"
        ));
        let err = hosts
            .verify("git.example.com", 22, &blob(KEY_A))
            .unwrap_err();
        assert!(matches!(err, HostKeyError::UnknownHost { .. }), "{err:?}");
        assert!(err.to_string().contains("@cert-authority"), "{err}");
    }

    #[test]
    fn verify_describes_unparsable_offered_keys_without_panicking() {
        let hosts = known_hosts(&format!("github.com ssh-ed25519 {KEY_A}"));
        assert!(matches!(
            hosts.verify("github.com", 22, b"garbage"),
            Err(HostKeyError::KeyMismatch { key_type, .. }) if key_type == "unknown-key-type"
        ));
    }

    #[test]
    fn fingerprint_matches_ssh_keygen() {
        assert_eq!(fingerprint(&blob(KEY_A)), KEY_A_FINGERPRINT);
        assert_eq!(fingerprint(&blob(KEY_C)), KEY_C_FINGERPRINT);
    }

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob_matches(b"*", b""));
        assert!(glob_matches(b"a*c", b"abbbc"));
        assert!(glob_matches(b"a?c", b"abc"));
        assert!(!glob_matches(b"a?c", b"ac"));
        assert!(!glob_matches(b"abc", b"abcd"));
        assert!(glob_matches(b"*.example.com", b"git.example.com"));
        assert!(!glob_matches(b"*.example.com", b"example.com"));
        assert!(glob_matches(b"*a*b", b"xaxxab"));
        assert!(glob_matches(b"a*b*c", b"abbbcbc"));
        assert!(!glob_matches(b"a*b*c", b"abbbcb"));
        assert!(glob_matches(b"**?", b"x"));
        assert!(!glob_matches(b"?*?", b"x"));
        assert!(glob_matches(b"", b""));
        assert!(!glob_matches(b"", b"x"));
    }

    /// A pattern crafted to make a backtracking matcher try every way of splitting the text
    /// among its stars: with 12 stars over 10,000 characters that is more than 10^36 ways, so a
    /// matcher that is not linear in practice never returns. The thread lets the test fail
    /// instead of hanging.
    #[test]
    fn glob_matching_stays_fast_on_pathological_patterns() {
        let matched = std::thread::spawn(|| {
            let pattern = format!("{}b", "*a".repeat(12));
            let text = "a".repeat(10_000);
            let started = std::time::Instant::now();
            let matched = glob_matches(pattern.as_bytes(), text.as_bytes());
            (matched, started.elapsed())
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !matched.is_finished() {
            assert!(
                std::time::Instant::now() < deadline,
                "matching `*a*a*a*a*a*a*a*a*a*a*a*a*b` against 10,000 `a`s did not finish in 10 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let (matched, took) = matched.join().unwrap();
        assert!(!matched);
        assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    }

    #[test]
    fn glob_matching_steps_are_bounded_by_pattern_times_text() {
        let pattern = format!("{}b", "*a".repeat(12));
        let text = "a".repeat(2_000);
        let (matched, steps) = glob_match_counting_steps(pattern.as_bytes(), text.as_bytes());
        assert!(!matched);
        let bound = (pattern.len() + 1) * (text.len() + 2);
        assert!(steps <= bound, "{steps} steps, bound {bound}");
    }
}

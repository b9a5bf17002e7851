//! Proves that git2 (libgit2) can do a shallow fetch (`depth(1)`) from real git servers over
//! every transport a GitOps source uses, with the security checks a controller needs:
//! smart HTTP, HTTPS with basic auth and a private CA, and SSH with key auth and a pinned
//! host key. The servers are git's own `git http-backend` and OpenSSH's `sshd`.

use crate::support;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use git2::cert::Cert;
use git2::{
    CertificateCheckStatus, Cred, CredentialType, Direction, Error, ErrorClass, ErrorCode,
    FetchOptions, Oid, RemoteCallbacks, Repository,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::git::{ClientKey, GitRepos, HttpGitServer, HttpOptions, SshGitServer, TestRepo};
use tempfile::TempDir;

const USERNAME: &str = "flux";
const PASSWORD: &str = "s3cret";
/// How many times a credentials callback offers credentials before giving up.
const MAX_CREDENTIAL_ATTEMPTS: usize = 3;

/// A `main` branch with three commits, newest first.
struct History {
    repo: TestRepo,
    head: String,
    parent: String,
    grandparent: String,
}

fn three_commits_on_main(repos: &GitRepos) -> History {
    let repo = repos.create("apps");
    let grandparent = repo.commit("first", &[("apps/a.yaml", "kind: ConfigMap\n")]);
    let parent = repo.commit("second", &[("apps/a.yaml", "kind: Secret\n")]);
    let head = repo.commit(
        "third",
        &[
            ("apps/a.yaml", "kind: Secret\n"),
            ("apps/b.yaml", "kind: Service\n"),
        ],
    );
    History {
        repo,
        head,
        parent,
        grandparent,
    }
}

/// Fetches `main` from `url` with depth 1 into a new repository, as a controller would.
fn shallow_fetch(
    url: &str,
    callbacks: RemoteCallbacks<'_>,
) -> Result<(TempDir, Repository), Error> {
    let dir = tempfile::tempdir().expect("create dir for the fetched repository");
    let repo = Repository::init_bare(dir.path())?;
    let mut options = FetchOptions::new();
    options.depth(1).remote_callbacks(callbacks);
    repo.remote_anonymous(url)?.fetch(
        &["+refs/heads/main:refs/remotes/origin/main"],
        Some(&mut options),
        None,
    )?;
    Ok((dir, repo))
}

/// The error of a fetch that must fail; panics with `why` if it succeeds.
fn shallow_fetch_refused(url: &str, callbacks: RemoteCallbacks<'_>, why: &str) -> Error {
    match shallow_fetch(url, callbacks) {
        Ok(_) => panic!("{why}"),
        Err(err) => err,
    }
}

fn assert_only_head_was_fetched(fetched: &Repository, history: &History) {
    assert!(
        fetched.is_shallow(),
        "a depth-1 fetch must leave a shallow repo"
    );
    let fetched_main = fetched
        .refname_to_id("refs/remotes/origin/main")
        .expect("origin/main was fetched");
    assert_eq!(fetched_main.to_string(), history.head);
    let head = fetched
        .find_commit(fetched_main)
        .expect("head commit is present");
    assert!(head.tree().is_ok(), "head commit's tree is present");
    for missing in [&history.parent, &history.grandparent] {
        let id = Oid::from_str(missing).expect("a SHA");
        let absent = fetched.find_commit(id).map(|_| ());
        assert!(
            absent
                .as_ref()
                .is_err_and(|e| e.code() == ErrorCode::NotFound),
            "commit {missing} is older than depth 1 and must not be fetched: {absent:?}"
        );
    }
}

// ---- HTTP ------------------------------------------------------------------------------

#[test]
fn shallow_fetch_over_plain_smart_http() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    eprintln!("git http-backend (CGI) behind {}", server.base_url());

    let (_dir, fetched) = shallow_fetch(&server.url_for(&history.repo), RemoteCallbacks::new())
        .expect("shallow fetch over plain HTTP");

    assert_only_head_was_fetched(&fetched, &history);
}

#[test]
fn shallow_fetch_over_smart_http_with_basic_auth_and_tls() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let options = HttpOptions::default().basic_auth(USERNAME, PASSWORD).tls();
    let server = HttpGitServer::start(repos.root(), options);
    eprintln!(
        "git http-backend (CGI) behind {} with basic auth",
        server.base_url()
    );
    let ca = server.ca_der().expect("TLS server has a CA");

    let mut callbacks = RemoteCallbacks::new();
    callbacks.certificate_check(server_certificate_signed_by(ca));
    callbacks.credentials(|_url, _username, allowed| {
        assert!(allowed.contains(CredentialType::USER_PASS_PLAINTEXT));
        Cred::userpass_plaintext(USERNAME, PASSWORD)
    });
    let (_dir, fetched) = shallow_fetch(&server.url_for(&history.repo), callbacks)
        .expect("shallow fetch over HTTPS with basic auth");

    assert_only_head_was_fetched(&fetched, &history);
    assert_eq!(server.rejected_credentials(), 0);
}

#[test]
fn https_fetch_rejects_a_server_certificate_from_another_ca() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default().tls());
    let unrelated = HttpGitServer::start(repos.root(), HttpOptions::default().tls());
    eprintln!(
        "git http-backend (CGI) behind {}, trusting the CA of {}",
        server.base_url(),
        unrelated.base_url()
    );
    let wrong_ca = unrelated.ca_der().expect("TLS server has a CA");

    let mut callbacks = RemoteCallbacks::new();
    callbacks.certificate_check(server_certificate_signed_by(wrong_ca));
    let err = shallow_fetch_refused(
        &server.url_for(&history.repo),
        callbacks,
        "a certificate from an untrusted CA must be refused",
    );

    assert_eq!(err.code(), ErrorCode::Certificate, "{err}");
}

#[test]
fn wrong_basic_auth_password_fails_with_auth_error_after_bounded_attempts() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let options = HttpOptions::default().basic_auth(USERNAME, PASSWORD);
    let server = HttpGitServer::start(repos.root(), options);
    eprintln!(
        "git http-backend (CGI) behind {} with basic auth",
        server.base_url()
    );

    let attempts = Cell::new(0);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(|_url, _username, _allowed| {
        attempts.set(attempts.get() + 1);
        give_up_after_bounded_attempts(attempts.get())?;
        Cred::userpass_plaintext(USERNAME, "wrong")
    });
    let err = shallow_fetch_refused(
        &server.url_for(&history.repo),
        callbacks,
        "a wrong password must not fetch",
    );

    assert_eq!(err.code(), ErrorCode::Auth, "{err}");
    assert_eq!(attempts.get(), MAX_CREDENTIAL_ATTEMPTS + 1);
    assert_eq!(server.rejected_credentials(), MAX_CREDENTIAL_ATTEMPTS);
}

/// libgit2 calls the credentials callback again after every rejection; without a limit a
/// wrong password would retry forever.
fn give_up_after_bounded_attempts(attempt: usize) -> Result<(), Error> {
    if attempt > MAX_CREDENTIAL_ATTEMPTS {
        let message = format!("credentials rejected {MAX_CREDENTIAL_ATTEMPTS} times");
        return Err(Error::new(ErrorCode::Auth, ErrorClass::Http, message));
    }
    Ok(())
}

/// A `certificate_check` callback accepting only a server certificate that chains to
/// `ca_der` and is valid for the host in the URL.
///
/// The check is per remote rather than `git2::opts::set_ssl_cert_file`, which changes the
/// trust store of the whole process (every test and every other source) at once.
fn server_certificate_signed_by(
    ca_der: &[u8],
) -> impl FnMut(&Cert<'_>, &str) -> Result<CertificateCheckStatus, Error> + use<> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .expect("test CA is a valid certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("build certificate verifier");
    move |cert, host| {
        let presented = cert
            .as_x509()
            .ok_or_else(|| tls_error("not an X.509 cert"))?;
        let name = ServerName::try_from(host.to_owned()).map_err(tls_error)?;
        let leaf = CertificateDer::from(presented.data().to_vec());
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .map_err(tls_error)?;
        Ok(CertificateCheckStatus::CertificateOk)
    }
}

fn tls_error(reason: impl std::fmt::Display) -> Error {
    let message = format!("server certificate refused: {reason}");
    Error::new(ErrorCode::Certificate, ErrorClass::Ssl, message)
}

// ---- SSH -------------------------------------------------------------------------------

fn shallow_fetch_over_ssh_with(key: ClientKey) {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let sshd = SshGitServer::start();
    eprintln!("sshd pid {} on 127.0.0.1:{}", sshd.pid(), sshd.port());

    let private_key = sshd.private_key(key);
    let mut callbacks = RemoteCallbacks::new();
    callbacks.certificate_check(host_key_in_known_hosts(sshd.known_hosts_line()));
    callbacks.credentials(|_url, username, allowed| {
        assert!(allowed.contains(CredentialType::SSH_KEY));
        let username = username.expect("the URL names the user");
        Cred::ssh_key_from_memory(username, None, &private_key, None)
    });
    let result = shallow_fetch(&sshd.url_for(&history.repo), callbacks);
    let (_dir, fetched) = result.unwrap_or_else(|err| {
        panic!(
            "shallow fetch over SSH with {key:?}: {err}\nsshd log:\n{}",
            sshd.log()
        )
    });

    assert_only_head_was_fetched(&fetched, &history);
}

#[test]
fn shallow_fetch_over_ssh_with_ed25519_openssh_key_and_pinned_host_key() {
    shallow_fetch_over_ssh_with(ClientKey::Ed25519OpenSsh);
}

#[test]
fn shallow_fetch_over_ssh_with_rsa_pem_key_and_pinned_host_key() {
    shallow_fetch_over_ssh_with(ClientKey::RsaPem);
}

#[test]
fn shallow_fetch_over_ssh_with_ecdsa_pem_key_and_pinned_host_key() {
    shallow_fetch_over_ssh_with(ClientKey::EcdsaPem);
}

#[test]
fn ssh_fetch_rejects_a_host_key_not_in_known_hosts() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let sshd = SshGitServer::start();
    eprintln!("sshd pid {} on 127.0.0.1:{}", sshd.pid(), sshd.port());
    // Same host and port, but the key is another one (the client's own public key).
    let other_key = sshd.public_key(ClientKey::Ed25519OpenSsh);
    let wrong_line = format!("[127.0.0.1]:{} {}", sshd.port(), other_key);

    let credentials_asked = Cell::new(false);
    let private_key = sshd.private_key_pem();
    let mut callbacks = RemoteCallbacks::new();
    callbacks.certificate_check(host_key_in_known_hosts(&wrong_line));
    callbacks.credentials(|_url, username, _allowed| {
        credentials_asked.set(true);
        Cred::ssh_key_from_memory(username.unwrap_or("git"), None, &private_key, None)
    });
    let err = shallow_fetch_refused(
        &sshd.url_for(&history.repo),
        callbacks,
        "an unknown host key must be refused",
    );

    assert_eq!(err.code(), ErrorCode::Certificate, "{err}");
    assert!(
        !credentials_asked.get(),
        "no key may be offered to an unverified host"
    );
}

/// A `certificate_check` callback accepting only the host key of `known_hosts_line`
/// (`host key-type base64-key [comment]`), whatever `~/.ssh/known_hosts` says: since libgit2 1.6
/// that file is all libgit2 checks on its own.
fn host_key_in_known_hosts(
    known_hosts_line: &str,
) -> impl FnMut(&Cert<'_>, &str) -> Result<CertificateCheckStatus, Error> + use<> {
    let fields: Vec<&str> = known_hosts_line.split_whitespace().collect();
    let [_host, _key_type, key, ..] = fields[..] else {
        panic!("not a known_hosts line: {known_hosts_line:?}");
    };
    let known_key = BASE64.decode(key).expect("known_hosts key is base64");
    move |cert, host| {
        let offered = cert.as_hostkey().and_then(|hostkey| hostkey.hostkey());
        match offered {
            Some(offered) if offered == known_key.as_slice() => {
                Ok(CertificateCheckStatus::CertificateOk)
            }
            Some(_) => Err(host_key_error(format!(
                "host key of {host} is not in known_hosts"
            ))),
            None => Err(host_key_error(format!(
                "{host} presented no raw SSH host key"
            ))),
        }
    }
}

fn host_key_error(message: String) -> Error {
    Error::new(ErrorCode::Certificate, ErrorClass::Ssh, message)
}

// ---- the repository helpers ----------------------------------------------------------

#[test]
fn repo_helpers_publish_exact_trees_branches_and_tags_over_smart_http() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let repo = &history.repo;
    let release = repo.commit_on("release", "orphan branch", &[("only.yaml", "x: 1\n")]);
    repo.branch("stable", &history.parent);
    repo.tag("v1", &history.grandparent);
    let annotated = repo.annotated_tag("v2", &history.head, "second release");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    eprintln!("git http-backend (CGI) behind {}", server.base_url());

    let advertised = advertised_refs(&server.url_for(repo));

    let expected = [
        ("HEAD", &history.head),
        ("refs/heads/main", &history.head),
        ("refs/heads/release", &release),
        ("refs/heads/stable", &history.parent),
        ("refs/tags/v1", &history.grandparent),
        ("refs/tags/v2", &annotated),
        ("refs/tags/v2^{}", &history.head),
    ];
    for (name, sha) in expected {
        assert_eq!(advertised.get(name), Some(sha), "{name} in {advertised:#?}");
    }
    assert_eq!(tree_paths(repo, &release), ["only.yaml"]);
    assert_eq!(
        tree_paths(repo, &history.head),
        ["apps/a.yaml", "apps/b.yaml"]
    );
}

/// What the server advertises: ref name → SHA, as `git ls-remote` shows it.
fn advertised_refs(url: &str) -> HashMap<String, String> {
    let dir = tempfile::tempdir().expect("create dir for a scratch repository");
    let scratch = Repository::init_bare(dir.path()).expect("init scratch repository");
    let mut remote = scratch.remote_anonymous(url).expect("valid URL");
    remote
        .connect(Direction::Fetch)
        .expect("connect to the server");
    let heads = remote.list().expect("list advertised refs");
    heads
        .iter()
        .map(|head| (head.name().to_owned(), head.oid().to_string()))
        .collect()
}

/// Every file path in `commit`'s tree, sorted.
fn tree_paths(repo: &TestRepo, commit: &str) -> Vec<String> {
    let bare = Repository::open_bare(repo.path()).expect("open the served repository");
    let commit = bare.revparse_single(commit).expect("commit exists");
    let tree = commit.peel_to_tree().expect("commit has a tree");
    let mut paths = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob) {
            paths.push(format!("{dir}{}", entry.name().unwrap_or_default()));
        }
        git2::TreeWalkResult::Ok
    })
    .expect("walk the tree");
    paths.sort();
    paths
}

// ---- what only the git CLI can show -------------------------------------------------------

/// libgit2 speaks protocol v0/v1 only, so the git CLI proves that the HTTP bridge passes
/// `Git-Protocol` through and serves protocol v2 and shallow clones; it also shows the
/// server works when started and dropped inside a tokio runtime.
#[tokio::test]
async fn smart_http_serves_protocol_v2_shallow_clone_to_git_cli_from_async_test() {
    let repos = GitRepos::new();
    let history = three_commits_on_main(&repos);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    eprintln!("git http-backend (CGI) behind {}", server.base_url());
    let clone_dir = tempfile::tempdir().expect("create dir for the clone");
    let clone_path = clone_dir.path().join("clone");

    let output = tokio::process::Command::new("git")
        .args(["-c", "protocol.version=2", "clone", "--depth=1", "--bare"])
        .arg(server.url_for(&history.repo))
        .arg(&clone_path)
        .env("GIT_TRACE_PACKET", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .await
        .expect("run git clone");
    let trace = String::from_utf8_lossy(&output.stderr);

    assert!(output.status.success(), "git clone failed:\n{trace}");
    assert!(
        trace.contains("< version 2"),
        "server did not answer with v2:\n{trace}"
    );
    let shallow = std::fs::read_to_string(clone_path.join("shallow")).expect("clone is shallow");
    assert_eq!(shallow.trim(), history.head);
}

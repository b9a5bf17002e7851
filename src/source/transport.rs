//! The blocking libgit2 conversations with a remote: the ref advertisement and the fetch. Both
//! run on tokio's blocking pool; the callbacks here enforce credentials (tried once), strict
//! host and certificate checks, the deadline, cancellation and the pack size limit.

use std::{
    cell::{Cell, RefCell},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, ErrorClass, ErrorCode,
    FetchOptions, Remote, RemoteCallbacks, Repository, cert::Cert,
};

use super::{
    credentials::Credentials, error::SourceErrorKind, known_hosts::KnownHosts, select::RemoteRef,
    tls, url::RepositoryUrl,
};

/// Everything one conversation with a remote needs, and what it learned when it was stopped.
pub(super) struct Conversation<'a> {
    pub url: &'a RepositoryUrl,
    pub credentials: Option<&'a Credentials>,
    pub deadline: Instant,
    pub cancelled: Arc<AtomicBool>,
    pub max_pack_bytes: u64,
    credential_attempts: Cell<u32>,
    stopped_because: RefCell<Option<SourceErrorKind>>,
}

/// A ref name no server advertises: asking for it makes a download list refs and want nothing.
const ADVERTISE_ONLY: &str = "refs/driftless/advertise-only";

/// A remote whose refs were listed, still connected.
pub(super) struct Listed<'c, 'r> {
    // Declared first, so dropped (and disconnected) while the callbacks it may call still live.
    remote: Remote<'r>,
    options: FetchOptions<'c>,
    conversation: &'c Conversation<'c>,
    pub advertisement: Advertisement,
}

impl Listed<'_, '_> {
    /// Fetches `refspecs` over the listing's connection: no second ref advertisement (one
    /// request less over HTTP, one handshake less over SSH), and the credentials the listing
    /// was let in with. Returns the bytes received.
    pub fn fetch(mut self, refspecs: &[String]) -> Result<u64, SourceErrorKind> {
        self.conversation
            .fetch_over(&mut self.remote, &mut self.options, refspecs)
    }

    /// Ends the conversation without fetching.
    pub fn close(mut self) -> Result<(), SourceErrorKind> {
        self.remote
            .disconnect()
            .map_err(|e| self.conversation.explain(e))
    }
}

/// The refs a remote advertises, and where its HEAD points.
#[derive(Clone, Debug)]
pub(super) struct Advertisement {
    pub refs: Vec<RemoteRef>,
    pub default_branch: Option<String>,
}

impl<'a> Conversation<'a> {
    pub fn new(
        url: &'a RepositoryUrl,
        credentials: Option<&'a Credentials>,
        deadline: Instant,
        cancelled: Arc<AtomicBool>,
        max_pack_bytes: u64,
    ) -> Self {
        Self {
            url,
            credentials,
            deadline,
            cancelled,
            max_pack_bytes,
            credential_attempts: Cell::new(0),
            stopped_because: RefCell::new(None),
        }
    }

    /// Lists the remote's refs without transferring objects (like `git ls-remote`), and stays
    /// connected: a fetch that follows ([`Listed::fetch`]) reuses the connection and this
    /// listing instead of asking for the refs again. A download of a ref no server has is used
    /// rather than `connect`, because only the download path sends the custom headers that
    /// bearer-token auth needs; with nothing wanted, no objects move. (A download with no
    /// refspec at all would fetch every advertised ref.)
    pub fn list<'c, 'r>(&'c self, repo: &'r Repository) -> Result<Listed<'c, 'r>, SourceErrorKind> {
        let mut remote = repo
            .remote_anonymous(&self.url.for_libgit2())
            .map_err(|e| self.explain(e))?;
        let mut options = self.fetch_options(&self.headers());
        remote
            .download(&[ADVERTISE_ONLY], Some(&mut options))
            .map_err(|e| self.explain(e))?;
        let refs = remote
            .list()
            .map_err(|e| self.explain(e))?
            .iter()
            .map(|head| RemoteRef {
                name: head.name().to_owned(),
                oid: head.oid().to_string(),
            })
            .collect();
        let default_branch = remote
            .default_branch()
            .ok()
            .and_then(|name| name.as_str().ok().map(str::to_owned));
        Ok(Listed {
            remote,
            options,
            conversation: self,
            advertisement: Advertisement {
                refs,
                default_branch,
            },
        })
    }

    /// Fetches `refspecs` on a connection of its own (see [`Listed::fetch`]).
    pub fn fetch(&self, repo: &Repository, refspecs: &[String]) -> Result<u64, SourceErrorKind> {
        let mut remote = repo
            .remote_anonymous(&self.url.for_libgit2())
            .map_err(|e| self.explain(e))?;
        let mut options = self.fetch_options(&self.headers());
        self.fetch_over(&mut remote, &mut options, refspecs)
    }

    /// Fetches `refspecs` at depth 1, without following tags (they would un-shallow the
    /// cache); a connected `remote` stays on its connection. Returns the bytes received.
    fn fetch_over(
        &self,
        remote: &mut Remote<'_>,
        options: &mut FetchOptions<'_>,
        refspecs: &[String],
    ) -> Result<u64, SourceErrorKind> {
        options.depth(1);
        remote
            .fetch(refspecs, Some(options), None)
            .map_err(|e| self.explain(e))?;
        Ok(remote.stats().received_bytes() as u64)
    }

    fn headers(&self) -> Vec<String> {
        let bearer = self.credentials.and_then(|c| c.bearer_token.as_ref());
        bearer
            .map(|token| vec![format!("Authorization: Bearer {token}")])
            .unwrap_or_default()
    }

    fn fetch_options<'o>(&'o self, headers: &[String]) -> FetchOptions<'o> {
        let mut options = FetchOptions::new();
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        options
            .remote_callbacks(self.callbacks())
            .download_tags(AutotagOption::None)
            .custom_headers(&header_refs);
        options
    }

    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(|_url, username, allowed| self.offer_credentials(username, allowed));
        callbacks.certificate_check(|cert, host| self.check_certificate(cert, host));
        callbacks.transfer_progress(|progress| self.keep_going(progress.received_bytes() as u64));
        callbacks.sideband_progress(|_| self.keep_going(0));
        callbacks
    }

    /// Offers the Secret's credentials once; a second request means they were rejected, and
    /// trying again would only loop.
    fn offer_credentials(
        &self,
        username: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let attempt = self.credential_attempts.get() + 1;
        self.credential_attempts.set(attempt);
        if attempt > 1 {
            return Err(self.stop(SourceErrorKind::AuthenticationFailed));
        }
        let credentials = self.credentials;
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Some(ssh) = credentials.and_then(|c| c.ssh.as_ref()) {
                let user = username.or(self.url.username()).unwrap_or("git");
                return Cred::ssh_key_from_memory(
                    user,
                    None,
                    &ssh.identity,
                    ssh.passphrase.as_deref(),
                );
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            let basic = credentials
                .and_then(|c| c.basic.clone())
                .or_else(|| self.url.embedded_credentials());
            if let Some((user, password)) = basic {
                return Cred::userpass_plaintext(&user, &password);
            }
        }
        Err(self.stop(SourceErrorKind::CredentialsRequired))
    }

    fn check_certificate(
        &self,
        cert: &Cert<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        if let Some(hostkey) = cert.as_hostkey() {
            let known_hosts = self
                .credentials
                .and_then(|c| c.ssh.as_ref())
                .map(|ssh| ssh.known_hosts.as_str())
                .ok_or_else(|| self.stop(SourceErrorKind::KnownHostsRequired))?;
            let offered = hostkey.hostkey().ok_or_else(|| {
                self.stop(SourceErrorKind::HostKey(
                    "the server offered no host key".into(),
                ))
            })?;
            let port = self.url.port().unwrap_or(22);
            KnownHosts::parse(known_hosts)
                .map_err(|e| self.stop(SourceErrorKind::HostKey(format!("known_hosts: {e}"))))?
                .verify(host, port, offered)
                .map_err(|e| self.stop(SourceErrorKind::HostKey(e.to_string())))?;
            return Ok(CertificateCheckStatus::CertificateOk);
        }
        let custom_ca = self.credentials.and_then(|c| c.ca_pem.as_deref());
        match (cert.as_x509(), custom_ca) {
            (Some(x509), Some(ca_pem)) => tls::verify_server_certificate(x509.data(), host, ca_pem)
                .map(|()| CertificateCheckStatus::CertificateOk)
                .map_err(|reason| self.stop(SourceErrorKind::Certificate(reason))),
            // Without a custom CA, libgit2 verifies against the system's trust store.
            _ => Ok(CertificateCheckStatus::CertificatePassthrough),
        }
    }

    fn keep_going(&self, received_bytes: u64) -> bool {
        let reason = if self.cancelled.load(Ordering::Relaxed) {
            Some(SourceErrorKind::Cancelled)
        } else if Instant::now() > self.deadline {
            Some(SourceErrorKind::TimedOut)
        } else if received_bytes > self.max_pack_bytes {
            Some(SourceErrorKind::PackTooLarge {
                limit: self.max_pack_bytes,
            })
        } else {
            None
        };
        match reason {
            Some(reason) => {
                self.stop(reason);
                false
            }
            None => true,
        }
    }

    /// Remembers why we stopped libgit2, so the error says that instead of "user cancelled".
    fn stop(&self, reason: SourceErrorKind) -> git2::Error {
        let message = reason.to_string();
        self.stopped_because.borrow_mut().get_or_insert(reason);
        git2::Error::new(ErrorCode::User, ErrorClass::Callback, message)
    }

    /// Turns a libgit2 error into the reason a user can act on.
    fn explain(&self, error: git2::Error) -> SourceErrorKind {
        if let Some(reason) = self.stopped_because.borrow_mut().take() {
            return reason;
        }
        if Instant::now() > self.deadline {
            return SourceErrorKind::TimedOut;
        }
        match error.code() {
            ErrorCode::Auth => SourceErrorKind::AuthenticationFailed,
            ErrorCode::Certificate => SourceErrorKind::Certificate(error.message().to_owned()),
            _ if error.class() == ErrorClass::Http && error.message().contains("401") => {
                SourceErrorKind::AuthenticationFailed
            }
            _ => SourceErrorKind::Git(error.message().to_owned()),
        }
    }
}

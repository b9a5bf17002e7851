//! Fetching revisions of Git repositories with libgit2 and reading their manifest files.
//!
//! [`SourceEngine`] keeps a persistent cache of bare repositories, one per repository and
//! credentials: every spelling of a repository (ssh or scp-like, with or without `.git`) fetched
//! with the same credentials shares one entry, while a request with other credentials, none, a
//! different scheme or a different SSH user gets an entry of its own and talks to the server
//! itself. Content fetched with credentials is so only ever served to requests that proved
//! access with the same credentials. Work is "resolve first, fetch second": the remote's refs
//! are listed (one round trip), and objects are fetched, shallow and without tags, only when the
//! wanted commit is not cached yet, over the connection that listed the refs. Requests for one entry are serialized and coalesced: a
//! request that waited while another listed the refs reuses that answer instead of asking the
//! server again. Entries unused for a while, or beyond a size bound, are evicted
//! ([`SourceEngine::evict_unused`]), never while a request uses them.

pub mod credentials;
mod error;
mod eviction;
pub mod known_hosts;
pub mod select;
pub mod snapshot;
mod tls;
mod transport;
pub mod tree;
pub mod url;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use git2::{Oid, Repository};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OwnedRwLockReadGuard;

pub use credentials::Credentials;
pub use error::{SourceError, SourceErrorKind};
pub use eviction::{CacheLimits, EvictionReport};
pub use snapshot::Snapshot;
pub use tree::{ManifestFile, TreeLimits};

use crate::api::GitReference;
use select::Selection;
use transport::{Advertisement, Conversation, Listed};
use url::RepositoryUrl;

/// Limits on what one fetch may transfer and hand on.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes a single fetch may receive.
    pub max_pack_bytes: u64,
    /// Bounds on the manifest files read from a revision.
    pub tree: TreeLimits,
    /// When cache entries are evicted.
    pub cache: CacheLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pack_bytes: 512 * 1024 * 1024,
            tree: TreeLimits::default(),
            cache: CacheLimits::default(),
        }
    }
}

/// What to fetch, for whom.
#[derive(Clone)]
pub struct ArtifactRequest {
    /// `namespace/name` of the GitRepository, for error messages.
    pub owner: String,
    pub url: String,
    pub reference: Option<GitReference>,
    /// Directory of the manifests inside the repository; empty for the root.
    pub path: String,
    pub ignore: Vec<String>,
    pub credentials: Option<Credentials>,
    /// Bound on the whole request, waiting for other requests on the same URL included.
    pub timeout: Duration,
    /// A ref listing of the URL that started after this instant answers the request, however
    /// long ago. For a push, its arrival: a listing after it shows the pushed commit (or a
    /// newer one), so the GitRepositories a push reaches share one listing however they are
    /// queued. `None`: a listing that finished while the request waited.
    pub listed_after: Option<Instant>,
}

// `url` may hold a token: print it redacted, like every other place a URL is shown.
impl std::fmt::Debug for ArtifactRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = RepositoryUrl::parse(&self.url)
            .map(|url| url.redacted())
            .unwrap_or_else(|_| url::redact_unparsed(&self.url));
        f.debug_struct("ArtifactRequest")
            .field("owner", &self.owner)
            .field("url", &url)
            .field("reference", &self.reference)
            .field("path", &self.path)
            .field("ignore", &self.ignore)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A revision's manifest files and where they came from.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// Flux-style revision: `main@sha1:<40 hex>`, `v1.0.0@sha1:<40 hex>` or `sha1:<40 hex>`.
    pub revision: String,
    pub commit: String,
    /// The commit's committer time, RFC 3339.
    pub commit_time: String,
    pub files: Vec<ManifestFile>,
    /// Symlinks and submodules under the path that may stand for manifests: not followed, and
    /// the controller fails the revision over them.
    pub skipped: Vec<String>,
    /// Whether objects were fetched for this request (false when the cache had the commit).
    pub fetched: bool,
    /// The commit's whole tree, for renderers.
    pub snapshot: Snapshot,
}

/// Counters of network work, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct SourceStats {
    pub advertisements: AtomicU64,
    pub fetches: AtomicU64,
    pub bytes_received: AtomicU64,
}

/// The refs a URL advertised, when the listing was sent and when its answer was complete.
#[derive(Clone)]
struct Answered {
    started: Instant,
    at: Instant,
    advertisement: Advertisement,
}

/// The listing that requests waiting on one cache entry share.
type Listing = tokio::sync::Mutex<Option<Answered>>;

/// Coordination around one cache entry. Requests hold it shared for as long as they (or git
/// work they started) use the entry's directory, and take turns on the listing inside;
/// eviction needs it exclusively, so it never deletes a directory in use.
type Slot = Arc<tokio::sync::RwLock<Listing>>;

/// Most entries whose last listing is kept for requests that follow a push.
const MAX_RECENT_LISTINGS: usize = 256;

/// The last listing of recently listed entries, by directory name, for requests that follow a
/// push (see [`ArtifactRequest::listed_after`]): the reconciles one push starts run a few at a
/// time, and each would otherwise list the URL again. Bounded; the oldest is dropped first.
#[derive(Default)]
struct RecentListings(Mutex<HashMap<String, Answered>>);

impl RecentListings {
    /// The refs of `key` as listed by a listing that started after `after`.
    fn since(&self, key: &str, after: Instant) -> Option<Advertisement> {
        let recent = crate::sync::lock(&self.0);
        let answered = recent
            .get(key)
            .filter(|answered| answered.started >= after)?;
        Some(answered.advertisement.clone())
    }

    fn remember(&self, key: &str, answered: Answered) {
        let mut recent = crate::sync::lock(&self.0);
        recent.insert(key.to_owned(), answered);
        while recent.len() > MAX_RECENT_LISTINGS {
            let oldest = recent
                .iter()
                .min_by_key(|(_, answered)| answered.started)
                .map(|(key, _)| key.clone());
            match oldest {
                Some(oldest) => recent.remove(&oldest),
                None => break,
            };
        }
    }
}

/// The slots of the entries in use, by directory name. A slot is forgotten as soon as nothing
/// holds it: a listing is only ever reused by requests that waited while it ran, so an idle
/// one is of no use, and the table never grows beyond the requests in flight.
#[derive(Default)]
struct Slots(Mutex<HashMap<String, Slot>>);

impl Slots {
    fn get(&self, key: &str) -> Slot {
        let mut slots = crate::sync::lock(&self.0);
        slots.entry(key.to_owned()).or_default().clone()
    }

    fn release(&self, key: &str) {
        let mut slots = crate::sync::lock(&self.0);
        // Slots are cloned only under this lock, so a count of one (the table's) is final.
        if slots
            .get(key)
            .is_some_and(|slot| Arc::strong_count(slot) == 1)
        {
            slots.remove(key);
        }
    }

    fn len(&self) -> usize {
        crate::sync::lock(&self.0).len()
    }
}

/// A shared hold on a cache entry. Clones travel into the blocking git work, so the hold lasts
/// until the last of that work ends, even when the request timed out before it.
#[derive(Clone)]
struct InUse(Arc<Hold>);

struct Hold {
    guard: Option<OwnedRwLockReadGuard<Listing>>,
    slots: Arc<Slots>,
    key: String,
}

impl InUse {
    async fn take(slots: &Arc<Slots>, key: &str) -> Self {
        let guard = slots.get(key).read_owned().await;
        InUse(Arc::new(Hold {
            guard: Some(guard),
            slots: slots.clone(),
            key: key.to_owned(),
        }))
    }

    fn listing(&self) -> &Listing {
        self.0
            .guard
            .as_deref()
            .expect("the guard is only taken when the hold is dropped")
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.slots.release(&self.key);
    }
}

/// The persistent repository cache and the per-entry coordination around it.
pub struct SourceEngine {
    cache_dir: PathBuf,
    limits: Limits,
    slots: Arc<Slots>,
    /// Keys the credential digests in cache directory names, so that a name says nothing that
    /// would help guess a password; kept in the cache so that names survive restarts.
    identity_salt: Vec<u8>,
    stats: Arc<SourceStats>,
    recent_listings: RecentListings,
}

impl SourceEngine {
    /// An engine caching repositories under `cache_dir`. libgit2's network timeouts are
    /// process-wide; `stall_timeout` bounds how long a silent server can hold a thread.
    pub fn new(cache_dir: impl Into<PathBuf>, limits: Limits, stall_timeout: Duration) -> Self {
        let millis = stall_timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: these only set libgit2 globals; no other thread reads them mid-update in a
        // way that could observe a torn value (plain ints).
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis);
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis);
        }
        let cache_dir = cache_dir.into();
        Self {
            identity_salt: eviction::identity_salt(&cache_dir),
            cache_dir,
            limits,
            slots: Arc::default(),
            stats: Arc::default(),
            recent_listings: RecentListings::default(),
        }
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// How many cache entries requests hold right now, each with at most one listing; the
    /// listings of entries no request holds are already dropped.
    pub fn entries_in_use(&self) -> usize {
        self.slots.len()
    }

    /// Resolves the request's ref, fetches it when the cache lacks it, and reads the manifest
    /// files under its path.
    pub async fn artifact(&self, request: &ArtifactRequest) -> Result<Artifact, SourceError> {
        let url = RepositoryUrl::parse(&request.url)
            .map_err(|e| failure(request, &url::redact_unparsed(&request.url), e.into()))?;
        let fail = |kind: SourceErrorKind| failure(request, &url.redacted(), scrubbed(&url, kind));
        let cancelled = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancelled.clone());
        let work = self.resolve_and_read(request, url.clone(), cancelled.clone());
        match tokio::time::timeout(request.timeout, work).await {
            Ok(result) => result.map_err(fail),
            Err(_) => Err(fail(SourceErrorKind::TimedOut)),
        }
    }

    async fn resolve_and_read(
        &self,
        request: &ArtifactRequest,
        url: RepositoryUrl,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Artifact, SourceErrorKind> {
        let asked_at = Instant::now();
        // An unbounded timeout must not overflow the clock: it simply never expires.
        let deadline = asked_at
            .checked_add(request.timeout)
            .unwrap_or(asked_at + Duration::from_secs(86_400 * 365));
        let entry = self.entry_name(&url, request.credentials.as_ref());
        let in_use = InUse::take(&self.slots, &entry).await;
        let mut answered = in_use.listing().lock().await;
        let repo_dir = self.cache_dir.join(&entry);
        let job = Job {
            url,
            credentials: request.credentials.clone(),
            deadline,
            cancelled,
            max_pack_bytes: self.limits.max_pack_bytes,
            repo_dir: repo_dir.clone(),
            _in_use: in_use.clone(),
        };

        tracing::debug!(owner = request.owner, "resolving the ref");
        let answers = |previous: &Answered| match request.listed_after {
            Some(after) => previous.started >= after,
            None => previous.at >= asked_at,
        };
        let after_push = request
            .listed_after
            .and_then(|after| self.recent_listings.since(&entry, after));
        let reused = match (answered.as_ref(), after_push) {
            // Another request listed the refs while this one waited, or since the push this one
            // follows: that answer is reused.
            (Some(previous), _) if answers(previous) => Some(previous.advertisement.clone()),
            (_, Some(advertisement)) => Some(advertisement),
            _ => None,
        };
        let (selection, fetched) = match reused {
            Some(advertisement) => {
                let selection = choose(&advertisement, request.reference.as_ref())?;
                let fetched = blocking({
                    let (job, selection) = (job.clone(), selection.clone());
                    move || job.fetch_unless_cached(&selection, None)
                })
                .await?;
                (selection, fetched)
            }
            None => {
                let (listing, chosen) = blocking({
                    let (job, reference) = (job.clone(), request.reference.clone());
                    move || job.list_and_fetch(reference.as_ref())
                })
                .await?;
                self.stats.advertisements.fetch_add(1, Ordering::Relaxed);
                self.recent_listings.remember(&entry, listing.clone());
                *answered = Some(listing);
                chosen?
            }
        };
        tracing::debug!(
            owner = request.owner,
            fetched = fetched.is_some(),
            "commit at hand"
        );
        if let Some(bytes) = fetched {
            self.stats.fetches.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_received
                .fetch_add(bytes, Ordering::Relaxed);
        }
        drop(answered);

        let (path, ignore, limits) = (
            request.path.clone(),
            request.ignore.clone(),
            self.limits.tree,
        );
        let mut artifact = blocking(move || {
            let _in_use = in_use;
            read_artifact(&repo_dir, &selection, &path, &ignore, limits)
        })
        .await?;
        tracing::debug!(owner = request.owner, "read the revision");
        artifact.fetched = fetched.is_some();
        Ok(artifact)
    }

    /// `<readable repository>-<digest>`: readable for operators; the digest covers who is
    /// asked ([`RepositoryUrl::identity_key`]) and every piece of credential material (Secret
    /// and URL), so requests share an entry, its listing and its objects only when they would
    /// have been answered alike.
    fn entry_name(&self, url: &RepositoryUrl, credentials: Option<&Credentials>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.identity_salt)
            .expect("HMAC takes keys of any length");
        let mut field = |tag: &str, value: Option<&[u8]>| {
            mac.update(tag.as_bytes());
            match value {
                Some(value) => {
                    mac.update(&[1]);
                    mac.update(&(value.len() as u64).to_be_bytes());
                    mac.update(value);
                }
                None => mac.update(&[0]),
            }
        };
        field("identity", Some(url.identity_key().as_bytes()));
        let embedded = url.embedded_credentials();
        field(
            "url-user",
            embedded.as_ref().map(|(user, _)| user.as_bytes()),
        );
        field(
            "url-password",
            embedded.as_ref().map(|(_, pw)| pw.as_bytes()),
        );
        let basic = credentials.and_then(|c| c.basic.as_ref());
        field("username", basic.map(|(user, _)| user.as_bytes()));
        field("password", basic.map(|(_, password)| password.as_bytes()));
        let bearer = credentials.and_then(|c| c.bearer_token.as_deref());
        field("bearer", bearer.map(str::as_bytes));
        field("ca", credentials.and_then(|c| c.ca_pem.as_deref()));
        let ssh = credentials.and_then(|c| c.ssh.as_ref());
        field("identity-key", ssh.map(|s| s.identity.as_bytes()));
        let passphrase = ssh.and_then(|s| s.passphrase.as_deref());
        field("passphrase", passphrase.map(str::as_bytes));
        field("known-hosts", ssh.map(|s| s.known_hosts.as_bytes()));
        let digest = mac.finalize().into_bytes();
        let digest: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        let readable: String = url
            .cache_key()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        format!("{readable}-{digest}")
    }
}

/// libgit2 may quote the URL it was handed, and an scp-like URL goes to it as written.
fn scrubbed(url: &RepositoryUrl, kind: SourceErrorKind) -> SourceErrorKind {
    match kind {
        SourceErrorKind::Git(message) => SourceErrorKind::Git(url.scrub(&message)),
        SourceErrorKind::Certificate(message) => SourceErrorKind::Certificate(url.scrub(&message)),
        SourceErrorKind::CommitNotFound(message) => {
            SourceErrorKind::CommitNotFound(url.scrub(&message))
        }
        other => other,
    }
}

fn failure(request: &ArtifactRequest, url: &str, kind: SourceErrorKind) -> SourceError {
    SourceError {
        owner: request.owner.clone(),
        url: url.to_owned(),
        kind,
    }
}

/// Tells the blocking git work to stop at its next callback once the request is dropped or
/// times out.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// libgit2 calls block: run them on tokio's blocking pool so no async worker stalls.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceErrorKind> + Send + 'static,
) -> Result<T, SourceErrorKind> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(SourceErrorKind::Git(format!("git worker failed: {e}"))))
}

/// The owned inputs of blocking git work (a `Repository` is not `Sync`, so each blocking call
/// opens its own handle).
#[derive(Clone)]
struct Job {
    url: RepositoryUrl,
    credentials: Option<Credentials>,
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
    max_pack_bytes: u64,
    repo_dir: PathBuf,
    /// Keeps the cache entry from eviction while this work runs.
    _in_use: InUse,
}

impl Job {
    fn conversation(&self) -> Conversation<'_> {
        Conversation::new(
            &self.url,
            self.credentials.as_ref(),
            self.deadline,
            self.cancelled.clone(),
            self.max_pack_bytes,
        )
    }

    /// Lists the refs and, on the same connection, fetches the chosen commit unless it is
    /// cached. The listing comes back even when no commit could be chosen or fetched: requests
    /// waiting on the same entry may want another ref of it.
    fn list_and_fetch(
        &self,
        reference: Option<&GitReference>,
    ) -> Result<(Answered, Result<Chosen, SourceErrorKind>), SourceErrorKind> {
        let repo = open_or_init(&self.repo_dir)?;
        let conversation = self.conversation();
        let started = Instant::now();
        let listed = conversation.list(&repo)?;
        let listing = Answered {
            started,
            at: Instant::now(),
            advertisement: listed.advertisement.clone(),
        };
        let chosen = choose(&listing.advertisement, reference).and_then(|selection| {
            let fetched = self.fetch_unless_cached(&selection, Some((&repo, listed)))?;
            Ok((selection, fetched))
        });
        Ok((listing, chosen))
    }

    /// Fetches the selection unless its commit is already cached, over `listed`'s connection
    /// when there is one; returns the bytes received when it fetched.
    fn fetch_unless_cached(
        &self,
        selection: &Selection,
        listed: Option<(&Repository, Listed<'_, '_>)>,
    ) -> Result<Option<u64>, SourceErrorKind> {
        let opened;
        let (repo, listed) = match listed {
            Some((repo, listed)) => (repo, Some(listed)),
            None => {
                opened = open_or_init(&self.repo_dir)?;
                (&opened, None)
            }
        };
        eviction::mark_used(&self.repo_dir);
        let oid = Oid::from_str(&selection.oid)?;
        if repo.find_commit(oid).is_ok() {
            return listed.map_or(Ok(()), Listed::close).map(|()| None);
        }
        let refspecs = match &selection.refspec {
            Some(name) => vec![format!("+{name}:{name}")],
            None => vec![format!(
                "+{}:refs/driftless/commits/{}",
                selection.oid, selection.oid
            )],
        };
        let mut received = self.fetch_refspecs(repo, &refspecs, selection, listed)?;
        if repo.find_commit(oid).is_err() {
            // A pinned commit behind its branch's tip: ask for the commit itself.
            let by_id = vec![format!(
                "+{}:refs/driftless/commits/{}",
                selection.oid, selection.oid
            )];
            received += self.fetch_refspecs(repo, &by_id, selection, None)?;
        }
        if repo.find_commit(oid).is_err() {
            return Err(SourceErrorKind::CommitNotFound(selection.oid.clone()));
        }
        Ok(Some(received))
    }
}

impl Job {
    /// Fetching a commit by id fails with a protocol error when the server does not have it;
    /// say that instead.
    fn fetch_refspecs(
        &self,
        repo: &Repository,
        refspecs: &[String],
        selection: &Selection,
        listed: Option<Listed<'_, '_>>,
    ) -> Result<u64, SourceErrorKind> {
        let by_id = refspecs
            .iter()
            .all(|r| r.starts_with(&format!("+{}", selection.oid)));
        let fetched = match listed {
            Some(listed) => listed.fetch(refspecs),
            None => self.conversation().fetch(repo, refspecs),
        };
        match fetched {
            Err(SourceErrorKind::Git(reason)) if by_id => Err(SourceErrorKind::CommitNotFound(
                format!("{} ({reason})", selection.oid),
            )),
            other => other,
        }
    }
}

/// The commit chosen, and the bytes received when it had to be fetched.
type Chosen = (Selection, Option<u64>);

/// The commit `reference` names among the advertised refs.
fn choose(
    advertisement: &Advertisement,
    reference: Option<&GitReference>,
) -> Result<Selection, SourceErrorKind> {
    if advertisement.refs.is_empty() {
        return Err(SourceErrorKind::EmptyRepository);
    }
    Ok(select::select(
        &advertisement.refs,
        advertisement.default_branch.as_deref(),
        reference,
    )?)
}

fn open_or_init(dir: &Path) -> Result<Repository, SourceErrorKind> {
    match Repository::open_bare(dir) {
        Ok(repo) => Ok(repo),
        Err(_) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| SourceErrorKind::Cache(format!("{}: {e}", dir.display())))?;
            Ok(Repository::init_bare(dir)?)
        }
    }
}

/// A commit of a repository on this machine (a checkout or a bare repository), read by the
/// same tree rules as a fetched revision, for the command line: `revision` is anything git
/// resolves to a commit (a branch, a tag, a SHA, `HEAD`).
pub fn read_local_revision(
    dir: &Path,
    revision: &str,
    path: &str,
    ignore: &[String],
    limits: TreeLimits,
) -> Result<Artifact, SourceErrorKind> {
    let repo = Repository::discover(dir)?;
    let commit = repo.revparse_single(revision)?.peel_to_commit()?;
    let oid = commit.id().to_string();
    let selection = Selection {
        refspec: None,
        revision: format!("{revision}@sha1:{oid}"),
        oid,
    };
    read_artifact(repo.path(), &selection, path, ignore, limits)
}

fn read_artifact(
    repo_dir: &Path,
    selection: &Selection,
    path: &str,
    ignore: &[String],
    limits: TreeLimits,
) -> Result<Artifact, SourceErrorKind> {
    let repo = Repository::open_bare(repo_dir)?;
    let oid = Oid::from_str(&selection.oid)?;
    let commit = repo.find_commit(oid)?;
    let commit_time = jiff::Timestamp::from_second(commit.time().seconds())
        .map(|t| t.to_string())
        .unwrap_or_default();
    // The whole tree, not only `path`: a renderer may read a base beside it.
    tree::check_tree(&repo, commit.tree_id(), limits)?;
    let tree = tree::read_manifest_files(&repo, oid, path, ignore, limits)?;
    let snapshot = Snapshot {
        repo_dir: repo_dir.to_owned(),
        commit: selection.oid.clone(),
        tree: commit.tree_id().to_string(),
        ignore: ignore.to_vec(),
    };
    Ok(Artifact {
        revision: selection.revision.clone(),
        commit: selection.oid.clone(),
        commit_time,
        files: tree.files,
        skipped: tree.skipped,
        fetched: false,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use credentials::SshCredentials;

    fn name(engine: &SourceEngine, url: &str, credentials: Option<&Credentials>) -> String {
        engine.entry_name(&RepositoryUrl::parse(url).unwrap(), credentials)
    }

    fn basic(user: &str, password: &str) -> Credentials {
        Credentials {
            basic: Some((user.into(), password.into())),
            ..Default::default()
        }
    }

    fn ssh(known_hosts: &str) -> Credentials {
        Credentials {
            ssh: Some(SshCredentials {
                identity: "KEY".into(),
                passphrase: None,
                known_hosts: known_hosts.into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn entries_are_shared_only_by_the_same_repository_and_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SourceEngine::new(dir.path(), Limits::default(), Duration::from_secs(5));
        let url = "https://git.example.com/org/repo.git";
        let right = basic("deployer", "right");
        let anonymous = name(&engine, url, None);
        let authenticated = name(&engine, url, Some(&right));

        assert_eq!(
            authenticated,
            name(
                &engine,
                "https://GIT.example.com/org/repo/",
                Some(&right.clone())
            ),
            "one repository and the same credentials share an entry"
        );
        let others = [
            anonymous.clone(),
            name(&engine, url, Some(&basic("deployer", "wrong"))),
            name(&engine, url, Some(&basic("other", "right"))),
            name(&engine, "http://git.example.com/org/repo.git", Some(&right)),
            name(
                &engine,
                "https://deployer:right@git.example.com/org/repo",
                None,
            ),
            name(
                &engine,
                url,
                Some(&Credentials {
                    bearer_token: Some("token".into()),
                    ..Default::default()
                }),
            ),
            name(
                &engine,
                url,
                Some(&Credentials {
                    ca_pem: Some(b"PEM".to_vec()),
                    ..right.clone()
                }),
            ),
        ];
        for (index, other) in others.iter().enumerate() {
            assert_ne!(&authenticated, other, "case {index}");
        }
        assert_ne!(anonymous, others[4], "URL credentials count too");

        let alice = name(
            &engine,
            "ssh://alice@git.example.com/org/repo",
            Some(&ssh("h k")),
        );
        let bob = name(
            &engine,
            "ssh://bob@git.example.com/org/repo",
            Some(&ssh("h k")),
        );
        assert_ne!(alice, bob, "SSH users are different identities");
        assert_eq!(
            name(
                &engine,
                "git@git.example.com:org/repo.git",
                Some(&ssh("h k"))
            ),
            name(
                &engine,
                "ssh://git@git.example.com/org/repo",
                Some(&ssh("h k"))
            ),
        );
        assert_ne!(
            name(&engine, "git@git.example.com:org/repo", Some(&ssh("h k"))),
            name(
                &engine,
                "git@git.example.com:org/repo",
                Some(&ssh("other k"))
            ),
        );
    }

    #[test]
    fn artifact_requests_print_their_url_redacted() {
        for url in [
            "https://deployer:hunter2@git.example.com/org/repo.git",
            "https://deployer:hun/ter2@git.example.com/org/repo.git",
        ] {
            let request = ArtifactRequest {
                owner: "team-a/app".into(),
                url: url.into(),
                reference: None,
                path: String::new(),
                ignore: vec![],
                credentials: Some(basic("deployer", "hunter2")),
                timeout: Duration::from_secs(1),
                listed_after: None,
            };
            let printed = format!("{request:?}");
            assert!(
                !printed.contains("hunter2") && !printed.contains("ter2"),
                "{printed}"
            );
        }
    }

    #[test]
    fn entry_names_are_readable_and_hold_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SourceEngine::new(dir.path(), Limits::default(), Duration::from_secs(5));
        let entry = name(
            &engine,
            "https://deployer:hunter2@git.example.com/org/repo.git",
            Some(&basic("deployer", "hunter2")),
        );
        assert!(entry.starts_with("git.example.com_org_repo-"), "{entry}");
        assert!(
            !entry.contains("hunter2") && !entry.contains("deployer"),
            "{entry}"
        );
        let again = SourceEngine::new(dir.path(), Limits::default(), Duration::from_secs(5));
        assert_eq!(
            name(&again, "https://git.example.com/org/repo.git", None),
            name(&engine, "https://git.example.com/org/repo.git", None),
            "names survive a restart"
        );
        let elsewhere = tempfile::tempdir().unwrap();
        let other = SourceEngine::new(elsewhere.path(), Limits::default(), Duration::from_secs(5));
        assert_ne!(
            name(&other, "https://git.example.com/org/repo.git", None),
            name(&engine, "https://git.example.com/org/repo.git", None),
            "each cache keys its digests differently"
        );
    }
}

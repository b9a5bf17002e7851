//! Fetching revisions of Git repositories with libgit2 and reading their manifest files.
//!
//! [`SourceEngine`] keeps a persistent cache of bare repositories, one per normalized URL, so
//! every spelling of a repository (https, ssh, scp-like, with or without `.git`) shares one
//! entry. Work is "resolve first, fetch second": the remote's refs are listed (one round trip),
//! and objects are fetched, shallow and without tags, only when the wanted commit is not cached
//! yet. Requests for one URL are serialized and coalesced: a request that waited while another
//! listed the refs reuses that answer instead of asking the server again.

pub mod credentials;
mod error;
pub mod known_hosts;
pub mod select;
pub mod snapshot;
mod tls;
mod transport;
pub mod tree;
pub mod url;

use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use git2::{Oid, Repository};

pub use credentials::Credentials;
pub use error::{SourceError, SourceErrorKind};
pub use snapshot::Snapshot;
pub use tree::{ManifestFile, TreeLimits};

use crate::api::GitReference;
use select::Selection;
use transport::{Advertisement, Conversation};
use url::RepositoryUrl;

/// Limits on what one fetch may transfer and hand on.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Bytes a single fetch may receive.
    pub max_pack_bytes: u64,
    /// Bounds on the manifest files read from a revision.
    pub tree: TreeLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_pack_bytes: 512 * 1024 * 1024,
            tree: TreeLimits {
                max_file_bytes: 4 * 1024 * 1024,
                max_total_bytes: 64 * 1024 * 1024,
                max_files: 10_000,
            },
        }
    }
}

/// What to fetch, for whom.
#[derive(Clone, Debug)]
pub struct FetchRequest {
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
    /// Symlinks and submodules under the path, reported and not followed.
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

/// The refs a URL advertised, and when that answer was complete.
struct Answered {
    at: Instant,
    advertisement: Advertisement,
}

/// The persistent repository cache and the per-URL coordination around it.
pub struct SourceEngine {
    cache_dir: PathBuf,
    limits: Limits,
    urls: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Answered>>>>>,
    stats: Arc<SourceStats>,
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
        Self {
            cache_dir: cache_dir.into(),
            limits,
            urls: Mutex::default(),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }

    /// Resolves the request's ref, fetches it when the cache lacks it, and reads the manifest
    /// files under its path.
    pub async fn fetch(&self, request: &FetchRequest) -> Result<Artifact, SourceError> {
        let url = RepositoryUrl::parse(&request.url)
            .map_err(|e| failure(request, &request.url, e.into()))?;
        let fail = |kind: SourceErrorKind| failure(request, &url.redacted(), kind);
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
        request: &FetchRequest,
        url: RepositoryUrl,
        cancelled: Arc<AtomicBool>,
    ) -> Result<Artifact, SourceErrorKind> {
        let asked_at = Instant::now();
        let deadline = asked_at + request.timeout;
        let slot = self.slot(&url.cache_key());
        let mut answered = slot.lock().await;
        let repo_dir = self.repository_dir(&url);
        let job = Job {
            url,
            credentials: request.credentials.clone(),
            deadline,
            cancelled,
            max_pack_bytes: self.limits.max_pack_bytes,
            repo_dir: repo_dir.clone(),
        };

        let advertisement = match answered.as_ref() {
            Some(previous) if previous.at >= asked_at => previous.advertisement.clone(),
            _ => {
                let advertisement = blocking({
                    let job = job.clone();
                    move || job.advertise()
                })
                .await?;
                self.stats.advertisements.fetch_add(1, Ordering::Relaxed);
                *answered = Some(Answered {
                    at: Instant::now(),
                    advertisement: advertisement.clone(),
                });
                advertisement
            }
        };
        if advertisement.refs.is_empty() {
            return Err(SourceErrorKind::EmptyRepository);
        }
        let selection = select::select(
            &advertisement.refs,
            advertisement.default_branch.as_deref(),
            request.reference.as_ref(),
        )?;

        let fetched = blocking({
            let (job, selection) = (job.clone(), selection.clone());
            move || job.fetch_unless_cached(&selection)
        })
        .await?;
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
        let mut artifact =
            blocking(move || read_artifact(&repo_dir, &selection, &path, &ignore, limits)).await?;
        artifact.fetched = fetched.is_some();
        Ok(artifact)
    }

    fn slot(&self, key: &str) -> Arc<tokio::sync::Mutex<Option<Answered>>> {
        let mut urls = self.urls.lock().expect("the URL table is never poisoned");
        urls.entry(key.to_owned()).or_default().clone()
    }

    /// `<cache>/<readable key>-<hash>`: readable for operators, unique for every key.
    fn repository_dir(&self, url: &RepositoryUrl) -> PathBuf {
        let key = url.cache_key();
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let readable: String = key
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
        self.cache_dir
            .join(format!("{readable}-{:016x}", hasher.finish()))
    }
}

fn failure(request: &FetchRequest, url: &str, kind: SourceErrorKind) -> SourceError {
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

    fn advertise(&self) -> Result<Advertisement, SourceErrorKind> {
        let repo = open_or_init(&self.repo_dir)?;
        self.conversation().advertise(&repo)
    }

    /// Fetches the selection unless its commit is already cached; returns the bytes received
    /// when it fetched.
    fn fetch_unless_cached(&self, selection: &Selection) -> Result<Option<u64>, SourceErrorKind> {
        let repo = open_or_init(&self.repo_dir)?;
        let oid = Oid::from_str(&selection.oid)?;
        if repo.find_commit(oid).is_ok() {
            return Ok(None);
        }
        let refspecs = match &selection.refspec {
            Some(name) => vec![format!("+{name}:{name}")],
            None => vec![format!(
                "+{}:refs/driftless/commits/{}",
                selection.oid, selection.oid
            )],
        };
        let mut received = self.fetch_refspecs(&repo, &refspecs, selection)?;
        if repo.find_commit(oid).is_err() {
            // A pinned commit behind its branch's tip: ask for the commit itself.
            let by_id = vec![format!(
                "+{}:refs/driftless/commits/{}",
                selection.oid, selection.oid
            )];
            received += self.fetch_refspecs(&repo, &by_id, selection)?;
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
    ) -> Result<u64, SourceErrorKind> {
        let by_id = refspecs
            .iter()
            .all(|r| r.starts_with(&format!("+{}", selection.oid)));
        match self.conversation().fetch(repo, refspecs) {
            Err(SourceErrorKind::Git(reason)) if by_id => Err(SourceErrorKind::CommitNotFound(
                format!("{} ({reason})", selection.oid),
            )),
            other => other,
        }
    }
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

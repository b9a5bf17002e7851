//! Keeping the repository cache bounded: entries unused for longer than a maximum age, and the
//! least recently used ones while the cache is over its size bound, are deleted. An entry is
//! deleted only while its slot is held exclusively, so never under a request that uses it; a
//! request that comes later fetches it again.

use std::{
    io::Read,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use tracing::{info, warn};

use super::SourceEngine;

/// File in each entry whose modification time says when a request last used it; it survives
/// restarts, unlike anything kept in memory.
const LAST_USED_MARKER: &str = "driftless-last-used";

/// File in the cache directory holding the key of the credential digests in entry names.
const SALT_FILE: &str = ".identity-salt";

/// How often the controller looks for entries to evict.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(300);

/// When cache entries are evicted; zero turns a bound off.
#[derive(Clone, Copy, Debug)]
pub struct CacheLimits {
    /// Entries no request used for this long are deleted.
    pub max_age: Duration,
    /// While all entries together take more bytes than this, the least recently used ones are
    /// deleted.
    pub max_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(24 * 60 * 60),
            max_bytes: 0,
        }
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EvictionReport {
    /// Names of the deleted entries.
    pub evicted: Vec<String>,
    pub bytes_freed: u64,
    /// Entries that were due but in use, and kept.
    pub kept_in_use: Vec<String>,
    /// Bytes of the entries left.
    pub bytes_left: u64,
}

/// One cache entry as found on disk.
struct Entry {
    name: String,
    path: PathBuf,
    last_used: SystemTime,
    bytes: u64,
}

impl SourceEngine {
    /// Evicts entries over the age or size bound, now; entries in use are kept.
    pub async fn evict_unused(&self) -> EvictionReport {
        let limits = self.limits.cache;
        let cache_dir = self.cache_dir.clone();
        let entries = tokio::task::spawn_blocking(move || scan(&cache_dir))
            .await
            .unwrap_or_default();
        let mut report = EvictionReport::default();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let now = SystemTime::now();
        // Oldest first, so the size bound takes the least recently used.
        for entry in entries {
            let age = now.duration_since(entry.last_used).unwrap_or_default();
            let too_old = !limits.max_age.is_zero() && age > limits.max_age;
            let too_big = limits.max_bytes != 0 && total > limits.max_bytes;
            if !(too_old || too_big) {
                continue;
            }
            if self.evict(&entry).await {
                total -= entry.bytes;
                report.bytes_freed += entry.bytes;
                report.evicted.push(entry.name);
            } else {
                report.kept_in_use.push(entry.name);
            }
        }
        report.bytes_left = total;
        report
    }

    /// Sweeps every [`SWEEP_INTERVAL`], for as long as the future is polled.
    pub async fn keep_evicting(&self) {
        let limits = self.limits.cache;
        if limits.max_age.is_zero() && limits.max_bytes == 0 {
            return;
        }
        loop {
            let report = self.evict_unused().await;
            if !report.evicted.is_empty() {
                info!(
                    evicted = ?report.evicted,
                    bytes_freed = report.bytes_freed,
                    bytes_left = report.bytes_left,
                    "evicted unused git cache entries"
                );
            }
            if limits.max_bytes != 0 && report.bytes_left > limits.max_bytes {
                warn!(
                    bytes = report.bytes_left,
                    limit = limits.max_bytes,
                    in_use = ?report.kept_in_use,
                    "the git cache is over --git-cache-max-bytes with entries in use"
                );
            }
            tokio::time::sleep(SWEEP_INTERVAL).await;
        }
    }

    /// Deletes `entry` unless a request holds it; whether it was deleted.
    async fn evict(&self, entry: &Entry) -> bool {
        let Ok(exclusive) = self.slots.get(&entry.name).try_write_owned() else {
            self.slots.release(&entry.name);
            return false;
        };
        // A request may have used it between the scan and the lock.
        let still_unused = last_used(&entry.path) <= entry.last_used;
        let path = entry.path.clone();
        let deleted = still_unused && tokio::task::spawn_blocking(move || {
            std::fs::remove_dir_all(&path)
        })
        .await
        .is_ok_and(|removed| match removed {
            Ok(()) => true,
            Err(error) => {
                warn!(entry = %entry.path.display(), %error, "cannot evict git cache entry");
                false
            }
        });
        drop(exclusive);
        self.slots.release(&entry.name);
        deleted
    }
}

/// Records that a request uses the entry at `dir`. A failure only makes the entry look older
/// than it is, which at worst costs a fetch later; it must not fail the request.
pub(super) fn mark_used(dir: &Path) {
    let marker = dir.join(LAST_USED_MARKER);
    let touched = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&marker)
        .and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(error) = touched {
        warn!(marker = %marker.display(), %error, "cannot record the use of a git cache entry");
    }
}

/// When the entry at `dir` was last used: its marker's time, else the directory's own (an
/// entry left by an older version or a crash still ages out).
fn last_used(dir: &Path) -> SystemTime {
    std::fs::metadata(dir.join(LAST_USED_MARKER))
        .or_else(|_| std::fs::metadata(dir))
        .and_then(|metadata| metadata.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The entries under `cache_dir`, least recently used first. Files and dot-directories at the
/// top level are not entries.
fn scan(cache_dir: &Path) -> Vec<Entry> {
    let Ok(listing) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut entries: Vec<Entry> = listing
        .flatten()
        .filter(|item| item.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|item| {
            let name = item.file_name().into_string().ok()?;
            if name.starts_with('.') {
                return None;
            }
            let path = item.path();
            Some(Entry {
                last_used: last_used(&path),
                bytes: bytes_under(&path),
                name,
                path,
            })
        })
        .collect();
    entries.sort_by_key(|entry| entry.last_used);
    entries
}

/// Bytes of the files under `dir`; symlinks are not followed.
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(listing) = std::fs::read_dir(&dir) else {
            continue;
        };
        for item in listing.flatten() {
            match item.metadata() {
                Ok(metadata) if metadata.is_dir() => pending.push(item.path()),
                Ok(metadata) => total += metadata.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The key of the credential digests in entry names: read from the cache, or made and stored
/// there. When the cache cannot hold it, a key for this process only still keeps names
/// unguessable; entries then just do not outlive the process.
pub(super) fn identity_salt(cache_dir: &Path) -> Vec<u8> {
    let path = cache_dir.join(SALT_FILE);
    if let Ok(salt) = std::fs::read(&path) {
        if salt.len() >= 16 {
            return salt;
        }
    }
    let salt = random_bytes();
    let stored = std::fs::create_dir_all(cache_dir).and_then(|()| {
        let temporary = cache_dir.join(format!("{SALT_FILE}.{}", std::process::id()));
        std::fs::write(&temporary, &salt)?;
        std::fs::rename(&temporary, &path)
    });
    if let Err(error) = stored {
        warn!(cache = %cache_dir.display(), %error, "cannot store the git cache's key; entries will not outlive this process");
        return salt;
    }
    // Another process may have stored its key first; use whatever won.
    std::fs::read(&path).unwrap_or(salt)
}

fn random_bytes() -> Vec<u8> {
    let mut bytes = vec![0; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if read.is_err() {
        // No kernel randomness: fall back to what differs between processes and moments.
        let seed = format!("{:?}{}{:p}", SystemTime::now(), std::process::id(), &bytes);
        use sha2::Digest;
        bytes = sha2::Sha256::digest(seed.as_bytes()).to_vec();
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_under_counts_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x"), vec![0; 100]).unwrap();
        std::fs::write(dir.path().join("y"), vec![0; 23]).unwrap();
        assert_eq!(bytes_under(dir.path()), 123);
    }

    #[test]
    fn the_salt_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = identity_salt(dir.path());
        assert_eq!(first.len(), 32);
        assert_eq!(identity_salt(dir.path()), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(identity_salt(other.path()), first);
    }

    #[test]
    fn scan_lists_entries_oldest_first_and_skips_files_and_dot_directories() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["old", "new", ".hidden"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("file"), b"x").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        mark_used(&dir.path().join("old"));
        std::fs::File::options()
            .write(true)
            .open(dir.path().join("old").join(LAST_USED_MARKER))
            .unwrap()
            .set_modified(old)
            .unwrap();
        mark_used(&dir.path().join("new"));
        let names: Vec<String> = scan(dir.path()).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["old", "new"]);
    }
}

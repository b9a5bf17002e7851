//! Git fetches on a repository with a long history: driftless's source engine against git's
//! own client (no-change check, incremental fetch after one commit, fresh fetch).

use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use anyhow::Result;
use driftless::source::{ArtifactRequest, Limits, SourceEngine};
use serde_json::{Value, json};

use crate::{
    common::{fast_import_data, git},
    millis, row, summary,
    support::git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
};

/// Commits in the history of the git scenarios' repository.
pub const HISTORY: usize = 5_000;
/// Manifest files the repository's tree holds (each commit changes one of them).
pub const TREE_FILES: usize = 50;

fn manifest(file: usize, revision: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{file:02}\ndata:\n  revision: \"{revision}\"\n  \
         owner: team-a\n  description: configuration file {file} of the benchmark repository, \
         changed by commit {revision}\n"
    )
}

/// Appends `count` commits to `main` with `git fast-import` (one changed file each; the first
/// commit of an empty repository writes the whole tree). Returns the new tip.
fn add_commits(repo: &Path, start: usize, count: usize) -> Result<String> {
    let mut stream = Vec::new();
    for n in start..start + count {
        stream.extend_from_slice(b"commit refs/heads/main\n");
        let time = 1_700_000_000 + n as u64 * 60;
        stream.extend_from_slice(
            format!("committer bench <bench@driftless.invalid> {time} +0000\n").as_bytes(),
        );
        fast_import_data(&mut stream, &format!("commit {n}"));
        if n == start && start > 0 {
            stream.extend_from_slice(b"from refs/heads/main^0\n");
        }
        if n == 0 {
            for file in 0..TREE_FILES {
                stream.extend_from_slice(
                    format!("M 100644 inline deploy/app-{file:02}.yaml\n").as_bytes(),
                );
                fast_import_data(&mut stream, &manifest(file, 0));
            }
        } else {
            let file = n % TREE_FILES;
            stream.extend_from_slice(
                format!("M 100644 inline deploy/app-{file:02}.yaml\n").as_bytes(),
            );
            fast_import_data(&mut stream, &manifest(file, n));
        }
        stream.push(b'\n');
    }
    git(repo, &["fast-import", "--quiet"], Some(&stream))?;
    git(repo, &["rev-parse", "refs/heads/main"], None)
}

/// Bytes of the pack files under a repository's `objects/pack` (git's received packs).
fn pack_bytes(git_dir: &Path) -> u64 {
    std::fs::read_dir(git_dir.join("objects/pack"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

pub fn artifact_request(owner: &str, url: &str) -> ArtifactRequest {
    ArtifactRequest {
        owner: owner.into(),
        url: url.into(),
        reference: None,
        path: "deploy".into(),
        ignore: vec![],
        credentials: None,
        timeout: Duration::from_secs(120),
        listed_after: None,
    }
}

pub fn engine_in(dir: &Path) -> SourceEngine {
    SourceEngine::new(dir, Limits::default(), Duration::from_secs(30))
}

/// The long-history repository, served over smart HTTP by `git http-backend`.
pub struct Served {
    _repos: GitRepos,
    pub repo: TestRepo,
    pub server: HttpGitServer,
    commits: usize,
}

pub fn serve_history() -> Result<Served> {
    let repos = GitRepos::new();
    let repo = repos.create("history");
    let started = Instant::now();
    add_commits(repo.path(), 0, HISTORY)?;
    eprintln!(
        "built {HISTORY} commits with git fast-import in {:.1} s ({} KiB packed)",
        started.elapsed().as_secs_f64(),
        pack_bytes(repo.path()) / 1024
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    Ok(Served {
        _repos: repos,
        repo,
        server,
        commits: HISTORY,
    })
}

pub async fn scenario() -> Result<Value> {
    let mut served = serve_history()?;
    let url = served.server.url_for(&served.repo);
    let scratch = tempfile::tempdir()?;
    const RUNS: usize = 5;

    // Fresh shallow fetch: an empty cache each time (first run is the warm-up).
    let mut shallow_ms = Vec::new();
    let mut shallow_bytes = Vec::new();
    let mut engine = None;
    for run in 0..=RUNS {
        let dir = scratch.path().join(format!("driftless-fresh-{run}"));
        let fresh = engine_in(&dir);
        let started = Instant::now();
        let artifact = fresh
            .artifact(&artifact_request("bench/fresh", &url))
            .await?;
        let elapsed = started.elapsed();
        assert!(artifact.fetched && artifact.files.len() == TREE_FILES);
        if run > 0 {
            shallow_ms.push(millis(elapsed));
            shallow_bytes.push(fresh.stats().bytes_received.load(Ordering::Relaxed) as f64);
        }
        engine = Some(fresh);
    }
    let engine = engine.unwrap();

    // git CLI: full clone and shallow clone, bytes = received pack files.
    let mut full_ms = Vec::new();
    let mut full_bytes = Vec::new();
    let mut depth1_ms = Vec::new();
    let mut depth1_bytes = Vec::new();
    for run in 0..=RUNS {
        let full = scratch.path().join(format!("git-full-{run}.git"));
        let started = Instant::now();
        git(
            scratch.path(),
            &["clone", "--quiet", "--bare", &url, full.to_str().unwrap()],
            None,
        )?;
        let elapsed = started.elapsed();
        if run > 0 {
            full_ms.push(millis(elapsed));
            full_bytes.push(pack_bytes(&full) as f64);
        }
        let shallow = scratch.path().join(format!("git-depth1-{run}.git"));
        let started = Instant::now();
        git(
            scratch.path(),
            &[
                "clone",
                "--quiet",
                "--bare",
                "--depth=1",
                "--single-branch",
                &url,
                shallow.to_str().unwrap(),
            ],
            None,
        )?;
        let elapsed = started.elapsed();
        if run > 0 {
            depth1_ms.push(millis(elapsed));
            depth1_bytes.push(pack_bytes(&shallow) as f64);
        }
    }
    // The clone the git baseline keeps fetching into, as a poll-with-git loop would.
    let clone = scratch.path().join("git-full-1.git");
    let refspec = "+refs/heads/main:refs/heads/main";
    let git_fetch = |clone: &Path| {
        git(
            clone,
            &[
                "-c",
                "fetch.unpackLimit=1",
                "fetch",
                "--quiet",
                "--no-tags",
                &url,
                refspec,
            ],
            None,
        )
    };

    // No-change check.
    const NO_CHANGE_RUNS: usize = 10;
    let mut unchanged_ms = Vec::new();
    let mut unchanged_bytes = Vec::new();
    let mut git_unchanged_ms = Vec::new();
    let mut git_unchanged_bytes = Vec::new();
    for run in 0..=NO_CHANGE_RUNS {
        let before = engine.stats().bytes_received.load(Ordering::Relaxed);
        let started = Instant::now();
        let artifact = engine
            .artifact(&artifact_request("bench/check", &url))
            .await?;
        let elapsed = started.elapsed();
        assert!(!artifact.fetched, "nothing changed, so nothing is fetched");
        let received = engine.stats().bytes_received.load(Ordering::Relaxed) - before;
        let packs_before = pack_bytes(&clone);
        let started = Instant::now();
        git_fetch(&clone)?;
        let git_elapsed = started.elapsed();
        if run > 0 {
            unchanged_ms.push(millis(elapsed));
            unchanged_bytes.push(received as f64);
            git_unchanged_ms.push(millis(git_elapsed));
            git_unchanged_bytes.push((pack_bytes(&clone) - packs_before) as f64);
        }
    }

    // Incremental fetch after one commit (the same commit for both).
    let mut incremental_ms = Vec::new();
    let mut incremental_bytes = Vec::new();
    let mut git_incremental_ms = Vec::new();
    let mut git_incremental_bytes = Vec::new();
    for run in 0..=RUNS {
        let tip = add_commits(served.repo.path(), served.commits, 1)?;
        served.commits += 1;
        let before = engine.stats().bytes_received.load(Ordering::Relaxed);
        let started = Instant::now();
        let artifact = engine
            .artifact(&artifact_request("bench/incremental", &url))
            .await?;
        let elapsed = started.elapsed();
        assert!(artifact.fetched && artifact.commit == tip);
        let received = engine.stats().bytes_received.load(Ordering::Relaxed) - before;
        let packs_before = pack_bytes(&clone);
        let started = Instant::now();
        git_fetch(&clone)?;
        let git_elapsed = started.elapsed();
        if run > 0 {
            incremental_ms.push(millis(elapsed));
            incremental_bytes.push(received as f64);
            git_incremental_ms.push(millis(git_elapsed));
            git_incremental_bytes.push((pack_bytes(&clone) - packs_before) as f64);
        }
    }

    Ok(json!({
        "title": format!("Git fetches on a {HISTORY}-commit repository ({TREE_FILES} manifest files), smart HTTP on loopback"),
        "driftless": "`SourceEngine::fetch` (libgit2: ref listing, then a depth-1 fetch of the one ref only when its commit is not cached)",
        "baseline": "the git CLI: `git clone --bare` (full) / `--depth=1`, and `git fetch` of `main` into the full clone",
        "rows": [
            row("no-change check: time", summary(&unchanged_ms, 1), summary(&git_unchanged_ms, 1), "ms"),
            row("no-change check: bytes received", summary(&unchanged_bytes, 0), summary(&git_unchanged_bytes, 0), "B"),
            row("incremental after 1 commit: time", summary(&incremental_ms, 1), summary(&git_incremental_ms, 1), "ms"),
            row("incremental after 1 commit: bytes", summary(&incremental_bytes, 0), summary(&git_incremental_bytes, 0), "B"),
            row("fresh fetch vs full clone: time", summary(&shallow_ms, 1), summary(&full_ms, 1), "ms"),
            row("fresh fetch vs full clone: bytes", summary(&shallow_bytes, 0), summary(&full_bytes, 0), "B"),
            row("fresh fetch vs `git clone --depth=1`: time", summary(&shallow_ms, 1), summary(&depth1_ms, 1), "ms"),
            row("fresh fetch vs `git clone --depth=1`: bytes", summary(&shallow_bytes, 0), summary(&depth1_bytes, 0), "B"),
        ],
        "notes": [
            "driftless bytes: libgit2's received-bytes counter (`SourceStats::bytes_received`); git bytes: size of the pack files git stored (`fetch.unpackLimit=1` keeps even a one-object fetch as a pack).",
            format!("Each figure: {RUNS} runs after one warm-up ({NO_CHANGE_RUNS} for the no-change check); the fresh fetch uses an empty cache each run."),
        ],
    }))
}

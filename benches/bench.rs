//! `make bench`: driftless and its baselines side by side, on the real test cluster and real git
//! servers (see BENCHMARKS.md).
//!
//! `cargo bench --bench bench` runs every scenario, each in a child process of its own so that the
//! peak RSS (`VmHWM`) reported for a scenario is that scenario's; `cargo bench --bench bench --
//! SCENARIO` runs one. Each scenario writes `bench-results/<scenario>.json`; the parent merges
//! them into `bench-results/latest.json` and `bench-results/latest.md` (the tables of
//! BENCHMARKS.md) and prints the tables.

#[path = "scenarios/helm.rs"]
mod helm;
#[path = "scenarios/push.rs"]
mod push;
#[path = "scenarios/receiver.rs"]
mod receiver;
#[path = "scenarios/scale.rs"]
mod scale;
#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use driftless::{
    apply::{Applier, ApplyOptions, DesiredObject},
    manifests::{Budget, read_manifests},
    source::{FetchRequest, Limits, SourceEngine},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use serde_json::{Value, json};
use support::git::{GitRepos, HttpGitServer, HttpOptions, TestRepo};

/// Every scenario, in the order `make bench` runs them.
const SCENARIOS: [&str; 7] = [
    "git", "coalesce", "apply", "push", "receiver", "scale", "helm",
];

/// Commits in the history of the git scenarios' repository.
const HISTORY: usize = 5_000;
/// Manifest files the repository's tree holds (each commit changes one of them).
const TREE_FILES: usize = 50;
/// Objects of the apply scenarios.
const OBJECTS: usize = 1_000;
/// GitRepositories sharing one URL in the coalescing scenario.
const SHARERS: usize = 50;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; anything else not starting with `-` names a scenario.
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let child = std::env::var_os("DRIFTLESS_BENCH_CHILD").is_some();
    if !child && !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets without `--bench`: measuring there would
        // slow the test suite down and overwrite the results, so only say how to run it.
        println!("benchmarks run with `make bench` (cargo bench --bench bench); skipped");
        return Ok(());
    }
    let out_dir = results_dir();
    std::fs::create_dir_all(&out_dir)?;
    if child {
        let [scenario] = wanted.as_slice() else {
            bail!("a child runs exactly one scenario");
        };
        return run_child(scenario, &out_dir);
    }
    let scenarios: Vec<String> = if wanted.is_empty() {
        SCENARIOS.iter().map(|s| s.to_string()).collect()
    } else {
        wanted
    };
    for scenario in &scenarios {
        if !SCENARIOS.contains(&scenario.as_str()) {
            bail!("unknown scenario {scenario:?}; known: {SCENARIOS:?}");
        }
    }
    for scenario in &scenarios {
        eprintln!("== bench scenario {scenario}");
        let status = Command::new(std::env::current_exe()?)
            .arg(scenario)
            .env("DRIFTLESS_BENCH_CHILD", "1")
            .status()?;
        if !status.success() {
            bail!("scenario {scenario} failed ({status})");
        }
    }
    merge(&out_dir)
}

fn results_dir() -> PathBuf {
    std::env::var_os("DRIFTLESS_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench-results"))
}

fn run_child(scenario: &str, out_dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let result = runtime.block_on(async {
        match scenario {
            "git" => git_scenario().await,
            "coalesce" => coalesce_scenario().await,
            "apply" => apply_scenario().await,
            "push" => push::push_scenario().await,
            "receiver" => receiver::receiver_scenario().await,
            "scale" => scale::scenario().await,
            "helm" => helm::helm_scenario().await,
            other => bail!("unknown scenario {other}"),
        }
    })?;
    let mut result = result;
    result["scenario"] = json!(scenario);
    result["bench_process_peak_rss_mib"] = json!(peak_rss_mib());
    result["wall_seconds"] = json!(round(started.elapsed().as_secs_f64(), 1));
    let path = out_dir.join(format!("{scenario}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&result)? + "\n")?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics and output

/// min/median/max (and p99 once there are enough runs) of `samples`, rounded.
fn summary(samples: &[f64], digits: i32) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return json!(null);
    }
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let mut value = json!({
        "runs": n,
        "min": rounded(sorted[0], digits),
        "median": rounded(median, digits),
        "max": rounded(sorted[n - 1], digits),
    });
    if n >= 20 {
        let index = ((n as f64) * 0.99).ceil() as usize - 1;
        value["p99"] = rounded(sorted[index.min(n - 1)], digits);
    }
    value
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// `value` rounded, as an integer when `digits` is 0.
fn rounded(value: f64, digits: i32) -> Value {
    if digits <= 0 {
        json!(value.round() as i64)
    } else {
        json!(round(value, digits))
    }
}

fn millis(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1000.0
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    round(kib / 1024.0, 1)
}

/// One row of a table: a metric, driftless's figure, the baseline's, and their ratio.
fn row(metric: &str, driftless: Value, baseline: Value, unit: &str) -> Value {
    let median = |v: &Value| v.get("median").and_then(Value::as_f64).or(v.as_f64());
    let ratio = match (median(&driftless), median(&baseline)) {
        (Some(d), Some(b)) if d > 0.0 => json!(round(b / d, 1)),
        (Some(d), Some(b)) if d == 0.0 && b > 0.0 => json!("∞"),
        _ => json!(null),
    };
    json!({"metric": metric, "unit": unit, "driftless": driftless, "baseline": baseline,
           "baseline_over_driftless": ratio})
}

fn merge(out_dir: &Path) -> Result<()> {
    let mut scenarios = Vec::new();
    for scenario in SCENARIOS {
        let path = out_dir.join(format!("{scenario}.json"));
        if let Ok(text) = std::fs::read_to_string(&path) {
            scenarios.push(serde_json::from_str::<Value>(&text)?);
        }
    }
    let latest = json!({
        "machine": machine(),
        "versions": versions(),
        "command": "make bench",
        "scenarios": scenarios,
    });
    std::fs::write(
        out_dir.join("latest.json"),
        serde_json::to_string_pretty(&latest)? + "\n",
    )?;
    let markdown = markdown(&latest);
    std::fs::write(out_dir.join("latest.md"), &markdown)?;
    std::io::stdout().write_all(markdown.as_bytes())?;
    eprintln!("wrote {}/latest.json and latest.md", out_dir.display());
    Ok(())
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "–".into(),
        Value::Object(map) if map.contains_key("median") => {
            let f = |k: &str| map.get(k).map(|v| v.to_string()).unwrap_or_default();
            match map.get("runs").and_then(Value::as_u64) {
                Some(1) => f("median"),
                _ => format!(
                    "**{}** ({}–{}, n={})",
                    f("median"),
                    f("min"),
                    f("max"),
                    f("runs")
                ),
            }
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn markdown(latest: &Value) -> String {
    let mut out = String::new();
    let machine = &latest["machine"];
    out += &format!(
        "Machine: {} cores ({}), {} MiB RAM, Linux {}. Versions: {}.\n\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["memory_mib"],
        machine["kernel"].as_str().unwrap_or("?"),
        latest["versions"]
            .as_object()
            .map(|m| m
                .iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    for scenario in latest["scenarios"].as_array().into_iter().flatten() {
        out += &format!(
            "### {} — {}\n\nDriftless: {}. Baseline: {}.\n\n",
            scenario["scenario"].as_str().unwrap_or("?"),
            scenario["title"].as_str().unwrap_or(""),
            scenario["driftless"].as_str().unwrap_or(""),
            scenario["baseline"].as_str().unwrap_or(""),
        );
        out += "| metric | driftless | baseline | baseline ÷ driftless |\n|---|---|---|---|\n";
        for r in scenario["rows"].as_array().into_iter().flatten() {
            let unit = r["unit"].as_str().unwrap_or("");
            let metric = r["metric"].as_str().unwrap_or("");
            let metric = if unit.is_empty() {
                metric.to_owned()
            } else {
                format!("{metric} ({unit})")
            };
            out += &format!(
                "| {metric} | {} | {} | {} |\n",
                cell(&r["driftless"]),
                cell(&r["baseline"]),
                cell(&r["baseline_over_driftless"])
            );
        }
        out += &format!(
            "\nBench process peak RSS (VmHWM): {} MiB; scenario wall time {} s.\n\n",
            scenario["bench_process_peak_rss_mib"], scenario["wall_seconds"]
        );
        for note in scenario["notes"].as_array().into_iter().flatten() {
            out += &format!("- {}\n", note.as_str().unwrap_or(""));
        }
        out += "\n";
    }
    out
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "memory_mib": memory_kib / 1024,
           "kernel": kernel.trim()})
}

fn versions() -> Value {
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default()
    };
    let commit = first_line(
        "git",
        &["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "HEAD"],
    );
    json!({
        "driftless": format!("{} ({})", env!("CARGO_PKG_VERSION"), &commit[..commit.len().min(12)]),
        "rustc": first_line("rustc", &["--version"]).replace("rustc ", ""),
        "git": first_line("git", &["--version"]).replace("git version ", ""),
        "kubernetes": kubectl_versions(),
    })
}

fn kubectl_versions() -> String {
    let output = Command::new(kubectl())
        .args(["version", "-o", "json"])
        .env("KUBECONFIG", support::cluster::kubeconfig_path())
        .output();
    let Ok(output) = output else {
        return String::new();
    };
    let Ok(value) = serde_json::from_slice::<Value>(&output.stdout) else {
        return String::new();
    };
    format!(
        "kubectl {}, kube-apiserver {}",
        value["clientVersion"]["gitVersion"].as_str().unwrap_or("?"),
        value["serverVersion"]["gitVersion"].as_str().unwrap_or("?")
    )
}

fn kubectl() -> PathBuf {
    support::cluster::binaries_dir().join("kubectl")
}

// ---------------------------------------------------------------------------------------------
// Git: a repository with a long history, and git's own client as the baseline

/// Runs git isolated from the machine's and user's config; panics with stderr on failure.
fn git(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
    let mut command = Command::new("git");
    command
        .current_dir(cwd)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("cannot run git")?;
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input)?;
    }
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn manifest(file: usize, revision: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{file:02}\ndata:\n  revision: \"{revision}\"\n  \
         owner: team-a\n  description: configuration file {file} of the benchmark repository, \
         changed by commit {revision}\n"
    )
}

fn fast_import_data(out: &mut Vec<u8>, data: &str) {
    out.extend_from_slice(format!("data {}\n{data}\n", data.len()).as_bytes());
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

fn fetch_request(owner: &str, url: &str) -> FetchRequest {
    FetchRequest {
        owner: owner.into(),
        url: url.into(),
        reference: None,
        path: "deploy".into(),
        ignore: vec![],
        credentials: None,
        timeout: Duration::from_secs(120),
    }
}

fn engine_in(dir: &Path) -> SourceEngine {
    SourceEngine::new(dir, Limits::default(), Duration::from_secs(30))
}

/// The long-history repository, served over smart HTTP by `git http-backend`.
struct Served {
    _repos: GitRepos,
    repo: TestRepo,
    server: HttpGitServer,
    commits: usize,
}

fn serve_history() -> Result<Served> {
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

async fn git_scenario() -> Result<Value> {
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
        let artifact = fresh.fetch(&fetch_request("bench/fresh", &url)).await?;
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
        let artifact = engine.fetch(&fetch_request("bench/check", &url)).await?;
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
            .fetch(&fetch_request("bench/incremental", &url))
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

async fn coalesce_scenario() -> Result<Value> {
    let served = serve_history()?;
    let url = served.server.url_for(&served.repo);
    let scratch = tempfile::tempdir()?;
    const RUNS: usize = 3;
    let mut shared = (Vec::new(), Vec::new(), Vec::new());
    let mut separate = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=RUNS {
        // driftless: one engine (one controller), 50 GitRepositories on one URL at once.
        let engine = engine_in(&scratch.path().join(format!("shared-{run}")));
        let requests: Vec<_> = (0..SHARERS)
            .map(|i| fetch_request(&format!("team-{i}/app"), &url))
            .collect();
        let started = Instant::now();
        let results = futures::future::join_all(requests.iter().map(|r| engine.fetch(r))).await;
        let elapsed = started.elapsed();
        for result in results {
            result?;
        }
        // Baseline: no sharing, one cache and one fetch per GitRepository (as a controller
        // that clones per object does), all at once.
        let engines: Vec<_> = (0..SHARERS)
            .map(|i| engine_in(&scratch.path().join(format!("separate-{run}-{i}"))))
            .collect();
        let started = Instant::now();
        let results = futures::future::join_all(
            engines
                .iter()
                .zip(&requests)
                .map(|(engine, request)| engine.fetch(request)),
        )
        .await;
        let separate_elapsed = started.elapsed();
        for result in results {
            result?;
        }
        if run > 0 {
            let stats = engine.stats();
            shared.0.push(stats.fetches.load(Ordering::Relaxed) as f64);
            shared
                .1
                .push(stats.advertisements.load(Ordering::Relaxed) as f64);
            shared.2.push(millis(elapsed));
            let sum = |f: fn(&SourceEngine) -> u64| engines.iter().map(f).sum::<u64>() as f64;
            separate
                .0
                .push(sum(|e| e.stats().fetches.load(Ordering::Relaxed)));
            separate
                .1
                .push(sum(|e| e.stats().advertisements.load(Ordering::Relaxed)));
            separate.2.push(millis(separate_elapsed));
        }
    }
    Ok(json!({
        "title": format!("{SHARERS} GitRepositories on one URL, fetched at once from an empty cache"),
        "driftless": "one `SourceEngine` (one controller) handling the 50 requests concurrently",
        "baseline": "50 engines with a cache each (no sharing: one fetch per GitRepository), concurrently",
        "rows": [
            row("fetches issued", summary(&shared.0, 0), summary(&separate.0, 0), ""),
            row("ref advertisements", summary(&shared.1, 0), summary(&separate.1, 0), ""),
            row("time until all 50 have their files", summary(&shared.2, 0), summary(&separate.2, 0), "ms"),
        ],
        "notes": [
            format!("Repository: the {HISTORY}-commit one of the git scenario. {RUNS} runs after one warm-up, fresh caches each run."),
        ],
    }))
}

// ---------------------------------------------------------------------------------------------
// Apply: 1,000 objects through the apply engine and through kubectl

/// Requests this process sent to the apiserver, by kind (client-side, so exact even when other
/// clients share the cluster).
struct RequestCounts {
    get: AtomicU64,
    dry_run_patch: AtomicU64,
    patch: AtomicU64,
    post: AtomicU64,
    other: AtomicU64,
}

static COUNTS: RequestCounts = RequestCounts {
    get: AtomicU64::new(0),
    dry_run_patch: AtomicU64::new(0),
    patch: AtomicU64::new(0),
    post: AtomicU64::new(0),
    other: AtomicU64::new(0),
};

impl RequestCounts {
    fn snapshot(&self) -> [u64; 5] {
        [
            self.get.load(Ordering::SeqCst),
            self.dry_run_patch.load(Ordering::SeqCst),
            self.patch.load(Ordering::SeqCst),
            self.post.load(Ordering::SeqCst),
            self.other.load(Ordering::SeqCst),
        ]
    }
}

fn count_request(request: http::Request<kube::client::Body>) -> http::Request<kube::client::Body> {
    let dry_run = request
        .uri()
        .query()
        .is_some_and(|q| q.contains("dryRun=All"));
    let counter = match request.method().as_str() {
        "GET" => &COUNTS.get,
        "PATCH" if dry_run => &COUNTS.dry_run_patch,
        "PATCH" => &COUNTS.patch,
        "POST" => &COUNTS.post,
        _ => &COUNTS.other,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    request
}

async fn counting_client() -> Result<Client> {
    let config = support::cluster::admin_config().await;
    let layer = tower::util::MapRequestLayer::new(count_request);
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

/// Requests counted between two snapshots, as JSON.
fn counted(before: [u64; 5], after: [u64; 5]) -> Value {
    let d = |i: usize| after[i] - before[i];
    json!({"GET": d(0), "PATCH (dry run)": d(1), "PATCH": d(2), "POST": d(3), "other": d(4),
           "writes": d(2) + d(3)})
}

/// `apiserver_request_total` for configmaps, by verb and dry run (whole cluster).
async fn apiserver_configmap_requests(
    client: &Client,
) -> Result<std::collections::BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut totals = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        if !rest.contains("resource=\"configmaps\"") {
            continue;
        }
        let label = |name: &str| {
            rest.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let value: f64 = sample_value(line);
        let mut key = label("verb");
        if !label("dry_run").is_empty() {
            key += " (dry run)";
        }
        *totals.entry(key).or_insert(0.0) += value;
    }
    Ok(totals)
}

/// The value of a Prometheus text-format sample line (`name{labels} value`); 0 if unreadable.
fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn metrics_delta(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> Value {
    let mut delta = serde_json::Map::new();
    for (key, value) in after {
        let d = value - before.get(key).copied().unwrap_or(0.0);
        if d > 0.0 {
            delta.insert(key.clone(), json!(d));
        }
    }
    Value::Object(delta)
}

async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
    let name = support::cluster::unique_name(prefix);
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("driftless.dev/bench".to_owned(), "true".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await?;
    Ok(name)
}

fn config_map(index: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{index:04}\n  labels:\n    app: bench\n\
         data:\n  index: \"{index}\"\n  owner: team-a\n  settings.yaml: |\n    replicas: 3\n    \
         feature: enabled\n    description: object {index} of the apply benchmark\n"
    )
}

fn write_objects(dir: &Path, count: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for index in 0..count {
        std::fs::write(dir.join(format!("cm-{index:04}.yaml")), config_map(index))?;
    }
    Ok(())
}

/// Reads the files as the controller does (manifests parser) into desired objects.
fn desired(dir: &Path) -> Result<Vec<DesiredObject>> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            std::fs::read(e.path()).map(|bytes| (name, bytes))
        })
        .collect::<std::io::Result<_>>()?;
    files.sort();
    let manifests = read_manifests(
        files.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
        &Budget::default(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(manifests
        .into_iter()
        .map(|m| DesiredObject {
            origin: format!("{}: {}", m.file, m.position),
            object: m.object,
            rendered: false,
        })
        .collect())
}

/// Runs `kubectl apply --server-side` on `dir` into `namespace`; with `count`, at `-v=6` and
/// returning the requests it logged, by verb.
fn kubectl_apply(dir: &Path, namespace: &str, count: bool) -> Result<(Duration, Value)> {
    let mut command = Command::new(kubectl());
    command
        .args([
            "apply",
            "--server-side",
            "--field-manager=kubectl-bench",
            "-n",
            namespace,
            "-f",
        ])
        .arg(dir)
        .env("KUBECONFIG", support::cluster::kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if count {
        command.arg("-v=6");
    }
    let started = Instant::now();
    let output = command.output()?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!(
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut verbs = std::collections::BTreeMap::<String, u64>::new();
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        if !line.contains("\"Response\"") {
            continue;
        }
        let verb = line
            .split("verb=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .unwrap_or("?");
        let dry_run = line.contains("dryRun=All");
        let key = if dry_run {
            format!("{verb} (dry run)")
        } else {
            verb.to_owned()
        };
        *verbs.entry(key).or_default() += 1;
    }
    Ok((elapsed, json!(verbs)))
}

async fn apply_scenario() -> Result<Value> {
    const RUNS: usize = 3;
    const RESYNC_RUNS: usize = 5;
    let client = counting_client().await?;
    let admin = support::cluster::admin_client().await;
    let scratch = tempfile::tempdir()?;
    let objects_dir = scratch.path().join("objects");
    write_objects(&objects_dir, OBJECTS)?;
    let warm_dir = scratch.path().join("warm-up");
    write_objects(&warm_dir, 20)?;
    let applier = Applier::new(client.clone());
    let options = |namespace: &str| ApplyOptions {
        default_namespace: namespace.to_owned(),
        owner_labels: [
            ("driftless.dev/name".to_owned(), "bench".to_owned()),
            ("driftless.dev/namespace".to_owned(), namespace.to_owned()),
        ]
        .into(),
        concurrency: 8,
        ..ApplyOptions::default()
    };
    let mut namespaces = Vec::new();

    // Warm-up: discovery, connections, kubectl's discovery cache.
    let warm = create_namespace(&admin, "bench-warm").await?;
    namespaces.push(warm.clone());
    applier.apply(desired(&warm_dir)?, &options(&warm)).await?;
    let warm_kubectl = create_namespace(&admin, "bench-warm-kubectl").await?;
    namespaces.push(warm_kubectl.clone());
    kubectl_apply(&warm_dir, &warm_kubectl, false)?;

    // driftless: first apply, each run into a fresh namespace.
    let mut first_ms = Vec::new();
    let mut first_writes = Vec::new();
    let mut first_counts = json!(null);
    let mut first_metrics = json!(null);
    let mut driftless_ns = String::new();
    for run in 0..RUNS {
        let namespace = create_namespace(&admin, "bench-driftless").await?;
        namespaces.push(namespace.clone());
        let objects = desired(&objects_dir)?;
        let metrics_before = apiserver_configmap_requests(&admin).await?;
        let before = COUNTS.snapshot();
        let started = Instant::now();
        let report = applier.apply(objects, &options(&namespace)).await?;
        let elapsed = started.elapsed();
        let after = COUNTS.snapshot();
        let metrics_after = apiserver_configmap_requests(&admin).await?;
        assert_eq!(report.created.len(), OBJECTS);
        first_ms.push(millis(elapsed));
        first_writes.push(report.writes as f64);
        if run == 0 {
            first_counts = counted(before, after);
            first_metrics = metrics_delta(&metrics_before, &metrics_after);
        }
        driftless_ns = namespace;
    }

    // driftless: no-change resync of those objects (the first run is the warm-up).
    let mut resync_ms = Vec::new();
    let mut resync_writes = Vec::new();
    let mut resync_counts = json!(null);
    let mut resync_metrics = json!(null);
    for run in 0..=RESYNC_RUNS {
        let objects = desired(&objects_dir)?;
        let metrics_before = apiserver_configmap_requests(&admin).await?;
        let before = COUNTS.snapshot();
        let started = Instant::now();
        let report = applier.apply(objects, &options(&driftless_ns)).await?;
        let elapsed = started.elapsed();
        let after = COUNTS.snapshot();
        let metrics_after = apiserver_configmap_requests(&admin).await?;
        assert_eq!(report.unchanged.len(), OBJECTS);
        if run > 0 {
            resync_ms.push(millis(elapsed));
            resync_writes.push(report.writes as f64);
        }
        if run == 1 {
            resync_counts = counted(before, after);
            resync_metrics = metrics_delta(&metrics_before, &metrics_after);
        }
    }

    // kubectl: first apply (a counted run at -v=6 first, not timed), then timed runs.
    let counted_ns = create_namespace(&admin, "bench-kubectl-counted").await?;
    namespaces.push(counted_ns.clone());
    let metrics_before = apiserver_configmap_requests(&admin).await?;
    let (_, kubectl_first_counts) = kubectl_apply(&objects_dir, &counted_ns, true)?;
    let metrics_after = apiserver_configmap_requests(&admin).await?;
    let kubectl_first_metrics = metrics_delta(&metrics_before, &metrics_after);
    let mut kubectl_first_ms = Vec::new();
    let mut kubectl_ns = String::new();
    for _ in 0..RUNS {
        let namespace = create_namespace(&admin, "bench-kubectl").await?;
        namespaces.push(namespace.clone());
        let (elapsed, _) = kubectl_apply(&objects_dir, &namespace, false)?;
        kubectl_first_ms.push(millis(elapsed));
        kubectl_ns = namespace;
    }
    // kubectl: no-change re-apply.
    let metrics_before = apiserver_configmap_requests(&admin).await?;
    let (_, kubectl_resync_counts) = kubectl_apply(&objects_dir, &counted_ns, true)?;
    let metrics_after = apiserver_configmap_requests(&admin).await?;
    let kubectl_resync_metrics = metrics_delta(&metrics_before, &metrics_after);
    let mut kubectl_resync_ms = Vec::new();
    for _ in 0..RESYNC_RUNS {
        let (elapsed, _) = kubectl_apply(&objects_dir, &kubectl_ns, false)?;
        kubectl_resync_ms.push(millis(elapsed));
    }

    for namespace in &namespaces {
        let _ = Api::<Namespace>::all(admin.clone())
            .delete(namespace, &DeleteParams::background())
            .await;
    }

    let writes_of = |counts: &Value| {
        let get = |k: &str| counts.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        json!((get("PATCH") + get("POST") + get("PUT")) as u64)
    };
    let requests_of = |counts: &Value| {
        json!(
            counts
                .as_object()
                .map(|m| m
                    .iter()
                    .filter(|(k, _)| k.as_str() != "writes")
                    .filter_map(|(_, v)| v.as_f64())
                    .sum::<f64>() as u64)
                .unwrap_or(0)
        )
    };
    Ok(json!({
        "title": format!("First apply and no-change resync of {OBJECTS} ConfigMaps (one file each) into a fresh namespace"),
        "driftless": "the apply engine as the controller runs it (`read_manifests` + `Applier::apply`, concurrency 8, one Applier reused)",
        "baseline": "`kubectl apply --server-side -f DIR -n NS` of the same files",
        "rows": [
            row("first apply: time", summary(&first_ms, 0), summary(&kubectl_first_ms, 0), "ms"),
            row("first apply: write-verb requests (PATCH/POST/PUT)", writes_of(&first_counts), writes_of(&kubectl_first_counts), ""),
            row("first apply: all requests", requests_of(&first_counts), requests_of(&kubectl_first_counts), ""),
            row("no-change resync: time", summary(&resync_ms, 0), summary(&kubectl_resync_ms, 0), "ms"),
            row("no-change resync: write-verb requests (PATCH/POST/PUT)", writes_of(&resync_counts), writes_of(&kubectl_resync_counts), ""),
            row("no-change resync: all requests", requests_of(&resync_counts), requests_of(&kubectl_resync_counts), ""),
        ],
        "report_writes": {"first_apply": summary(&first_writes, 0), "resync": summary(&resync_writes, 0)},
        "requests": {
            "driftless_first_apply": first_counts,
            "driftless_resync": resync_counts,
            "kubectl_first_apply": kubectl_first_counts,
            "kubectl_resync": kubectl_resync_counts,
        },
        "apiserver_request_total_configmaps_delta": {
            "driftless_first_apply": first_metrics,
            "driftless_resync": resync_metrics,
            "kubectl_first_apply": kubectl_first_metrics,
            "kubectl_resync": kubectl_resync_metrics,
        },
        "notes": [
            format!("{RUNS} first-apply runs (fresh namespace each) and {RESYNC_RUNS} resync runs after a warm-up; kubectl's request counts come from one extra untimed run at `-v=6`."),
            "Request counts are client-side (driftless: a counting layer on its kube client; kubectl: its `-v=6` request log), so other clients of the shared test cluster cannot inflate them; `apiserver_request_total` deltas for configmaps are in latest.json as a cross-check. Write-verb requests are non-dry-run PATCH/POST/PUT; kubectl's no-change re-apply sends 1,000 apply PATCHes that the apiserver then finds to be no-ops.",
            "driftless: one LIST per resource and namespace (by owner labels); an object last applied from the same content that still holds every desired field is left alone; any other object gets a server-side-apply dry run, and the real apply only when the dry run differs from the live object (a first apply: dry run + apply, no read).",
        ],
    }))
}

//! The `driftless controller` binary as a process of its own, as the scale and side-by-side
//! scenarios run it: API requests counted from its own debug log of kube-client (one line per
//! HTTP request), reconciles, errors, `/metrics`.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::support;

pub struct Controller {
    child: Child,
    pub pid: u32,
    pub metrics_port: u16,
    pub webhook_port: u16,
    pub log: Arc<LogStats>,
    _reader: std::thread::JoinHandle<()>,
}

impl Controller {
    /// Starts the binary watching `namespace`, with its Lease in `home`.
    pub fn start(
        binary: &Path,
        [namespace, home]: [&str; 2],
        cache: &Path,
        extra: &[&str],
    ) -> Result<Self> {
        let metrics_port = free_port();
        let webhook_port = free_port();
        // For profiling a scenario: a finer log level, and a copy of the log to read afterwards.
        let log_level = std::env::var("DRIFTLESS_BENCH_CONTROLLER_LOG_LEVEL")
            .unwrap_or_else(|_| "info,kube_client::client::builder=debug".to_owned());
        let mut log_copy = match std::env::var_os("DRIFTLESS_BENCH_CONTROLLER_LOG") {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .context("opening the controller log copy")?,
            )),
            None => None,
        };
        let mut child = Command::new(binary)
            .args([
                "controller",
                "--namespace",
                namespace,
                "--controller-namespace",
                home,
                "--leader-elect",
                "--log-format",
                "json",
                "--log-level",
                &log_level,
            ])
            .arg("--metrics-bind-address")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .arg("--webhook-bind-address")
            .arg(format!("127.0.0.1:{webhook_port}"))
            .arg("--git-cache-dir")
            .arg(cache)
            .args(extra)
            .env("KUBECONFIG", support::cluster::kubeconfig_path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the driftless binary")?;
        let pid = child.id();
        let log = Arc::new(LogStats::default());
        let stderr = child.stderr.take().context("controller stderr")?;
        let reader = std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(copy) = log_copy.as_mut() {
                        let _ = writeln!(copy, "{line}").and_then(|()| copy.flush());
                    }
                    log.record(&line);
                }
            }
        });
        eprintln!("controller pid {pid}, metrics on 127.0.0.1:{metrics_port}");
        Ok(Self {
            child,
            pid,
            metrics_port,
            webhook_port,
            log,
            _reader: reader,
        })
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the controller holds its Lease and watches GitRepositories.
    pub async fn wait_watching(&mut self, within: Duration) -> Result<()> {
        let started = Instant::now();
        while self.log.count("WATCH gitrepositories") < 2 {
            if !self.running() || started.elapsed() > within {
                bail!(
                    "the controller did not start watching: {:?}",
                    self.log.errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// `driftless_reconcile_duration_seconds_count` by result, from `/metrics`.
    pub fn reconcile_counts(&self) -> Value {
        let text = support::controller::http_get(self.metrics_port, "/metrics").unwrap_or_default();
        let mut counts = serde_json::Map::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("driftless_reconcile_duration_seconds_count{")
            else {
                continue;
            };
            let result = rest
                .split("result=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .unwrap_or("?");
            let value: f64 = crate::common::sample_value(line);
            counts.insert(result.to_owned(), json!(value as u64));
        }
        Value::Object(counts)
    }

    /// SIGTERM, then SIGKILL if it has not stopped within 30 s.
    pub fn terminate(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port below the kernel's ephemeral range (which starts at 32768), so no port-0 listener of
/// a parallel test can take it between this check and the controller's bind.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let base = 24_000 + (std::process::id() % 300) as u16 * 16;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 3_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What the controller's log says: requests by verb and resource, reconciles, errors.
#[derive(Default)]
pub struct LogStats {
    inner: Mutex<LogInner>,
}

#[derive(Default)]
struct LogInner {
    requests: BTreeMap<String, u64>,
    reconciles: usize,
    errors: Vec<String>,
    /// When the last request other than Lease renewals and watches was sent.
    last_work: Option<Instant>,
}

impl LogStats {
    fn record(&self, line: &str) {
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let mut inner = self.inner.lock().unwrap();
        let message = entry["message"].as_str().unwrap_or("");
        match message {
            "requesting" => {
                let span = &entry["span"];
                let method = span["http.method"].as_str().unwrap_or("?");
                let url = span["http.url"].as_str().unwrap_or("");
                let key = classify(method, url);
                if !key.ends_with(" leases") && !key.starts_with("WATCH ") {
                    inner.last_work = Some(Instant::now());
                }
                *inner.requests.entry(key).or_default() += 1;
            }
            "applied" | "reconcile failed" => {
                inner.reconciles += 1;
                inner.last_work = Some(Instant::now());
            }
            _ => {}
        }
        let level = entry["level"].as_str().unwrap_or("");
        if (level == "WARN" || level == "ERROR") && inner.errors.len() < 20 {
            inner.errors.push(line.chars().take(400).collect());
        }
    }

    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn count(&self, key: &str) -> u64 {
        self.inner
            .lock()
            .unwrap()
            .requests
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub fn reconciles(&self) -> usize {
        self.inner.lock().unwrap().reconciles
    }

    pub fn errors(&self) -> Vec<String> {
        self.inner.lock().unwrap().errors.clone()
    }

    /// Returns once no reconcile work (requests other than Lease renewals and watches, or
    /// reconciles) happened for `quiet`.
    pub async fn wait_settled(&self, quiet: Duration) {
        loop {
            let last = self.inner.lock().unwrap().last_work;
            match last {
                Some(at) if at.elapsed() < quiet => {
                    tokio::time::sleep(quiet - at.elapsed() + Duration::from_millis(50)).await
                }
                _ => return,
            }
        }
    }
}

/// `VERB resource` of one request, with apiserver-style verbs (LIST and WATCH for collection
/// GETs) and `(dry run)` for server-side dry runs.
pub fn classify(method: &str, url: &str) -> String {
    let path_and_query = match url.find("://") {
        Some(scheme) => {
            let rest = &url[scheme + 3..];
            rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
        }
        None => url,
    };
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.first() {
        Some(&"api") => segments.get(2..).unwrap_or_default(),
        Some(&"apis") => segments.get(3..).unwrap_or_default(),
        _ => return format!("{method} {path}"),
    };
    if rest.is_empty() {
        return format!("{method} discovery");
    }
    let rest = if rest[0] == "namespaces" && rest.len() >= 3 {
        &rest[2..]
    } else {
        rest
    };
    let named = rest.len() >= 2;
    let resource = match rest.get(2) {
        Some(sub) => format!("{}/{sub}", rest[0]),
        None => rest[0].to_owned(),
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verb = match method {
        "GET" if watch => "WATCH",
        "GET" if !named => "LIST",
        other => other,
    };
    if query.split('&').any(|p| p == "dryRun=All") {
        format!("{verb} {resource} (dry run)")
    } else {
        format!("{verb} {resource}")
    }
}

/// Requests between two snapshots: by `VERB resource`, in total, and write-verb ones.
pub fn request_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> Value {
    let mut by_kind = serde_json::Map::new();
    let (mut total, mut writes) = (0u64, 0u64);
    for (key, count) in after {
        let delta = count.saturating_sub(before.get(key).copied().unwrap_or(0));
        if delta == 0 {
            continue;
        }
        total += delta;
        let write = ["POST ", "PUT ", "PATCH ", "DELETE "]
            .iter()
            .any(|verb| key.starts_with(verb))
            && !key.ends_with("(dry run)");
        if write {
            writes += delta;
        }
        by_kind.insert(key.clone(), json!(delta));
    }
    json!({"total": total, "writes": writes, "by_verb_and_resource": by_kind})
}

//! The `driftless controller` binary as operators run it, as a child process: starting
//! replicas, the ports they listen on, and the leader Lease.

use std::{
    io::BufRead,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU16, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::coordination::v1::Lease;

use super::cluster::{TestNamespace, kubeconfig_path};

/// Reconciles the webhook receiver of a leading replica put straight into its queue.
pub const QUEUED_PUSHES: &str = r#"driftless_webhook_triggers_total{route="queue"}"#;

/// A controller process, killed when dropped.
pub struct Replica {
    pub child: Child,
    pub metrics_port: u16,
    /// The `HOSTNAME` the process runs with: its leader-election identity is
    /// `<host>_<pid hex><nanos hex>`, see [`Replica::holds`].
    pub host: String,
    /// Every line the process logged so far (it logs to stderr); also echoed to the test's.
    logs: Arc<Mutex<Vec<String>>>,
    _cache: tempfile::TempDir,
}

impl Replica {
    /// The value of the counter `series` (name and labels as exported, e.g.
    /// `driftless_webhook_triggers_total{route="queue"}`); 0 until it is first counted.
    pub fn counter(&self, series: &str) -> u64 {
        let text = super::controller::http_get(self.metrics_port, "/metrics")
            .expect("the replica serves /metrics");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.trim().parse().expect("a counter is an integer"))
            .unwrap_or(0)
    }

    /// How many lines the process has logged so far.
    pub fn log_lines(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// The lines logged after the first `after` lines.
    pub fn lines_since(&self, after: usize) -> Vec<String> {
        self.logs.lock().unwrap()[after..].to_vec()
    }

    /// Waits until a line logged after the first `after` lines contains `text`: the event a
    /// test waits for instead of sleeping and hoping it happened.
    pub async fn wait_for_log(&self, after: usize, text: &str, within: Duration) -> String {
        let started = Instant::now();
        loop {
            let found = self
                .lines_since(after)
                .into_iter()
                .find(|line| line.contains(text));
            if let Some(line) = found {
                return line;
            }
            assert!(
                started.elapsed() < within,
                "the replica logged no line containing {text:?} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `holder` (a Lease's `holderIdentity`) is this replica.
    pub fn holds(&self, holder: &str) -> bool {
        holder.starts_with(&format!("{}_", self.host))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port for a server the controller binary will open. Taken below the kernel's ephemeral
/// range (which starts at 32768), so a port-0 listener of a parallel test can never grab it
/// between this check and the binary's bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 700) as u16 * 16;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 4_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts `driftless controller` watching only `namespace`, with a cache of its own, metrics
/// on a free port and the `extra` flags.
pub fn start_replica(namespace: &TestNamespace, extra: &[&str]) -> Replica {
    static REPLICAS: AtomicU32 = AtomicU32::new(0);
    let host = format!(
        "replica-{}-{}",
        std::process::id(),
        REPLICAS.fetch_add(1, Ordering::Relaxed)
    );
    let cache = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args([
            "controller",
            "--namespace",
            &namespace.name,
            "--controller-namespace",
            &namespace.name,
        ])
        .args([
            "--metrics-bind-address",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .arg("--git-cache-dir")
        .arg(cache.path())
        .args(extra)
        .env("KUBECONFIG", kubeconfig_path())
        .env("RUST_LOG", "driftless=info")
        .env("HOSTNAME", &host)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the driftless binary starts");
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().expect("stderr is piped");
    let kept = Arc::clone(&logs);
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            kept.lock().unwrap().push(line);
        }
    });
    Replica {
        child,
        metrics_port,
        host,
        logs,
        _cache: cache,
    }
}

/// The `holderIdentity` of the `driftless-leader` Lease in `namespace`.
pub async fn lease_holder(namespace: &TestNamespace) -> Option<String> {
    let lease = namespace
        .api::<Lease>()
        .get_opt("driftless-leader")
        .await
        .unwrap()?;
    lease.spec?.holder_identity
}

//! Flux as the benchmark's baseline: source-controller and kustomize-controller built from
//! their Go modules (`tests/cluster/build.sh flux`, versions in tests/cluster/versions.env) and
//! run as plain processes against the test cluster, as a production install runs them but
//! without leader election and with every port on loopback.
//!
//! Requests are counted client-side, from each controller's own `rest_client_requests_total`
//! (client-go's counter of HTTP requests, by method), summed over the two controllers.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use kube::{Api, Client, api::DynamicObject, discovery::ApiResource};

use crate::{
    common::{driftless::free_port, sample_value},
    support,
};

/// Flux's two concurrency settings the comparison runs: its defaults, and the settings of
/// Flux's own benchmark (fluxcd/flux-benchmark).
#[derive(Clone, Copy, Debug)]
pub struct FluxConfig {
    pub name: &'static str,
    pub source_concurrent: u32,
    pub kustomize_concurrent: u32,
    /// kustomize-controller's `--requeue-dependency` (how often a Kustomization blocked by a
    /// dependency checks it again); `None`: Flux's default, 30 s.
    pub requeue_dependency: Option<&'static str>,
}

pub const DEFAULTS: FluxConfig = FluxConfig {
    name: "defaults",
    source_concurrent: 2,
    kustomize_concurrent: 4,
    requeue_dependency: None,
};
pub const BENCHMARK_SETTINGS: FluxConfig = FluxConfig {
    name: "benchmark settings",
    source_concurrent: 10,
    kustomize_concurrent: 20,
    requeue_dependency: None,
};
/// Flux's defaults with a blocked Kustomization re-checked every second: the quickest a
/// `dependsOn` chain converges in Flux (shorter periods are allowed but only add load).
pub const FAST_DEPENDENCY_REQUEUE: FluxConfig = FluxConfig {
    name: "requeue-dependency 1s",
    source_concurrent: 2,
    kustomize_concurrent: 4,
    requeue_dependency: Some("1s"),
};

/// `DRIFTLESS_BENCH_FLUX_CONFIGS=defaults,benchmark` (the default: both).
pub fn configs() -> Vec<FluxConfig> {
    let wanted =
        std::env::var("DRIFTLESS_BENCH_FLUX_CONFIGS").unwrap_or("defaults,benchmark".into());
    wanted
        .split(',')
        .filter_map(|name| match name.trim() {
            "defaults" => Some(DEFAULTS),
            "benchmark" => Some(BENCHMARK_SETTINGS),
            _ => None,
        })
        .collect()
}

pub fn git_repository_resource() -> ApiResource {
    ApiResource {
        group: "source.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "source.toolkit.fluxcd.io/v1".into(),
        kind: "GitRepository".into(),
        plural: "gitrepositories".into(),
    }
}

pub fn kustomization_resource() -> ApiResource {
    ApiResource {
        group: "kustomize.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
        kind: "Kustomization".into(),
        plural: "kustomizations".into(),
    }
}

fn cluster_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster")
}

/// Builds the two controllers once per machine (cached by version) and returns their
/// directory.
pub fn binaries() -> Result<PathBuf> {
    let output = Command::new("bash")
        .arg(cluster_dir().join("build.sh"))
        .arg("flux")
        .stderr(Stdio::inherit())
        .output()
        .context("running tests/cluster/build.sh flux")?;
    if !output.status.success() {
        bail!("tests/cluster/build.sh flux failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().context("build.sh printed nothing")?;
    Ok(PathBuf::from(dir.trim()))
}

/// `vX` of both controllers, as pinned.
pub fn versions() -> String {
    let pins = std::fs::read_to_string(cluster_dir().join("versions.env")).unwrap_or_default();
    let pin = |name: &str| {
        pins.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "source-controller {}, kustomize-controller {}",
        pin("FLUX_SOURCE_VERSION"),
        pin("FLUX_KUSTOMIZE_VERSION")
    )
}

/// The CRD directories shipped in the two controllers' module zips.
fn crd_dirs() -> Result<Vec<PathBuf>> {
    [
        ("flux-source", "github.com/fluxcd/source-controller"),
        ("flux-kustomize", "github.com/fluxcd/kustomize-controller"),
    ]
    .iter()
    .map(|(module, path)| {
        let output = Command::new("go")
            .args(["list", "-m", "-f", "{{.Dir}}", path])
            .current_dir(cluster_dir().join("modules").join(module))
            .output()
            .context("go list")?;
        if !output.status.success() {
            bail!(
                "go list -m {path}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()).join("config/crd/bases"))
    })
    .collect()
}

/// Installs Flux's CRDs (all six of source-controller, which runs a controller per kind, and
/// the Kustomization) and waits until they are served.
pub fn install_crds() -> Result<()> {
    let kubectl = crate::common::kubectl();
    let mut apply = Command::new(&kubectl);
    apply
        .args(["apply", "--server-side", "--force-conflicts"])
        .env("KUBECONFIG", support::cluster::kubeconfig_path())
        .stdout(Stdio::null());
    for dir in crd_dirs()? {
        apply.arg("-f").arg(dir);
    }
    if !apply.status()?.success() {
        bail!("kubectl apply of Flux's CRDs failed");
    }
    let crds = [
        "buckets",
        "externalartifacts",
        "gitrepositories",
        "helmcharts",
        "helmrepositories",
        "ocirepositories",
    ]
    .iter()
    .map(|kind| format!("crd/{kind}.source.toolkit.fluxcd.io"))
    .chain(["crd/kustomizations.kustomize.toolkit.fluxcd.io".to_owned()]);
    let status = Command::new(&kubectl)
        .args(["wait", "--for=condition=Established", "--timeout=60s"])
        .args(crds)
        .env("KUBECONFIG", support::cluster::kubeconfig_path())
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("Flux's CRDs were not established within 60 s");
    }
    Ok(())
}

/// One controller process and its ports.
struct Process {
    name: &'static str,
    child: Child,
    metrics_port: u16,
    health_port: u16,
}

/// source-controller and kustomize-controller, running; stopped on drop.
pub struct Flux {
    processes: Vec<Process>,
    dir: tempfile::TempDir,
}

impl Flux {
    /// Starts both controllers watching only `namespace` (as driftless watches only its run's
    /// namespace), and waits until both are ready.
    pub async fn start(binaries: &Path, namespace: &str, config: FluxConfig) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let storage = dir.path().join("storage");
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&storage)?;
        std::fs::create_dir_all(&tmp)?;
        let storage_addr = format!("127.0.0.1:{}", free_port());
        let common = |metrics: u16, health: u16| {
            vec![
                format!("--metrics-addr=127.0.0.1:{metrics}"),
                format!("--health-addr=127.0.0.1:{health}"),
                "--enable-leader-election=false".into(),
                "--watch-all-namespaces=false".into(),
                "--log-encoding=json".into(),
                "--log-level=info".into(),
            ]
        };
        let (source_metrics, source_health) = (free_port(), free_port());
        let mut source_args = common(source_metrics, source_health);
        source_args.extend([
            format!("--storage-path={}", storage.display()),
            format!("--storage-addr={storage_addr}"),
            format!("--storage-adv-addr={storage_addr}"),
            format!("--concurrent={}", config.source_concurrent),
        ]);
        let (kustomize_metrics, kustomize_health) = (free_port(), free_port());
        let mut kustomize_args = common(kustomize_metrics, kustomize_health);
        kustomize_args.extend([
            format!("--concurrent={}", config.kustomize_concurrent),
            "--no-remote-bases=true".into(),
        ]);
        if let Some(period) = config.requeue_dependency {
            kustomize_args.push(format!("--requeue-dependency={period}"));
        }
        let spawn = |name: &'static str, args: Vec<String>, metrics_port, health_port| {
            let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
            let child = Command::new(binaries.join(name))
                .args(args)
                .env("KUBECONFIG", support::cluster::kubeconfig_path())
                .env("RUNTIME_NAMESPACE", namespace)
                .env("TMPDIR", &tmp)
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {name}"))?;
            anyhow::Ok(Process {
                name,
                child,
                metrics_port,
                health_port,
            })
        };
        let mut flux = Flux {
            processes: vec![
                spawn(
                    "source-controller",
                    source_args,
                    source_metrics,
                    source_health,
                )?,
                spawn(
                    "kustomize-controller",
                    kustomize_args,
                    kustomize_metrics,
                    kustomize_health,
                )?,
            ],
            dir,
        };
        flux.wait_ready(Duration::from_secs(60)).await?;
        eprintln!(
            "Flux ({}) pids {:?}, watching {namespace}",
            config.name,
            flux.pids()
        );
        Ok(flux)
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let started = Instant::now();
        for index in 0..self.processes.len() {
            loop {
                let process = &mut self.processes[index];
                let answer = support::controller::http_get(process.health_port, "/readyz");
                if answer.is_some_and(|a| a.starts_with("HTTP/1.0 200") || a.contains(" 200 ")) {
                    break;
                }
                if process.child.try_wait()?.is_some() || started.elapsed() > within {
                    let name = process.name;
                    bail!("{name} did not become ready: {}", self.log_tail());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|p| p.child.id()).collect()
    }

    /// Requests sent so far, by method, summed over both controllers (`METHOD *`).
    pub fn requests(&self) -> BTreeMap<String, u64> {
        let mut totals = BTreeMap::new();
        for process in &self.processes {
            let text =
                support::controller::http_get(process.metrics_port, "/metrics").unwrap_or_default();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("rest_client_requests_total{") else {
                    continue;
                };
                let method = rest
                    .split("method=\"")
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("?");
                *totals.entry(format!("{method} *")).or_default() += sample_value(line) as u64;
            }
        }
        totals
    }

    /// The last lines of both logs, for an error message.
    pub fn log_tail(&self) -> String {
        self.processes
            .iter()
            .map(|p| {
                let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", p.name)))
                    .unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(5)..].join("\n");
                format!("{}:\n{tail}", p.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Error lines of both logs (at most `limit`).
    pub fn errors(&self, limit: usize) -> Vec<String> {
        self.processes
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(self.dir.path().join(format!("{}.log", p.name)))
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("\"level\":\"error\""))
                    .map(|l| l.chars().take(300).collect::<String>())
                    .collect::<Vec<_>>()
            })
            .take(limit)
            .collect()
    }
}

impl Drop for Flux {
    fn drop(&mut self) {
        for process in &mut self.processes {
            let _ = Command::new("kill")
                .args(["-TERM", &process.child.id().to_string()])
                .status();
        }
        for process in &mut self.processes {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if !matches!(process.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
    }
}

pub fn git_repositories(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &git_repository_resource())
}

pub fn kustomizations(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &kustomization_resource())
}

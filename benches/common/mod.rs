//! Helpers the scenarios share: git without the user's config, `git fast-import` streams,
//! namespaces for a run, the apiserver's metrics.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use serde_json::{Value, json};

use crate::support;

pub mod driftless;
pub mod flux;
pub mod procfs;
pub mod side_by_side;

pub fn kubectl() -> PathBuf {
    support::cluster::binaries_dir().join("kubectl")
}

/// Runs git isolated from the machine's and user's config; panics with stderr on failure.
pub fn git(cwd: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<String> {
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

pub fn fast_import_data(out: &mut Vec<u8>, data: &str) {
    out.extend_from_slice(format!("data {}\n{data}\n", data.len()).as_bytes());
}

/// The value of a Prometheus text-format sample line (`name{labels} value`); 0 if unreadable.
pub fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn metrics_delta(
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

pub async fn create_namespace(client: &Client, prefix: &str) -> Result<String> {
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

/// Runs `kubectl apply --server-side` on `dir` into `namespace`; with `count`, at `-v=6` and
/// returning the requests it logged, by verb.
pub fn kubectl_apply(dir: &Path, namespace: &str, count: bool) -> Result<(Duration, Value)> {
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

/// `apiserver_request_total` for the resources the controller touches, by resource, verb and
/// dry run (whole cluster).
pub async fn apiserver_requests(client: &Client) -> Result<BTreeMap<String, f64>> {
    const RESOURCES: [&str; 5] = [
        "configmaps",
        "gitrepositories",
        "events",
        "leases",
        "namespaces",
    ];
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut totals = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let label = |name: &str| {
            rest.split(&format!(",{name}=\""))
                .nth(1)
                .or_else(|| rest.strip_prefix(&format!("{name}=\"")))
                .and_then(|v| v.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let resource = label("resource");
        if !RESOURCES.contains(&resource.as_str()) {
            continue;
        }
        let value: f64 = sample_value(line);
        let subresource = label("subresource");
        let mut key = format!("{} {resource}", label("verb"));
        if !subresource.is_empty() {
            key += &format!("/{subresource}");
        }
        if !label("dry_run").is_empty() {
            key += " (dry run)";
        }
        *totals.entry(key).or_insert(0.0) += value;
    }
    Ok(totals)
}

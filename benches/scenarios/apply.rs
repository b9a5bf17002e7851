//! First apply and no-change resync of many objects: driftless's apply engine against
//! `kubectl apply --server-side` of the same files.

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use anyhow::Result;
use driftless::{
    apply::{Applier, ApplyOptions, DesiredObject},
    manifests::{Budget, read_manifests},
};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client, api::DeleteParams};
use serde_json::{Value, json};

use crate::{
    common::{create_namespace, kubectl_apply, metrics_delta, sample_value},
    millis, row, summary, support,
};

/// Objects of the apply scenarios.
const OBJECTS: usize = 1_000;

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

pub async fn scenario() -> Result<Value> {
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

//! A three-layer dependency chain created from scratch, side by side with Flux: a CRD with its
//! operator's Deployment, then a custom resource of that CRD, then an application. driftless:
//! three GitRepositories on one URL, `dependsOn` the layer below, `wait: true`; Flux: one
//! GitRepository and three Kustomizations with the same `dependsOn` and `wait: true`. All
//! objects are created at once, dependents first; the clock runs from the first create until
//! every layer is Ready at the commit.
//!
//! Flux re-checks a blocked Kustomization every `--requeue-dependency` (30 s by default), so it
//! runs twice: with its default and with 1 s, its quickest useful setting.
//!
//! Parameters: `DRIFTLESS_BENCH_CHAIN_RUNS` (default 5, rounds of every tool, interleaved so
//! each round shares the machine's load); `DRIFTLESS_BENCH_FLUX_CONFIGS=none`: driftless alone.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::Result;
use kube::{
    Api,
    api::{DeleteParams, DynamicObject, PostParams},
    discovery::ApiResource,
};
use serde_json::{Value, json};

use crate::{
    common::{
        flux,
        side_by_side::{Running, Setup, Tool, applied, commit_files, env_number, load_average},
    },
    millis, round, row, summary,
    support::{
        self,
        git::{GitRepos, HttpGitServer},
    },
};

/// The layers, lowest first, each with the one it depends on.
const LAYERS: [(&str, Option<&str>); 3] =
    [("crds", None), ("crs", Some("crds")), ("app", Some("crs"))];

pub async fn scenario() -> Result<Value> {
    let rounds = env_number("CHAIN_RUNS", 5);
    let with_flux = !flux::configs().is_empty();
    let setup = Setup::prepare(with_flux).await?;
    let mut tools = vec![Tool::Driftless];
    if with_flux {
        tools.push(Tool::Flux(flux::DEFAULTS));
        tools.push(Tool::Flux(flux::FAST_DEPENDENCY_REQUEUE));
    }
    let load_before = load_average();
    let mut samples: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for round_index in 0..rounds {
        for &tool in &tools {
            eprintln!("-- flux-chain round {round_index}: {}", tool.label());
            let run = one_run(&setup, tool, round_index).await?;
            eprintln!("   {run}");
            samples.entry(tool.key()).or_default().push(run);
        }
    }
    let load_after = load_average();
    let all_ready = |key: &str| -> Vec<f64> {
        samples
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|r| r["all_ready_ms"].as_f64())
            .collect()
    };
    let driftless = summary(&all_ready("driftless"), 0);
    let mut rows = Vec::new();
    for tool in tools.iter().skip(1) {
        let Tool::Flux(config) = tool else { continue };
        rows.push(row(
            &format!(
                "three-layer chain from scratch → all Ready, vs Flux ({})",
                config.name
            ),
            driftless.clone(),
            summary(&all_ready(&tool.key()), 0),
            "ms",
        ));
    }
    if rows.is_empty() {
        rows.push(row(
            "three-layer chain from scratch → all Ready (Flux not run)",
            driftless.clone(),
            Value::Null,
            "ms",
        ));
    }
    Ok(json!({
        "title": "A three-layer dependency chain from scratch (CRD + operator Deployment → custom resource → app), side by side with Flux",
        "driftless": "the release binary `driftless controller`: three GitRepositories on one URL, each `dependsOn` the layer below, `wait: true`, polling hourly",
        "baseline": format!("Flux {}: one GitRepository + three Kustomizations with the same `dependsOn`, `wait: true`, polling hourly; with kustomize-controller's default `--requeue-dependency` (30 s) and with 1 s", flux::versions()),
        "rows": rows,
        "runs": samples,
        "load_average": {"before": load_before, "after": load_after},
        "notes": [
            format!("{rounds} rounds; in each, every tool runs once on a fresh namespace and a fresh controller, so the rounds share the machine's load. The clock starts before the first create (the dependents are created first) and stops when the last layer is Ready with the commit as its applied revision, seen by a watch."),
            "`per_layer_ms` is each layer's Ready time after creation: the gaps between layers are what ordering adds (driftless wakes a dependent from its dependency's watch; Flux re-checks every `--requeue-dependency`).".to_owned(),
        ],
    }))
}

/// The repository's files: the three layers, the CRD in a group of this run's own.
fn layer_files(group: &str) -> Vec<(String, String)> {
    let crd = support::objects::widget_crd(group, false);
    let operator = support::objects::WIDGET_OPERATOR;
    let widget = support::objects::widget_named(group, "gear");
    let app = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  uses: a gear\n";
    vec![
        ("chain/crds/crd.yaml".into(), crd),
        ("chain/crds/operator.yaml".into(), operator.into()),
        ("chain/crs/widget.yaml".into(), widget),
        ("chain/app/app.yaml".into(), app.into()),
    ]
}

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The objects that follow the repository at `url`, dependents first.
fn chain_objects(tool: Tool, url: &str, namespace: &str) -> Vec<(ApiResource, Value)> {
    let mut objects = Vec::new();
    let depends_on = |on: Option<&str>| -> Value {
        on.map(|name| json!([{ "name": name }]))
            .unwrap_or(json!([]))
    };
    match tool {
        Tool::Driftless => {
            let kind = resource("driftless.dev", "GitRepository", "gitrepositories");
            let kind = ApiResource {
                version: "v1alpha1".into(),
                api_version: "driftless.dev/v1alpha1".into(),
                ..kind
            };
            for (name, on) in LAYERS.iter().rev() {
                objects.push((
                    kind.clone(),
                    json!({"apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
                           "metadata": {"name": name},
                           "spec": {"url": url, "path": format!("chain/{name}"), "interval": "1h",
                                    "wait": true, "timeout": "2m", "dependsOn": depends_on(*on)}}),
                ));
            }
        }
        Tool::Flux(_) => {
            for (name, on) in LAYERS.iter().rev() {
                objects.push((
                    flux::kustomization_resource(),
                    json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                           "metadata": {"name": name},
                           "spec": {"sourceRef": {"kind": "GitRepository", "name": "chain"},
                                    "path": format!("./chain/{name}"), "prune": true,
                                    "interval": "1h", "retryInterval": "30s", "timeout": "2m",
                                    "wait": true, "targetNamespace": namespace,
                                    "dependsOn": depends_on(*on)}}),
                ));
            }
            objects.push((
                flux::git_repository_resource(),
                json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                       "metadata": {"name": "chain"},
                       "spec": {"url": url, "ref": {"branch": "main"}, "interval": "1h",
                                "timeout": "60s"}}),
            ));
        }
    }
    objects
}

async fn one_run(setup: &Setup, tool: Tool, round_index: usize) -> Result<Value> {
    let running = Running::start(setup, tool, "bench-chain").await?;
    let group = format!("{}.bench.driftless.test", running.namespace);
    let repos = GitRepos::new();
    let repo = repos.create("chain");
    let commit = commit_files(repo.path(), "three layers", &layer_files(&group))?;
    let server = HttpGitServer::start(repos.root(), Default::default());
    let url = server.url_for(&repo);
    let outcome = async {
        let started = Instant::now();
        for (kind, object) in chain_objects(tool, &url, &running.namespace) {
            let api: Api<DynamicObject> =
                Api::namespaced_with(setup.admin.clone(), &running.namespace, &kind);
            api.create(&PostParams::default(), &serde_json::from_value(object)?)
                .await?;
        }
        let mut per_layer = BTreeMap::new();
        let is_applied = applied(&commit);
        while per_layer.len() < LAYERS.len() {
            for (name, _) in LAYERS {
                if !per_layer.contains_key(name)
                    && running.appliers().get(name).is_some_and(|o| is_applied(&o))
                {
                    per_layer.insert(name, round(millis(started.elapsed()), 0));
                }
            }
            if started.elapsed() > Duration::from_secs(600) {
                anyhow::bail!(
                    "{}: the chain was not Ready after 10 minutes ({per_layer:?}); errors: {:?}",
                    tool.label(),
                    running.errors()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all_ready = per_layer.values().copied().fold(0.0, f64::max);
        anyhow::Ok(json!({
            "round": round_index,
            "all_ready_ms": all_ready,
            "per_layer_ms": per_layer,
        }))
    }
    .await;
    let cleanup = running.finish().await;
    // The CRD is cluster-scoped: the namespace's deletion does not take it along everywhere.
    let crds: Api<DynamicObject> = Api::all_with(
        setup.admin.clone(),
        &resource(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            "customresourcedefinitions",
        ),
    );
    let _ = crds
        .delete(&format!("widgets.{group}"), &DeleteParams::background())
        .await;
    let result = outcome?;
    cleanup?;
    Ok(result)
}

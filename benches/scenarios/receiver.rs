//! Receiver latency: the shared webhook receiver's response time with 1,000
//! GitRepositories in its index.
//!
//! The release binary runs with its GitHub receiver on loopback and watches a namespace holding
//! 1,000 GitRepositories, each following a repository of its own. They are suspended: the
//! receiver indexes and triggers suspended objects like any other (suspension is the
//! reconciler's business), and the controller then has nothing else to do, so the figures are
//! the receiver's. Deliveries are sent one at a time on a fresh connection each (as Git hosts
//! do), timed client-side from connecting to the end of the response.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use driftless::api::GitRepository;
use driftless::controller::RECONCILE_REQUESTED_AT;
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::push::{
    SECRET, controller_help, github_push_body, release_repositories, start_with_receiver,
};
use crate::support::{
    cluster::{TestNamespace, admin_client, install_crds},
    controller::http_get,
    webhook::{github_push, post},
};
use crate::{millis, round, row, summary};

/// GitRepositories in the receiver's index.
const INDEXED: usize = 1_000;
/// Signed pushes measured (after a warm-up); every tenth names an indexed repository.
const SIGNED: usize = 1_000;
const MATCHING_EVERY: usize = 10;
/// Rejected deliveries measured: a wrong signature, and none at all.
const BAD_SIGNATURE: usize = 200;
const UNSIGNED: usize = 100;
const WARM_UP: usize = 50;
/// Annotation PATCHes the bench sends itself, for comparison.
const PATCHES: usize = 100;

fn target_url(index: usize) -> String {
    format!(
        "https://git.example.com/team-{:02}/app-{index:04}.git",
        index % 50
    )
}

fn target_name(index: usize) -> String {
    format!("app-{index:04}")
}

/// A commit id for push `n` (40 hex digits).
fn commit_id(n: usize) -> String {
    format!("{n:040x}")
}

pub async fn receiver_scenario() -> Result<Value> {
    install_crds().await;
    let client = admin_client().await;
    let namespace = TestNamespace::create("bench-receiver").await;
    let rate_limit = rate_limit_flags()?;
    let extra: Vec<&str> = rate_limit.iter().map(String::as_str).collect();
    let (replica, port, _secrets) = start_with_receiver(&namespace, &extra).await?;

    // 1,000 GitRepositories, 16 creations at a time.
    let api = namespace.api::<GitRepository>();
    let started = Instant::now();
    futures::stream::iter(0..INDEXED)
        .map(|index| {
            let spec = json!({ "url": target_url(index), "ref": { "branch": "main" },
                               "path": "deploy", "suspend": true });
            let name = target_name(index);
            let namespace = &namespace;
            async move { namespace.create_git_repository(&name, spec).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let creation_s = started.elapsed().as_secs_f64();

    // The index holds the last one created once a push for it triggers it.
    let started = Instant::now();
    let last = INDEXED - 1;
    // The answer counts matched objects; the URL of the last one matches it alone.
    let expected = "\"triggered\":1";
    let mut attempt = 0;
    loop {
        attempt += 1;
        let body = github_push_body(&target_url(last), &commit_id(0), &commit_id(attempt));
        let delivery = format!("bench-receiver-index-{attempt}");
        let (code, answer) = tokio::task::spawn_blocking(move || {
            github_push(port, "/hooks/github", SECRET.as_bytes(), &delivery, &body)
        })
        .await?;
        if code == 202 && answer.contains(expected) {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the receiver never matched {expected}: {code} {answer}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let indexed_after_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{INDEXED} GitRepositories created in {creation_s:.1} s; the receiver matched the last one {indexed_after_s:.1} s later"
    );
    // Let the controller finish its first pass (one Suspended status write per object).
    tokio::time::sleep(Duration::from_secs(10)).await;

    let metrics_port = replica.metrics_port;
    let measured = tokio::task::spawn_blocking(move || measure(port, metrics_port)).await??;
    let patches = annotation_patches(&api).await?;
    drop(replica);
    release_repositories(&client, &namespace.name).await?;

    let baseline = "~15,000 (Argo CD, ~1,500 Applications: a published report, not measured here)";
    let Measured {
        matching,
        unmatched,
        bad_signature,
        unsigned,
        body_bytes,
    } = measured;
    let p99 = |v: &Value| v.get("p99").cloned().unwrap_or(Value::Null);
    let mut signed = unmatched.client_ms.clone();
    signed.extend(&matching.client_ms);
    let all = summary(&signed, 2);
    let ms = |block: &Block| summary(&block.client_ms, 2);
    let server = json!({
        "matching": matching.server, "unmatched": unmatched.server,
        "bad_signature": bad_signature.server, "unsigned": unsigned.server,
    });
    let (matching, unmatched) = (ms(&matching), ms(&unmatched));
    let (bad_signature, unsigned) = (ms(&bad_signature), ms(&unsigned));
    let patches = summary(&patches, 2);
    Ok(json!({
        "title": format!("Shared webhook receiver (GitHub) with {INDEXED} GitRepositories indexed: response time on loopback"),
        "driftless": "the release binary's receiver, one delivery at a time on a fresh connection, timed client-side from connect to the end of the response",
        "baseline": "no baseline measured; Argo CD's published ~15 s for one webhook with ~1,500 Applications is shown for scale",
        "rows": [
            row(&format!("all {SIGNED} signed pushes ({} matching): p50", SIGNED / MATCHING_EVERY), all.clone(), json!(baseline), "ms"),
            row("all signed pushes: p99", p99(&all), json!(baseline), "ms"),
            row("signed push matching 1 GitRepository (answered before its 2 PATCHes, which follow): p50", matching.clone(), Value::Null, "ms"),
            row("signed push matching 1 GitRepository: p99", p99(&matching), Value::Null, "ms"),
            row("signed push matching nothing: p50", unmatched.clone(), Value::Null, "ms"),
            row("signed push matching nothing: p99", p99(&unmatched), Value::Null, "ms"),
            row("server side (the controller's own histogram), matching: mean", server["matching"]["mean_ms"].clone(), Value::Null, "ms"),
            row("server side, matching nothing: mean", server["unmatched"]["mean_ms"].clone(), Value::Null, "ms"),
            row("for comparison: the two PATCHes that follow a match, sent by the bench itself: p50", patches.clone(), Value::Null, "ms"),
            row("for comparison: the two PATCHes that follow a match, sent by the bench itself: p99", p99(&patches), Value::Null, "ms"),
            row("wrong signature (401): p50", bad_signature.clone(), Value::Null, "ms"),
            row("wrong signature (401): p99", p99(&bad_signature), Value::Null, "ms"),
            row("no signature (401): p50", unsigned.clone(), Value::Null, "ms"),
            row("no signature (401): p99", p99(&unsigned), Value::Null, "ms"),
        ],
        "signed_ms": all,
        "matching_ms": matching,
        "unmatched_ms": unmatched,
        "bad_signature_ms": bad_signature,
        "unsigned_ms": unsigned,
        "annotation_patch_ms": patches,
        "server_side": server,
        "creation_s": round(creation_s, 1),
        "indexed_after_s": round(indexed_after_s, 1),
        "controller_flags": rate_limit,
        "notes": [
            format!("{INDEXED} GitRepositories (suspended, each on a repository URL of its own, created 16 at a time in {creation_s:.0} s) in the namespace the controller watches. The index was confirmed full before measuring: a push for the last one created answered 202 naming it, and every matching push of the run answered 202 naming exactly its GitRepository."),
            format!("Signed deliveries: GitHub push events of {body_bytes} bytes (a realistic payload with the repository's URL templates and one commit) with `X-Hub-Signature-256`, each with a new delivery id. After {WARM_UP} warm-up deliveries, {} name repositories nobody follows (202, nothing triggered), then {} each name a different indexed GitRepository, spread over the index (202 counting it; the receiver PATCHes that GitRepository right after it answers).", SIGNED - SIGNED / MATCHING_EVERY, SIGNED / MATCHING_EVERY),
            "Server side: the controller's `driftless_webhook_request_duration_seconds` histogram (request head to answer), read from its `/metrics` before and after each block; `server_side` in the JSON has each block's mean and the bucket bound its p99 falls under.".to_owned(),
            format!("A matching delivery is answered once verified and matched; the two API requests it causes follow the answer (a merge PATCH of the GitRepository's `driftless.dev/reconcile-requested-at` annotation, the trigger, retried on failure, and one of its `status.lastWebhook`). For comparison the bench sent the same pair itself {PATCHES} times (kube client, one pair at a time) while the controller ran: that is what an answer waiting for the writes would cost."),
            format!("Rejected: {BAD_SIGNATURE} deliveries signed with a wrong secret and {UNSIGNED} without a signature header, both answered 401 before the body is parsed."),
            "The controller logs one line per delivery at the default `info` level (to the bench's stderr), as it would in production; that write is inside the measured time.".to_owned(),
            "Baseline: Argo CD's ~15 s for one webhook with ~1,500 Applications is a figure reported by its users, shown for scale only.".to_owned(),
        ],
    }))
}

/// Times the writes that follow a matching delivery's answer: a merge PATCH of the
/// reconcile-requested annotation and one of `status.lastWebhook`, sent concurrently.
async fn annotation_patches(api: &kube::Api<GitRepository>) -> Result<Vec<f64>> {
    let mut took = Vec::new();
    for n in 0..PATCHES {
        let name = target_name((n * 53) % INDEXED);
        let now = jiff::Timestamp::now().to_string();
        let annotation = json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: now}}});
        let record = json!({"status": {"lastWebhook": {
            "receivedAt": now, "deliveryId": format!("bench-patch-{n}"), "provider": "github",
        }}});
        let params = PatchParams::default();
        let (annotation, record) = (Patch::Merge(&annotation), Patch::Merge(&record));
        let started = Instant::now();
        let (annotated, recorded) = futures::join!(
            api.patch(&name, &params, &annotation),
            api.patch_status(&name, &params, &record),
        );
        took.push(millis(started.elapsed()));
        annotated?;
        recorded?;
    }
    Ok(took)
}

/// Disables the per-receiver rate limit for the load loop when the binary has one.
fn rate_limit_flags() -> Result<Vec<String>> {
    let help = controller_help()?;
    Ok(if help.contains("--webhook-rate-limit") {
        vec!["--webhook-rate-limit".into(), "0".into()]
    } else {
        Vec::new()
    })
}

/// Client-side times (ms) of one block of deliveries, and what the controller's own
/// `driftless_webhook_request_duration_seconds` histogram recorded for them.
struct Block {
    client_ms: Vec<f64>,
    server: Value,
}

struct Measured {
    matching: Block,
    unmatched: Block,
    bad_signature: Block,
    unsigned: Block,
    body_bytes: usize,
}

/// A reading of a Prometheus histogram: sum (s), count, and cumulative counts by upper bound (s).
type Reading = (f64, f64, Vec<(f64, f64)>);

/// The GitHub receiver's latency histogram from the controller's `/metrics`.
fn server_histogram(metrics_port: u16) -> Result<Reading> {
    let text = http_get(metrics_port, "/metrics").context("the metrics endpoint answers")?;
    let name = "driftless_webhook_request_duration_seconds";
    let (mut sum, mut count, mut buckets) = (0.0, 0.0, Vec::new());
    for line in text.lines() {
        if !line.starts_with(name) || !line.contains("provider=\"github\"") {
            continue;
        }
        let value: f64 = crate::common::sample_value(line);
        let rest = &line[name.len()..];
        if rest.starts_with("_sum") {
            sum += value;
        } else if rest.starts_with("_count") {
            count += value;
        } else if rest.starts_with("_bucket") {
            let bound = rest
                .split("le=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .map(|v| v.parse().unwrap_or(f64::INFINITY))
                .unwrap_or(f64::INFINITY);
            buckets.push((bound, value));
        }
    }
    Ok((sum, count, buckets))
}

/// Mean and p99 bucket bound (ms) of the server-side times between two histogram readings.
fn server_side(before: &Reading, after: &Reading) -> Value {
    let count = after.1 - before.1;
    if count <= 0.0 {
        return Value::Null;
    }
    let mean_ms = (after.0 - before.0) / count * 1000.0;
    let p99_le_ms = after
        .2
        .iter()
        .zip(&before.2)
        .find(|((_, a), (_, b))| a - b >= 0.99 * count)
        .map(|((bound, _), _)| bound * 1000.0);
    json!({"requests": count, "mean_ms": round(mean_ms, 2), "p99_at_most_ms": p99_le_ms})
}

/// Sends `count` deliveries one at a time (`send(n)` returns the client-side time in ms),
/// reading the controller's histogram before and after.
fn block(
    metrics_port: u16,
    count: usize,
    mut send: impl FnMut(usize) -> Result<f64>,
) -> Result<Block> {
    let before = server_histogram(metrics_port)?;
    let client_ms = (0..count).map(&mut send).collect::<Result<Vec<f64>>>()?;
    let after = server_histogram(metrics_port)?;
    Ok(Block {
        client_ms,
        server: server_side(&before, &after),
    })
}

/// The load loop, one delivery at a time: the pushes matching nothing, then those matching one
/// GitRepository each, then the rejected ones.
fn measure(port: u16, metrics_port: u16) -> Result<Measured> {
    let key = SECRET.as_bytes();
    let mut body_bytes = 0;
    let mut signed = |n: usize, matching: bool| -> Result<f64> {
        // Matching pushes go to indexed repositories spread over the whole index.
        let target = (n * 37) % INDEXED;
        let url = if matching {
            target_url(target)
        } else {
            format!("https://git.example.com/elsewhere/other-{n}.git")
        };
        let body = github_push_body(&url, &commit_id(n), &commit_id(n + 1));
        body_bytes = body.len();
        let delivery = format!("bench-receiver-{matching}-{n}");
        let started = Instant::now();
        let (code, answer) = github_push(port, "/hooks/github", key, &delivery, &body);
        let took = millis(started.elapsed());
        // The answer counts the matched objects; it never names them.
        let expected = if matching {
            "\"triggered\":1"
        } else {
            "\"triggered\":0"
        };
        if code != 202 || !answer.contains(expected) {
            bail!("delivery {n} (matching: {matching}): {code} {answer}");
        }
        Ok(took)
    };
    for n in 0..WARM_UP {
        signed(INDEXED + n, n % MATCHING_EVERY == 0)?;
    }
    let matching_count = SIGNED / MATCHING_EVERY;
    let unmatched = block(metrics_port, SIGNED - matching_count, |n| signed(n, false))?;
    let matching = block(metrics_port, matching_count, |n| signed(n, true))?;

    let body = github_push_body(&target_url(1), &commit_id(1), &commit_id(2));
    let rejected = |n: usize, with_signature: bool| -> Result<f64> {
        let delivery = format!("bench-receiver-rejected-{with_signature}-{n}");
        let started = Instant::now();
        let (code, answer) = if with_signature {
            github_push(port, "/hooks/github", b"not the secret", &delivery, &body)
        } else {
            let headers = [
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", delivery.as_str()),
                ("Content-Type", "application/json"),
            ];
            post(port, "/hooks/github", &headers, &body)
        };
        let took = millis(started.elapsed());
        if code != 401 {
            bail!("rejected delivery {n}: {code} {answer}");
        }
        Ok(took)
    };
    let bad_signature = block(metrics_port, BAD_SIGNATURE, |n| rejected(n, true))?;
    let unsigned = block(metrics_port, UNSIGNED, |n| rejected(n, false))?;
    Ok(Measured {
        matching,
        unmatched,
        bad_signature,
        unsigned,
        body_bytes,
    })
}

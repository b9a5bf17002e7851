//! `make bench`: driftless and its baselines side by side, on the real test cluster and real git
//! servers (see BENCHMARKS.md).
//!
//! `cargo bench --bench bench` runs every scenario, each in a child process of its own so that the
//! peak RSS (`VmHWM`) reported for a scenario is that scenario's; `cargo bench --bench bench --
//! SCENARIO` runs one. Each scenario writes `bench-results/<scenario>.json`; the parent merges
//! them into `bench-results/latest.json` and `bench-results/latest.md` (the tables of
//! BENCHMARKS.md) and prints the tables.

#[path = "scenarios/apply.rs"]
mod apply;
#[path = "scenarios/commit_status.rs"]
mod commit_status;
mod common;
#[path = "scenarios/flux_chain.rs"]
mod flux_chain;
#[path = "scenarios/flux_monorepo.rs"]
mod flux_monorepo;
#[path = "scenarios/flux_push.rs"]
mod flux_push;
#[path = "scenarios/flux_scale.rs"]
mod flux_scale;
#[path = "scenarios/git_fetch.rs"]
mod git_fetch;
#[path = "scenarios/helm.rs"]
mod helm;
#[path = "scenarios/preview.rs"]
mod preview;
#[path = "scenarios/push.rs"]
mod push;
#[path = "scenarios/real_content.rs"]
mod real_content;
#[path = "scenarios/receiver.rs"]
mod receiver;
#[path = "scenarios/render.rs"]
mod render;
#[path = "scenarios/scale.rs"]
mod scale;
#[path = "scenarios/shared_fetch.rs"]
mod shared_fetch;
// The benchmarks use a part of the integration tests' helpers; the tests use all of them.
#[path = "../tests/support/mod.rs"]
#[allow(dead_code, unused_imports)]
mod support;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// Every scenario, in the order `make bench` runs them.
const SCENARIOS: [&str; 16] = [
    "git",
    "coalesce",
    "apply",
    "push",
    "receiver",
    "scale",
    "render",
    "helm",
    "flux-push",
    "flux-scale",
    "flux-overlays",
    "flux-monorepo",
    "flux-chain",
    "real-content",
    "commit-status",
    "preview",
];
/// `flux` on the command line: every side-by-side comparison with Flux.
const FLUX_SCENARIOS: [&str; 5] = [
    "flux-push",
    "flux-scale",
    "flux-overlays",
    "flux-monorepo",
    "flux-chain",
];

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
            .iter()
            .flat_map(|w| match w.as_str() {
                "flux" => FLUX_SCENARIOS.iter().map(|s| s.to_string()).collect(),
                _ => vec![w.clone()],
            })
            .collect()
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
            "git" => git_fetch::scenario().await,
            "coalesce" => shared_fetch::scenario().await,
            "apply" => apply::scenario().await,
            "push" => push::push_scenario().await,
            "receiver" => receiver::receiver_scenario().await,
            "scale" => scale::scenario().await,
            "render" => render::scenario().await,
            "helm" => helm::helm_scenario().await,
            "flux-push" => flux_push::scenario().await,
            "flux-scale" => flux_scale::scenario().await,
            "flux-overlays" => flux_scale::overlays().await,
            "flux-monorepo" => flux_monorepo::scenario().await,
            "flux-chain" => flux_chain::scenario().await,
            "real-content" => real_content::scenario().await,
            "commit-status" => commit_status::scenario().await,
            "preview" => preview::scenario().await,
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
        "command": std::env::var("DRIFTLESS_BENCH_COMMAND").unwrap_or("make bench".into()),
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
        if let Some(load) = scenario.get("load_average") {
            out += &format!(
                "Load average (1, 5, 15 min) before: {}; after: {}.\n\n",
                load["before"].as_str().unwrap_or("?"),
                load["after"].as_str().unwrap_or("?")
            );
        }
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
        "flux": common::flux::versions(),
    })
}

fn kubectl_versions() -> String {
    let output = Command::new(common::kubectl())
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

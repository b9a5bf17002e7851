//! Many GitRepositories on one URL, fetched at once from an empty cache: one shared fetch in
//! driftless's source engine against one fetch per GitRepository.

use std::{sync::atomic::Ordering, time::Instant};

use anyhow::Result;
use driftless::source::SourceEngine;
use serde_json::{Value, json};

use crate::{
    git_fetch::{HISTORY, artifact_request, engine_in, serve_history},
    millis, row, summary,
};

/// GitRepositories sharing one URL in the coalescing scenario.
const SHARERS: usize = 50;

pub async fn scenario() -> Result<Value> {
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
            .map(|i| artifact_request(&format!("team-{i}/app"), &url))
            .collect();
        let started = Instant::now();
        let results = futures::future::join_all(requests.iter().map(|r| engine.artifact(r))).await;
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
                .map(|(engine, request)| engine.artifact(request)),
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

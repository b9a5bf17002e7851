//! CPU and memory of processes, from `/proc`.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// A `/proc/<pid>/status` field in kB (VmRSS, VmHWM).
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of the process and of its children it has waited for (driftless's kustomize
/// renders run as child processes; Flux builds in-process), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; the fields after it are space-separated.
    let after_name = &stat[stat.rfind(')').context("malformed stat")? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: u64 = fields.get(11).context("utime")?.parse()?;
    let stime: u64 = fields.get(12).context("stime")?.parse()?;
    let cutime: u64 = fields.get(13).context("cutime")?.parse()?;
    let cstime: u64 = fields.get(14).context("cstime")?.parse()?;
    Ok(utime + stime + cutime + cstime)
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// VmRSS of processes every 100 ms, on a thread of its own.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(f64, u64)>>,
}

impl RssSampler {
    /// Samples the sum of the VmRSS of `pids`.
    pub fn start(pids: &[u32]) -> Self {
        let pids = pids.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let started = Instant::now();
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let rss = pids.iter().map(|&pid| rss_kib(pid, "VmRSS:")).sum();
                    samples.push((started.elapsed().as_secs_f64(), rss));
                    std::thread::sleep(Duration::from_millis(100));
                }
                samples
            }
        });
        Self { stop, thread }
    }

    pub fn stop(self) -> Vec<(f64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

//! Render results by input: one run per distinct input, shared by every caller that asks for it
//! while it runs or afterwards, evicted oldest first past a byte budget.
//!
//! Two levels: a unit of a tree (root tree id, unit path, options) maps to the digest of what
//! its build reads, so a resync of an unchanged commit walks nothing; the digest maps to the
//! output, so a commit that changes other files renders nothing either.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::OnceCell;

use super::RenderError;

pub type RenderResult = Result<Arc<[u8]>, RenderError>;

type Cell = Arc<OnceCell<RenderResult>>;

/// Most remembered (tree, unit, options) → digest entries; each is a few hundred bytes.
const MAX_TREE_ENTRIES: usize = 4096;
/// Most held results, failures (which hold no bytes) included.
const MAX_OUTPUT_ENTRIES: usize = 4096;

pub struct RenderCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    digests: HashMap<String, String>,
    digest_order: VecDeque<String>,
    outputs: HashMap<String, Cell>,
    output_order: VecDeque<String>,
    /// Bytes of the finished outputs still held.
    bytes: usize,
    sizes: HashMap<String, usize>,
}

impl RenderCache {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    /// The input digest remembered for a unit of a tree.
    pub fn digest_of(&self, tree_key: &str) -> Option<String> {
        self.lock().digests.get(tree_key).cloned()
    }

    pub fn remember_digest(&self, tree_key: String, digest: String) {
        let mut inner = self.lock();
        if inner.digests.insert(tree_key.clone(), digest).is_none() {
            inner.digest_order.push_back(tree_key);
        }
        while inner.digest_order.len() > MAX_TREE_ENTRIES {
            if let Some(oldest) = inner.digest_order.pop_front() {
                inner.digests.remove(&oldest);
            }
        }
    }

    /// A finished result for `digest`, if one is held.
    pub fn finished(&self, digest: &str) -> Option<RenderResult> {
        self.lock().outputs.get(digest)?.get().cloned()
    }

    /// The result for `digest`: a held one, the one being computed by another caller, or the
    /// one `render` computes now. A failure that may heal is handed to the callers waiting for
    /// it and then forgotten, so the next request tries again.
    pub async fn get_or_render<F>(&self, digest: &str, render: F) -> (RenderResult, bool)
    where
        F: std::future::Future<Output = RenderResult>,
    {
        let cell = {
            let mut inner = self.lock();
            match inner.outputs.get(digest) {
                Some(cell) => cell.clone(),
                None => {
                    let cell = Cell::default();
                    inner.outputs.insert(digest.to_owned(), cell.clone());
                    inner.output_order.push_back(digest.to_owned());
                    cell
                }
            }
        };
        let mut ran = false;
        let result = cell
            .get_or_init(|| {
                ran = true;
                render
            })
            .await
            .clone();
        if ran {
            self.settle(digest, &cell, &result);
        }
        (result, ran)
    }

    /// Accounts a result just computed: drops an uncacheable failure, then evicts the oldest
    /// finished outputs until the held bytes fit the budget.
    fn settle(&self, digest: &str, cell: &Cell, result: &RenderResult) {
        let mut inner = self.lock();
        let still_ours = inner
            .outputs
            .get(digest)
            .is_some_and(|c| Arc::ptr_eq(c, cell));
        if !still_ours {
            return;
        }
        match result {
            Err(error) if !error.is_deterministic() => {
                inner.outputs.remove(digest);
                inner.output_order.retain(|d| d != digest);
                return;
            }
            Ok(output) => {
                inner.bytes += output.len();
                inner.sizes.insert(digest.to_owned(), output.len());
            }
            Err(_) => {}
        }
        while inner.bytes > self.max_bytes || inner.output_order.len() > MAX_OUTPUT_ENTRIES {
            let Some(position) = inner
                .output_order
                .iter()
                .position(|d| inner.outputs.get(d).is_some_and(|c| c.initialized()))
            else {
                break; // only renders in progress are left
            };
            let Some(oldest) = inner.output_order.remove(position) else {
                break;
            };
            inner.outputs.remove(&oldest);
            if let Some(size) = inner.sizes.remove(&oldest) {
                inner.bytes -= size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(text: &str) -> RenderResult {
        Ok(Arc::from(text.as_bytes()))
    }

    #[tokio::test]
    async fn one_render_per_digest_and_later_callers_share_it() {
        let cache = RenderCache::new(1024);
        let (first, ran) = cache.get_or_render("d1", async { output("a") }).await;
        assert!(ran);
        let (second, ran) = cache.get_or_render("d1", async { output("b") }).await;
        assert!(!ran);
        assert_eq!(first, second);
    }

    #[tokio::test]
    async fn failures_that_may_heal_are_not_kept() {
        let cache = RenderCache::new(1024);
        let timeout = RenderError::TimedOut {
            renderer: "kustomize".into(),
            unit: "x".into(),
            after: std::time::Duration::from_secs(1),
        };
        let (_, ran) = cache.get_or_render("d", async { Err(timeout) }).await;
        assert!(ran);
        let (result, ran) = cache.get_or_render("d", async { output("ok") }).await;
        assert!(ran && result.is_ok());
        let refused = RenderError::Sandbox("x".into());
        assert!(!refused.is_deterministic());
    }

    #[tokio::test]
    async fn the_oldest_outputs_go_past_the_byte_budget() {
        let cache = RenderCache::new(10);
        let _ = cache.get_or_render("a", async { output("123456") }).await;
        let _ = cache.get_or_render("b", async { output("123456") }).await;
        assert!(cache.finished("a").is_none());
        assert!(cache.finished("b").is_some());
    }
}

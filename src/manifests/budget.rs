//! Resource limits for reading manifests: per file, and for all files of one revision.

use serde_json::Value;

/// Limits applied to every manifest file, so that a hostile or broken commit (an alias bomb,
/// pathological nesting, a huge generated file) fails with an error instead of exhausting the
/// controller's memory or stack.
///
/// Most limits are per file; `max_revision_*` bound all files of one revision together, so
/// that many files each just under a per-file limit (an alias bomb in every one) cannot add up
/// to gigabytes. The defaults are generous for real Kubernetes manifests, including large CRD
/// bundles, and far below what an amplification attack needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Largest file accepted, checked before parsing. Without aliases this also bounds every
    /// other quantity, because all of them are proportional to the input size.
    pub max_file_bytes: usize,
    /// Most YAML documents (or concatenated JSON values) in one file; each one can yield an
    /// error message, so this also bounds the size of the error report.
    pub max_documents: usize,
    /// Deepest nesting of mappings and sequences; protects the stack of every recursive
    /// consumer of the parsed value, not only the parser. Deserializing recurses once per
    /// level, at up to 20 KiB of stack per level in debug builds, so the default (64, as
    /// serde-saphyr's) stays well inside a 2 MiB thread stack; deep CRD schemas need ~40.
    pub max_depth: usize,
    /// Most YAML nodes (mappings, sequences, scalars), counting those produced by replaying
    /// aliases.
    pub max_nodes: usize,
    /// Most parser events replayed through aliases (`*name`): the "billion laughs" limit.
    pub max_alias_expansion: usize,
    /// Most bytes of scalar text, counting text copied by alias expansion.
    pub max_scalar_bytes: usize,
    /// Most nodes of all files of a revision together, aliases expanded (JSON files count
    /// too).
    pub max_revision_nodes: usize,
    /// Most bytes of scalar text (keys included) of all files of a revision together, aliases
    /// expanded.
    pub max_revision_scalar_bytes: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 * 1024 * 1024,
            max_documents: 1024,
            max_depth: 64,
            max_nodes: 1_000_000,
            max_alias_expansion: 100_000,
            max_scalar_bytes: 64 * 1024 * 1024,
            // Twice one file's nodes; the text as much as a revision's files may hold in all
            // (the source engine's 64 MiB), so only expansion can reach it.
            max_revision_nodes: 2_000_000,
            max_revision_scalar_bytes: 64 * 1024 * 1024,
        }
    }
}

impl Budget {
    /// serde-saphyr options enforcing this budget while parsing YAML.
    ///
    /// Besides the limits, the options follow what `kubectl` accepts (its YAML 1.1 parser):
    /// `0644` is an octal number, as `defaultMode: 0644` in a pod spec means; duplicate keys
    /// stay an error, because silently keeping one of two values is a deployment surprise.
    /// Snippets are off: errors must fit on one line of a status condition.
    pub fn yaml_options(&self) -> serde_saphyr::Options {
        serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_documents: self.max_documents,
                max_depth: self.max_depth,
                max_nodes: self.max_nodes,
                max_total_scalar_bytes: self.max_scalar_bytes,
            },
            alias_limits: serde_saphyr::alias_limits! {
                max_total_replayed_events: self.max_alias_expansion,
            },
            legacy_octal_numbers: true,
            with_snippet: false,
        }
    }
}

/// What the files read so far of one revision hold, aliases expanded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RevisionUsage {
    pub nodes: usize,
    pub scalar_bytes: usize,
}

impl RevisionUsage {
    /// The budget for the next file: the per-file limits, lowered to what the revision has
    /// left, so that the parser itself stops where the revision's budget ends.
    pub fn allowance(&self, budget: &Budget) -> Budget {
        Budget {
            max_nodes: budget
                .max_nodes
                .min(budget.max_revision_nodes.saturating_sub(self.nodes)),
            max_scalar_bytes: budget.max_scalar_bytes.min(
                budget
                    .max_revision_scalar_bytes
                    .saturating_sub(self.scalar_bytes),
            ),
            ..budget.clone()
        }
    }

    /// Whether `allowance` is tighter than the per-file limits, i.e. a resource-limit error
    /// under it may be the revision's budget running out rather than the file's own.
    pub fn lowers(allowance: &Budget, budget: &Budget) -> bool {
        allowance.max_nodes < budget.max_nodes
            || allowance.max_scalar_bytes < budget.max_scalar_bytes
    }

    /// Adds what another file used.
    pub fn add_usage(&mut self, other: RevisionUsage) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.scalar_bytes = self.scalar_bytes.saturating_add(other.scalar_bytes);
    }

    /// Adds what `value` holds.
    pub fn add(&mut self, value: &Value) {
        let mut pending = vec![value];
        while let Some(value) = pending.pop() {
            self.nodes = self.nodes.saturating_add(1);
            match value {
                Value::String(text) => self.add_text(text),
                Value::Array(items) => pending.extend(items),
                Value::Object(fields) => {
                    for (key, value) in fields {
                        self.nodes = self.nodes.saturating_add(1);
                        self.add_text(key);
                        pending.push(value);
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
    }

    fn add_text(&mut self, text: &str) {
        self.scalar_bytes = self.scalar_bytes.saturating_add(text.len());
    }

    /// Whether the revision is over its budget.
    pub fn over(&self, budget: &Budget) -> bool {
        self.nodes > budget.max_revision_nodes
            || self.scalar_bytes > budget.max_revision_scalar_bytes
    }

    /// The message of a revision whose budget ran out in one file.
    pub fn exhausted(budget: &Budget, detail: Option<&str>) -> String {
        let mut message = format!(
            "the revision's files together exceed its budget of {} nodes and {} bytes of text \
             (aliases expanded), which ran out in this file",
            budget.max_revision_nodes, budget.max_revision_scalar_bytes
        );
        if let Some(detail) = detail {
            message.push_str(": ");
            message.push_str(detail);
        }
        message
    }
}

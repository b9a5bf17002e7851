//! Resource limits for reading one manifest file.

/// Limits applied to every manifest file, so that a hostile or broken commit (an alias bomb,
/// pathological nesting, a huge generated file) fails with an error instead of exhausting the
/// controller's memory or stack.
///
/// Every limit is per file. The defaults are generous for real Kubernetes manifests, including
/// large CRD bundles, and far below what an amplification attack needs.
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
    pub(super) fn yaml_options(&self) -> serde_saphyr::Options {
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

//! Flux-compatible post-build variable substitution on manifest text: `${var}`,
//! `${var:=default}` (also `:-`, `=`, `-`), `$${var}` for a literal `${var}`. Strict: a
//! variable without a value or a default fails, naming it. Objects annotated or labelled
//! `kustomize.toolkit.fluxcd.io/substitute: disabled` (Flux's) or
//! `driftless.dev/substitute: disabled` are left as they are.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::manifests::Budget;

/// The opt-out keys, accepted as an annotation or a label.
pub const OPT_OUT_KEYS: [&str; 2] = [
    "kustomize.toolkit.fluxcd.io/substitute",
    crate::api::SUBSTITUTE_ANNOTATION,
];

/// A variable used without a value or default, a malformed expression, or output past its
/// bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    #[error("{file}: {object}: variable {name:?} is not set and has no default")]
    Undefined {
        file: String,
        object: String,
        name: String,
    },
    #[error("{file}: {object}: {reason}")]
    Malformed {
        file: String,
        object: String,
        reason: String,
    },
    #[error(
        "{file}: {object}: substituting the variables makes the stream larger than {limit} \
         bytes ({bound}); substitution stopped there"
    )]
    TooLarge {
        file: String,
        object: String,
        /// Bytes the stream's output may hold.
        limit: usize,
        /// Which bound it is, as the message says it.
        bound: Bound,
    },
}

/// The bound a substitution ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The manifest reader's largest file ([`Budget::max_file_bytes`]).
    File,
    /// What substitution may add to all streams of a revision together
    /// ([`Budget::max_revision_scalar_bytes`]).
    Revision,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bound::File => "the largest manifest file accepted",
            Bound::Revision => "what substitution may add to one revision's manifests in all",
        })
    }
}

/// How large substitution may make a revision's streams, from the manifest budgets: each
/// stream at most the largest file the manifest reader accepts (anything larger is refused
/// there anyway), and all streams together at most [`Budget::max_revision_scalar_bytes`]
/// larger than before. Both bound the output while it is built, so a small file repeating a
/// long variable is stopped at the limit instead of growing without end.
#[derive(Clone, Debug)]
pub struct Allowance {
    max_stream_bytes: usize,
    growth_left: usize,
}

impl Allowance {
    pub fn new(budget: &Budget) -> Self {
        Self {
            max_stream_bytes: budget.max_file_bytes,
            growth_left: budget.max_revision_scalar_bytes,
        }
    }

    /// The most bytes a stream of `input_len` bytes may grow to, and which bound that is.
    fn limit_for(&self, input_len: usize) -> (usize, Bound) {
        let by_revision = input_len.saturating_add(self.growth_left);
        if by_revision < self.max_stream_bytes {
            (by_revision, Bound::Revision)
        } else {
            (self.max_stream_bytes, Bound::File)
        }
    }

    fn spend(&mut self, input_len: usize, output_len: usize) {
        let grown = output_len.saturating_sub(input_len);
        self.growth_left = self.growth_left.saturating_sub(grown);
    }
}

/// Substitutes `variables` in every document of `text` (a YAML stream) that does not opt out,
/// within `allowance` (spent by what the stream grows), parsing each document within
/// `budget`. `file` names the stream in errors.
pub fn substitute_stream(
    file: &str,
    text: &str,
    variables: &BTreeMap<String, String>,
    budget: &Budget,
    allowance: &mut Allowance,
) -> Result<String, SubstituteError> {
    let (limit, bound) = allowance.limit_for(text.len());
    let mut out = Output::new(text.len(), limit);
    for document in split_documents(text) {
        if !document.contains('$') || opts_out(document, budget) {
            out.push(document)
                .map_err(|TooLarge| too_large(file, document, budget, limit, bound))?;
            continue;
        }
        substitute(document, variables, &mut out).map_err(|problem| {
            let object = || describe(document, budget);
            match problem {
                Problem::Undefined(name) => SubstituteError::Undefined {
                    file: file.to_owned(),
                    object: object(),
                    name,
                },
                Problem::Malformed(reason) => SubstituteError::Malformed {
                    file: file.to_owned(),
                    object: object(),
                    reason,
                },
                Problem::TooLarge => too_large(file, document, budget, limit, bound),
            }
        })?;
    }
    let out = out.finish();
    allowance.spend(text.len(), out.len());
    Ok(out)
}

fn too_large(
    file: &str,
    document: &str,
    budget: &Budget,
    limit: usize,
    bound: Bound,
) -> SubstituteError {
    SubstituteError::TooLarge {
        file: file.to_owned(),
        object: describe(document, budget),
        limit,
        bound,
    }
}

/// Output past its limit.
#[derive(Debug)]
struct TooLarge;

/// A string that never holds, nor allocates, more than its limit.
struct Output {
    text: String,
    limit: usize,
}

impl Output {
    fn new(expected: usize, limit: usize) -> Self {
        Self {
            text: String::with_capacity(expected.min(limit)),
            limit,
        }
    }

    fn push(&mut self, piece: &str) -> Result<(), TooLarge> {
        let needed = self.text.len().saturating_add(piece.len());
        if needed > self.limit {
            return Err(TooLarge);
        }
        if needed > self.text.capacity() {
            // Doubling, as String does, but never past the limit.
            let target = needed
                .max(self.text.capacity().saturating_mul(2))
                .min(self.limit);
            self.text.reserve_exact(target - self.text.len());
        }
        self.text.push_str(piece);
        Ok(())
    }

    fn finish(self) -> String {
        self.text
    }
}

/// The documents of a stream with their separators, so that joining them gives the text back
/// and line numbers stay as they were.
fn split_documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > start
            && (line.starts_with("---\n") || line == "---" || line.starts_with("--- "))
        {
            documents.push(&text[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    documents.push(&text[start..]);
    documents
}

/// The document's first non-null value, parsed within the manifest budget (a document over
/// it is left to the manifest reader to report).
fn parse_document(document: &str, budget: &Budget) -> Option<Value> {
    serde_saphyr::from_multiple_with_options::<Value>(document, budget.yaml_options())
        .ok()?
        .into_iter()
        .find(|d| !d.is_null())
}

fn opts_out(document: &str, budget: &Budget) -> bool {
    let Some(object) = parse_document(document, budget) else {
        return false;
    };
    OPT_OUT_KEYS.iter().any(|key| {
        ["annotations", "labels"].iter().any(|field| {
            object
                .pointer(&format!("/metadata/{field}"))
                .and_then(|m| m.get(*key))
                .and_then(Value::as_str)
                == Some("disabled")
        })
    })
}

/// `Kind name` of a document, for errors.
fn describe(document: &str, budget: &Budget) -> String {
    let object = parse_document(document, budget);
    let field = |pointer: &str| {
        object
            .as_ref()
            .and_then(|o| o.pointer(pointer))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned()
    };
    format!("{} {}", field("/kind"), field("/metadata/name"))
}

enum Problem {
    Undefined(String),
    Malformed(String),
    TooLarge,
}

impl From<TooLarge> for Problem {
    fn from(_: TooLarge) -> Self {
        Problem::TooLarge
    }
}

fn substitute(
    text: &str,
    variables: &BTreeMap<String, String>,
    out: &mut Output,
) -> Result<(), Problem> {
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push(&rest[..at])?;
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            // `$${var}`: a literal `${var}`.
            out.push("${")?;
            rest = escaped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push("$")?;
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(Problem::Malformed("unterminated ${".to_owned()));
        };
        out.push(expand(&body_start[..end], variables)?)?;
        rest = &body_start[end + 1..];
    }
    out.push(rest)?;
    Ok(())
}

/// One `${...}` body: `name`, `name:=default`, `name:-default`, `name=default`, `name-default`.
fn expand<'a>(body: &'a str, variables: &'a BTreeMap<String, String>) -> Result<&'a str, Problem> {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(body.len());
    let (name, operator) = body.split_at(name_end);
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_name {
        return Err(Problem::Malformed(format!(
            "invalid variable name in ${{{body}}}"
        )));
    }
    let value = variables.get(name);
    let default = [":=", ":-", "=", "-"]
        .iter()
        .find_map(|op| operator.strip_prefix(op).map(|d| (op, d)));
    match (value, default) {
        (Some(value), Some((op, default))) if value.is_empty() && op.starts_with(':') => {
            Ok(default)
        }
        (Some(value), _) if operator.is_empty() || default.is_some() => Ok(value.as_str()),
        (None, Some((_, default))) => Ok(default),
        (None, None) if operator.is_empty() => Err(Problem::Undefined(name.to_owned())),
        _ => Err(Problem::Malformed(format!(
            "unsupported expression ${{{body}}}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        file: &str,
        text: &str,
        variables: &BTreeMap<String, String>,
    ) -> Result<String, SubstituteError> {
        let budget = Budget::default();
        substitute_stream(file, text, variables, &budget, &mut Allowance::new(&budget))
    }

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cluster".to_owned(), "prod".to_owned()),
            ("empty".to_owned(), String::new()),
        ])
    }

    #[test]
    fn values_defaults_and_escapes() {
        let text = "a: ${cluster}\nb: ${missing:=x}\nc: ${empty:=y}\nd: ${empty=z}\ne: $${cluster}\nf: $5\n";
        let out = run("f.yaml", text, &vars()).unwrap();
        assert_eq!(out, "a: prod\nb: x\nc: y\nd: \ne: ${cluster}\nf: $5\n");
    }

    #[test]
    fn an_undefined_variable_names_itself_the_file_and_the_object() {
        let text = "kind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: ${region}\n";
        let error = run("apps (kustomize build)", text, &vars()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "apps (kustomize build): ConfigMap app: variable \"region\" is not set and has no default"
        );
    }

    #[test]
    fn objects_can_opt_out_with_flux_or_driftless_keys() {
        let flux = "kind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  x: ${undefined}\n";
        let ours = "kind: ConfigMap\nmetadata:\n  name: b\n  labels:\n    driftless.dev/substitute: disabled\ndata:\n  x: ${undefined}\n";
        let other = "kind: ConfigMap\nmetadata:\n  name: c\ndata:\n  x: ${cluster}\n";
        let text = format!("{flux}---\n{ours}---\n{other}");
        let out = run("f", &text, &vars()).unwrap();
        assert_eq!(
            out,
            format!(
                "{flux}---\n{ours}---\n{}",
                other.replace("${cluster}", "prod")
            )
        );
    }

    #[test]
    fn malformed_expressions_are_errors_not_guesses() {
        for text in ["a: ${unterminated\n", "a: ${1abc}\n", "a: ${x:0:2}\n"] {
            assert!(
                matches!(
                    run("f", text, &vars()),
                    Err(SubstituteError::Malformed { .. })
                ),
                "{text}"
            );
        }
    }

    /// A 400 KB stream repeating `${X}` with a 2 KiB value would grow to 200 MB: it stops at
    /// the manifest file limit, with the file, the object and the limit named, and the output
    /// never holds (nor allocates) more than that limit.
    #[test]
    fn a_repeated_long_variable_stops_at_the_file_limit_while_the_output_is_built() {
        let header = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  v: \"";
        let text = format!("{header}{}\"\n", "${X}".repeat(100_000));
        let variables = BTreeMap::from([("X".to_owned(), "x".repeat(2048))]);
        let budget = Budget::default();
        let started = std::time::Instant::now();
        let error = run("big.yaml", &text, &variables).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            error,
            SubstituteError::TooLarge {
                file: "big.yaml".into(),
                object: "ConfigMap bomb".into(),
                limit: budget.max_file_bytes,
                bound: Bound::File,
            }
        );
        assert_eq!(
            error.to_string(),
            format!(
                "big.yaml: ConfigMap bomb: substituting the variables makes the stream larger \
                 than {} bytes (the largest manifest file accepted); substitution stopped there",
                budget.max_file_bytes
            )
        );

        let mut out = Output::new(text.len(), budget.max_file_bytes);
        assert!(matches!(
            substitute(&text, &variables, &mut out),
            Err(Problem::TooLarge)
        ));
        assert!(out.text.len() <= budget.max_file_bytes);
        assert!(
            out.text.capacity() <= budget.max_file_bytes,
            "allocated {} bytes for a limit of {}",
            out.text.capacity(),
            budget.max_file_bytes
        );
    }

    /// Many streams each under the file limit cannot add up past the revision's budget.
    #[test]
    fn what_all_streams_add_together_is_bounded_by_the_revision_budget() {
        let budget = Budget {
            max_file_bytes: 1000,
            max_revision_scalar_bytes: 2500,
            ..Budget::default()
        };
        let variables = BTreeMap::from([("X".to_owned(), "x".repeat(100))]);
        let stream = format!("a: {}\n", "${X}".repeat(9)); // 40 bytes in, 904 out
        let mut allowance = Allowance::new(&budget);
        for file in ["one.yaml", "two.yaml"] {
            let out = substitute_stream(file, &stream, &variables, &budget, &mut allowance);
            assert_eq!(out.map(|o| o.len()), Ok(904), "{file}");
        }
        let third = substitute_stream("three.yaml", &stream, &variables, &budget, &mut allowance)
            .unwrap_err();
        assert!(
            matches!(
                &third,
                SubstituteError::TooLarge { file, bound: Bound::Revision, limit, .. }
                    if file == "three.yaml" && *limit == stream.len() + 2500 - 2 * (904 - stream.len())
            ),
            "{third:?}"
        );
    }

    /// The documents looked into (for the opt-out and for messages) are parsed within the
    /// manifest budget: an alias bomb is not expanded.
    #[test]
    fn documents_are_parsed_within_the_manifest_budget() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: ${cluster}\n";
        let budget = Budget {
            max_alias_expansion: 1000,
            ..Budget::default()
        };
        assert!(parse_document(bomb, &budget).is_none());
        let out = substitute_stream("f", bomb, &vars(), &budget, &mut Allowance::new(&budget));
        assert!(out.unwrap().ends_with("f: prod\n"));
    }
}

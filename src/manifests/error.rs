//! Errors found while reading manifests, each pointing at the place a user must fix.

use std::fmt;

use super::ObjectId;

/// Where a document (or one item of a `List` document) sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based index of the document in its file, counting empty documents, so that it
    /// matches counting `---` separators by eye.
    pub document: usize,
    /// 1-based line of the problem: the document's first line of content, or the line a
    /// parser reported.
    pub line: usize,
    /// 0-based index in `items` when the object came out of a `List`.
    pub list_item: Option<usize>,
}

impl Position {
    pub(super) fn document(document: usize, line: usize) -> Self {
        Self {
            document,
            line,
            list_item: None,
        }
    }

    pub(super) fn list_item(self, index: usize) -> Self {
        Self {
            list_item: Some(index),
            ..self
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {} (line {})", self.document, self.line)?;
        match self.list_item {
            Some(index) => write!(f, ", items[{index}]"),
            None => Ok(()),
        }
    }
}

/// One problem in one file, displayed as `file: document 2 (line 17): problem`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{problem}", .position.map(|p| format!("{p}: ")).unwrap_or_default())]
pub struct ManifestError {
    pub file: String,
    /// `None` when the problem concerns the whole file (too large, not UTF-8).
    pub position: Option<Position>,
    pub problem: Problem,
}

impl ManifestError {
    pub(super) fn in_file(file: &str, problem: Problem) -> Self {
        Self {
            file: file.to_owned(),
            position: None,
            problem,
        }
    }

    pub(super) fn at(file: &str, position: Position, problem: Problem) -> Self {
        Self {
            file: file.to_owned(),
            position: Some(position),
            problem,
        }
    }

    pub(super) fn is_resource_limit(&self) -> bool {
        matches!(self.problem, Problem::ResourceLimit(_))
    }

    /// This resource-limit error, restated as the revision's budget running out here.
    pub(super) fn into_revision_limit(self, budget: &super::Budget) -> Self {
        let detail = match &self.problem {
            Problem::ResourceLimit(detail) => Some(detail.as_str()),
            _ => None,
        };
        let message = super::budget::RevisionUsage::exhausted(budget, detail);
        Self {
            problem: Problem::RevisionLimit(message),
            ..self
        }
    }
}

/// What is wrong, independent of where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    FileTooLarge { size: usize, limit: usize },
    #[error("file is not valid UTF-8 (first invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    /// The text is not well-formed YAML; the message carries the parser's line and column.
    #[error("invalid YAML: {0}")]
    InvalidYaml(String),
    #[error("invalid JSON: {message} at line {line}, column {column}")]
    InvalidJson {
        message: String,
        line: usize,
        column: usize,
    },
    /// A resource budget tripped (alias expansion, depth, size, count): the file is refused
    /// rather than expanded.
    #[error("refused, it exceeds a resource limit: {0}")]
    ResourceLimit(String),
    /// The revision's budget, shared by all its files, ran out in this file.
    #[error("refused, {0}")]
    RevisionLimit(String),
    #[error("document is {found}, not a Kubernetes object (a mapping)")]
    NotAnObject { found: &'static str },
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{0} must be a non-empty string")]
    NotAString(&'static str),
    #[error("invalid apiVersion {0:?}: expected `version` or `group/version`")]
    InvalidApiVersion(String),
    #[error("{kind} has `items` that is not a list")]
    ListItemsNotAList { kind: String },
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error(transparent)]
    Duplicate(Box<Duplicate>),
}

/// The same object defined a second time (the error is reported at the second place).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{id} is defined twice; first in {first_file}: {first}")]
pub struct Duplicate {
    pub id: ObjectId,
    pub first_file: String,
    pub first: Position,
}

/// Every problem found in a revision's manifests: all of them are reported at once, so a
/// user fixes a commit in one round instead of one error per reconcile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_list(.0))]
pub struct ManifestErrors(pub Vec<ManifestError>);

fn render_list(errors: &[ManifestError]) -> String {
    let plural = if errors.len() == 1 { "" } else { "s" };
    let mut text = format!("{} manifest error{plural}:", errors.len());
    for error in errors {
        text.push_str("\n  ");
        text.push_str(&error.to_string());
    }
    text
}

//! Turning the bytes of one file into positioned documents, within a [`Budget`].

use serde_json::Value;
use serde_saphyr::Spanned;
use serde_saphyr::granit_parser::{Event, Parser};

use super::Budget;
use super::error::{ManifestError, Position, Problem};

/// One non-empty document of a file, before any Kubernetes-specific check.
#[derive(Debug)]
pub(super) struct RawDocument {
    pub position: Position,
    pub value: Value,
}

/// Parses a whole file, or explains why it cannot be parsed. A file with a syntax error
/// yields no documents at all: what follows the error is unknown, and applying half a file
/// would be worse than applying none of it.
pub(super) fn parse_file(
    file: &str,
    bytes: &[u8],
    budget: &Budget,
) -> Result<Vec<RawDocument>, ManifestError> {
    if bytes.len() > budget.max_file_bytes {
        let problem = Problem::FileTooLarge {
            size: bytes.len(),
            limit: budget.max_file_bytes,
        };
        return Err(ManifestError::in_file(file, problem));
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let problem = Problem::NotUtf8 {
            offset: error.valid_up_to(),
        };
        ManifestError::in_file(file, problem)
    })?;
    if is_json(file) {
        parse_json(file, text, budget)
    } else {
        parse_yaml(file, text, budget)
    }
}

/// JSON is valid YAML, but a JSON parser's errors speak about the JSON a user wrote.
fn is_json(file: &str) -> bool {
    file.rsplit('.')
        .next()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("json"))
}

fn parse_yaml(file: &str, text: &str, budget: &Budget) -> Result<Vec<RawDocument>, ManifestError> {
    let starts = document_start_lines(text);
    let documents =
        serde_saphyr::from_multiple_with_options::<Spanned<Value>>(text, budget.yaml_options())
            .map_err(|error| yaml_error(file, &starts, &error))?;
    Ok(documents
        .into_iter()
        .map(|document| {
            let line = document.referenced.line() as usize;
            RawDocument {
                position: Position::document(document_at_line(&starts, line), line),
                value: document.value,
            }
        })
        .collect())
}

/// The line on which each document of the stream starts, in order.
///
/// serde-saphyr drops empty documents without telling which ones, so their indices come
/// from a second, cheap pass over the raw parser events: it neither builds values nor
/// expands aliases. It stops at the first syntax error, which serde-saphyr reports.
fn document_start_lines(text: &str) -> Vec<usize> {
    Parser::new_from_str(text)
        .map_while(Result::ok)
        .filter(|(event, _)| matches!(event, Event::DocumentStart(..)))
        .map(|(_, span)| span.start.line())
        .collect()
}

/// 1-based index of the document containing `line`, given each document's start line.
fn document_at_line(starts: &[usize], line: usize) -> usize {
    starts.partition_point(|&start| start <= line).max(1)
}

fn yaml_error(file: &str, starts: &[usize], error: &serde_saphyr::Error) -> ManifestError {
    let reported_line = error
        .location()
        .map(|location| location.line() as usize)
        .filter(|&line| line > 0);
    let line = reported_line.unwrap_or_else(|| starts.last().copied().unwrap_or(1));
    let position = Position::document(document_at_line(starts, line), line);
    let message = error.to_string();
    let problem = if is_resource_limit(error) {
        Problem::ResourceLimit(message)
    } else {
        Problem::InvalidYaml(message)
    };
    ManifestError::at(file, position, problem)
}

fn is_resource_limit(error: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match error {
        E::AliasError { error, .. } | E::WithSnippet { error, .. } => is_resource_limit(error),
        E::Budget { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => true,
        _ => false,
    }
}

/// Reads a JSON file as a stream of values, as `kubectl` does, so concatenated objects work.
fn parse_json(file: &str, text: &str, budget: &Budget) -> Result<Vec<RawDocument>, ManifestError> {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut documents = Vec::new();
    let mut index = 0;
    loop {
        let line = line_of_next_value(text, stream.byte_offset());
        let value = match stream.next() {
            None => return Ok(documents),
            Some(Ok(value)) => value,
            Some(Err(error)) => return Err(json_syntax_error(file, index + 1, &error)),
        };
        index += 1;
        let position = Position::document(index, line);
        check_json_budget(index, &value, budget)
            .map_err(|problem| ManifestError::at(file, position, problem))?;
        if !value.is_null() {
            documents.push(RawDocument { position, value });
        }
    }
}

fn line_of_next_value(text: &str, offset: usize) -> usize {
    let rest = &text[offset..];
    let leading_whitespace = rest.len() - rest.trim_start().len();
    line_of_offset(text, offset + leading_whitespace)
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
}

fn json_syntax_error(file: &str, document: usize, error: &serde_json::Error) -> ManifestError {
    let message = error.to_string();
    let message = match message.rfind(" at line ") {
        Some(suffix) => message[..suffix].to_owned(),
        None => message,
    };
    let problem = Problem::InvalidJson {
        message,
        line: error.line(),
        column: error.column(),
    };
    ManifestError::at(file, Position::document(document, error.line()), problem)
}

/// serde_json already stops recursion at 128 levels; this applies the same limits as YAML
/// so that the format of a file does not change what is accepted.
fn check_json_budget(index: usize, value: &Value, budget: &Budget) -> Result<(), Problem> {
    if index > budget.max_documents {
        return Err(Problem::ResourceLimit(format!(
            "more than {} documents",
            budget.max_documents
        )));
    }
    let depth = nesting_depth(value);
    if depth > budget.max_depth {
        return Err(Problem::ResourceLimit(format!(
            "nesting depth {depth} is over the limit of {}",
            budget.max_depth
        )));
    }
    Ok(())
}

fn nesting_depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(nesting_depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(nesting_depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_index_counts_empty_documents() {
        let starts = document_start_lines("a: 1\n---\n---\n# only a comment\n---\nb: 2\n");
        assert_eq!(starts, vec![1, 2, 3, 5]);
        assert_eq!(document_at_line(&starts, 6), 4);
    }

    #[test]
    fn json_extension_is_case_insensitive() {
        assert!(is_json("a/b.JSON"));
        assert!(!is_json("a/json.yaml"));
    }
}

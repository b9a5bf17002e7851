//! Flux-compatible post-build variable substitution on manifest text: `${var}`,
//! `${var:=default}` (also `:-`, `=`, `-`), `$${var}` for a literal `${var}`. Strict: a
//! variable without a value or a default fails, naming it. Objects annotated or labelled
//! `kustomize.toolkit.fluxcd.io/substitute: disabled` (Flux's) or
//! `driftless.dev/substitute: disabled` are left as they are.

use std::collections::BTreeMap;

use serde_json::Value;

/// The opt-out keys, accepted as an annotation or a label.
pub const OPT_OUT_KEYS: [&str; 2] = [
    "kustomize.toolkit.fluxcd.io/substitute",
    crate::api::SUBSTITUTE_ANNOTATION,
];

/// A variable used without a value or default, or a malformed expression.
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
}

/// Substitutes `variables` in every document of `text` (a YAML stream) that does not opt out.
/// `file` names the stream in errors.
pub fn substitute_stream(
    file: &str,
    text: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(text.len());
    for document in split_documents(text) {
        if !document.contains('$') || opts_out(document) {
            out.push_str(document);
            continue;
        }
        let object = describe(document);
        let substituted = substitute(document, variables).map_err(|problem| match problem {
            Problem::Undefined(name) => SubstituteError::Undefined {
                file: file.to_owned(),
                object: object.clone(),
                name,
            },
            Problem::Malformed(reason) => SubstituteError::Malformed {
                file: file.to_owned(),
                object: object.clone(),
                reason,
            },
        })?;
        out.push_str(&substituted);
    }
    Ok(out)
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

fn parse_document(document: &str) -> Option<Value> {
    serde_saphyr::from_multiple::<Value>(document)
        .ok()?
        .into_iter()
        .find(|d| !d.is_null())
}

fn opts_out(document: &str) -> bool {
    let Some(object) = parse_document(document) else {
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
fn describe(document: &str) -> String {
    let object = parse_document(document);
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
}

fn substitute(text: &str, variables: &BTreeMap<String, String>) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(escaped) = after.strip_prefix("${") {
            // `$${var}`: a literal `${var}`.
            out.push_str("${");
            rest = escaped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(Problem::Malformed("unterminated ${".to_owned()));
        };
        out.push_str(&expand(&body_start[..end], variables)?);
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One `${...}` body: `name`, `name:=default`, `name:-default`, `name=default`, `name-default`.
fn expand(body: &str, variables: &BTreeMap<String, String>) -> Result<String, Problem> {
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
            Ok(default.to_owned())
        }
        (Some(value), _) if operator.is_empty() || default.is_some() => Ok(value.clone()),
        (None, Some((_, default))) => Ok(default.to_owned()),
        (None, None) if operator.is_empty() => Err(Problem::Undefined(name.to_owned())),
        _ => Err(Problem::Malformed(format!(
            "unsupported expression ${{{body}}}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("cluster".to_owned(), "prod".to_owned()),
            ("empty".to_owned(), String::new()),
        ])
    }

    #[test]
    fn values_defaults_and_escapes() {
        let text = "a: ${cluster}\nb: ${missing:=x}\nc: ${empty:=y}\nd: ${empty=z}\ne: $${cluster}\nf: $5\n";
        let out = substitute_stream("f.yaml", text, &vars()).unwrap();
        assert_eq!(out, "a: prod\nb: x\nc: y\nd: \ne: ${cluster}\nf: $5\n");
    }

    #[test]
    fn an_undefined_variable_names_itself_the_file_and_the_object() {
        let text = "kind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: ${region}\n";
        let error = substitute_stream("apps (kustomize build)", text, &vars()).unwrap_err();
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
        let out = substitute_stream("f", &text, &vars()).unwrap();
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
                    substitute_stream("f", text, &vars()),
                    Err(SubstituteError::Malformed { .. })
                ),
                "{text}"
            );
        }
    }
}

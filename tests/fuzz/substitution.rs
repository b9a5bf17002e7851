//! postBuild substitution on rendered manifests: text without `$` passes through untouched,
//! generated templates substitute exactly, a stream is the sum of its documents, and the output
//! grows at most linearly with the input.

use std::collections::BTreeMap;

use driftless::manifests::Budget;
use driftless::render::substitute::{Allowance, SubstituteError};
use proptest::prelude::*;

use crate::support::{config, each_entry, mutated_text, timed};

const PARSER: &str = "substitution";

const TOKENS: &[&[u8]] = &[
    b"$",
    b"${",
    b"}",
    b"$${",
    b"${CLUSTER}",
    b"${REGION:=x}",
    b"${UNSET:-d}",
    b"${EMPTY=}",
    b"${WEIRD}",
    b":=",
    b"\n---\n",
    b"---",
    b"kustomize.toolkit.fluxcd.io/substitute: disabled",
    b"&a ",
    b"*a",
];

fn variables() -> BTreeMap<String, String> {
    [
        ("CLUSTER", "prod"),
        ("REGION", "eu-west-1"),
        ("REPLICAS", "3"),
        ("EMPTY", ""),
        ("WEIRD", "${CLUSTER}$${x}\n---\n"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// One stream within the default manifest budgets, as a revision's first file.
fn substitute(
    file: &str,
    text: &str,
    variables: &BTreeMap<String, String>,
) -> Result<String, SubstituteError> {
    let budget = Budget::default();
    driftless::render::substitute::substitute_stream(
        file,
        text,
        variables,
        &budget,
        &mut Allowance::new(&budget),
    )
}

fn check(text: &str) {
    let variables = variables();
    let result = timed("substitute_stream", || {
        substitute("app/manifest.yaml", text, &variables)
    });
    if !text.contains('$') {
        assert_eq!(result.as_deref(), Ok(text), "text without `$` was changed");
    }
    if let Ok(out) = &result {
        let longest = variables.values().map(String::len).max().unwrap_or(0);
        let bound = text.len() + text.matches('$').count() * longest;
        assert!(
            out.len() <= bound,
            "{} bytes grew to {} (bound {bound})",
            text.len(),
            out.len()
        );
    }
}

#[test]
fn corpus_substitutions_keep_their_invariants() {
    each_entry(PARSER, |bytes| check(&String::from_utf8_lossy(bytes)));
}

/// A template piece: literal text, or a reference to a variable that has a value.
#[derive(Clone, Debug)]
enum Piece {
    Text(String),
    Reference(String),
    Default(String, String),
    Escaped(String),
}

fn piece() -> impl Strategy<Value = Piece> {
    let name = prop::sample::select(vec!["CLUSTER", "REGION", "REPLICAS", "EMPTY", "WEIRD"]);
    prop_oneof![
        3 => "[a-z0-9 :\n-]{0,20}".prop_map(Piece::Text),
        2 => name.clone().prop_map(|n| Piece::Reference(n.to_owned())),
        1 => ("[A-Z_]{1,8}", "[a-z0-9 .-]{0,10}").prop_map(|(n, d)| Piece::Default(n, d)),
        1 => "[A-Z_]{1,8}".prop_map(Piece::Escaped),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_substitutions_keep_their_invariants(text in mutated_text(PARSER, TOKENS)) {
        check(&text);
    }

    /// A template of literal text and references comes out with exactly the values in place;
    /// values are not substituted again.
    #[test]
    fn generated_templates_substitute_exactly(pieces in proptest::collection::vec(piece(), 0..12)) {
        let variables = variables();
        let mut template = String::from("kind: ConfigMap\ndata: |\n  ");
        let mut expected = template.clone();
        for piece in &pieces {
            match piece {
                Piece::Text(text) => {
                    template.push_str(text);
                    expected.push_str(text);
                }
                Piece::Reference(name) => {
                    template.push_str(&format!("${{{name}}}"));
                    expected.push_str(&variables[name]);
                }
                Piece::Default(name, default) => {
                    template.push_str(&format!("${{{name}:={default}}}"));
                    // `:=` takes the default for an unset or empty variable.
                    let value = variables.get(name).filter(|v| !v.is_empty());
                    expected.push_str(value.map(String::as_str).unwrap_or(default));
                }
                Piece::Escaped(name) => {
                    template.push_str(&format!("$${{{name}}}"));
                    expected.push_str(&format!("${{{name}}}"));
                }
            }
        }
        let out = substitute("f.yaml", &template, &variables);
        prop_assert_eq!(out, Ok(expected), "template {:?}", template);
    }

    /// A stream substitutes as its documents do one by one.
    #[test]
    fn a_stream_is_the_sum_of_its_documents(
        a in mutated_text(PARSER, TOKENS),
        b in mutated_text(PARSER, TOKENS),
    ) {
        let variables = variables();
        let a = if a.ends_with('\n') { a } else { format!("{a}\n") };
        let b = format!("---\n{b}");
        let (Ok(first), Ok(second)) = (
            substitute("f", &a, &variables),
            substitute("f", &b, &variables),
        ) else {
            return Ok(());
        };
        prop_assert_eq!(substitute("f", &format!("{a}{b}"), &variables), Ok(first + &second));
    }
}

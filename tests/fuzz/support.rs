//! What every harness shares: the committed corpus of a parser, byte-level mutations of its
//! entries, the case count and the per-case time bound.
//!
//! proptest (stable toolchain, no sanitizers) drives the mutations: each case picks a corpus
//! entry, applies a handful of mutations (flip, insert, delete, duplicate a slice, splice from
//! another entry, insert a token the parser cares about), and hands the result to the parser.
//! Every corpus entry is also run unmutated first, so a committed regression case is checked on
//! every run whatever the case count.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

/// Cases per harness in `make test`; `make fuzz` raises it through `DRIFTLESS_FUZZ_CASES`.
const DEFAULT_CASES: u32 = 256;

/// No single parse may take longer than this: every parser here reads untrusted input and must
/// stay linear in it (or be cut short by a budget). Inputs are at most a few KiB and parse in
/// microseconds to milliseconds; the margin is for a debug build on a machine at load 30,
/// where a thread can wait seconds for a core, while an amplification would take far longer.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The proptest configuration for one harness: `DRIFTLESS_FUZZ_CASES` cases (256 by default).
/// A failure prints the minimal input; copy it into the parser's corpus as a regression case.
pub fn config() -> Config {
    let cases = match std::env::var("DRIFTLESS_FUZZ_CASES") {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("DRIFTLESS_FUZZ_CASES={text:?} is not a number")),
        Err(_) => DEFAULT_CASES,
    };
    Config {
        cases,
        // Regressions live in the committed corpus, not in proptest's own files.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

fn corpus_dir(parser: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(parser)
}

/// Every entry of `tests/fuzz/corpus/<parser>/`, by file name, sorted. An empty or missing
/// corpus fails: a harness without seeds would test much less than its name says.
pub fn corpus(parser: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(parser);
    let mut entries: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|entry| {
            let entry = entry.expect("corpus entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).expect("corpus file");
            (name, bytes)
        })
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 3,
        "corpus {} holds {} entries; a harness needs real seeds",
        dir.display(),
        entries.len()
    );
    entries
}

/// Runs `check` on every corpus entry as committed, naming the entry on failure.
pub fn each_entry(parser: &str, mut check: impl FnMut(&[u8])) {
    for (name, bytes) in corpus(parser) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&bytes)));
        if let Err(panic) = result {
            eprintln!("corpus entry {parser}/{name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

/// One edit of an input.
#[derive(Clone, Debug)]
enum Mutation {
    Flip {
        at: usize,
        bit: u8,
    },
    Insert {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
        to: usize,
    },
    Splice {
        at: usize,
        from: usize,
        start: usize,
        len: usize,
    },
    Token {
        at: usize,
        token: usize,
    },
    Truncate {
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        1 => (at, 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        1 => (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => (at, 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        1 => (at, 1usize..64, any::<usize>()).prop_map(|(at, len, to)| Mutation::Duplicate {
            at,
            len,
            to
        }),
        1 => (at, any::<usize>(), any::<usize>(), 1usize..128).prop_map(|(at, from, start, len)| {
            Mutation::Splice {
                at,
                from,
                start,
                len,
            }
        }),
        3 => (at, any::<usize>()).prop_map(|(at, token)| Mutation::Token { at, token }),
        1 => (at).prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn apply(input: &mut Vec<u8>, mutation: &Mutation, corpus: &[Vec<u8>], tokens: &[&[u8]]) {
    let position = |at: usize, len: usize| if len == 0 { 0 } else { at % (len + 1) };
    match *mutation {
        Mutation::Flip { at, bit } => {
            if !input.is_empty() {
                let index = at % input.len();
                input[index] ^= 1 << bit;
            }
        }
        Mutation::Insert { at, byte } => input.insert(position(at, input.len()), byte),
        Mutation::Delete { at, len } => {
            let start = position(at, input.len());
            let end = (start + len).min(input.len());
            input.drain(start..end);
        }
        Mutation::Duplicate { at, len, to } => {
            let start = position(at, input.len());
            let end = (start + len).min(input.len());
            let slice = input[start..end].to_vec();
            let to = position(to, input.len());
            input.splice(to..to, slice);
        }
        Mutation::Splice {
            at,
            from,
            start,
            len,
        } => {
            let donor = &corpus[from % corpus.len()];
            let start = position(start, donor.len());
            let end = (start + len).min(donor.len());
            let at = position(at, input.len());
            input.splice(at..at, donor[start..end].iter().copied());
        }
        Mutation::Token { at, token } => {
            if !tokens.is_empty() {
                let token = tokens[token % tokens.len()];
                let at = position(at, input.len());
                input.splice(at..at, token.iter().copied());
            }
        }
        Mutation::Truncate { at } => input.truncate(position(at, input.len())),
    }
}

/// Inputs for a parser: a corpus entry with up to eight mutations (a third of the cases keep
/// the entry as it is but for one edit), plus `tokens` the parser gives meaning to, so that
/// mutations reach past the first syntax check.
pub fn mutated(parser: &str, tokens: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    let corpus: Vec<Vec<u8>> = corpus(parser).into_iter().map(|(_, bytes)| bytes).collect();
    let count = corpus.len();
    (
        0..count,
        prop_oneof![
            1 => proptest::collection::vec(mutation(), 1..2),
            2 => proptest::collection::vec(mutation(), 1..9),
        ],
    )
        .prop_map(move |(index, mutations)| {
            let mut input = corpus[index].clone();
            for mutation in &mutations {
                apply(&mut input, mutation, &corpus, tokens);
            }
            input
        })
}

/// Mutated corpus entries as text (invalid UTF-8 replaced), for parsers that take `&str`.
pub fn mutated_text(
    parser: &str,
    tokens: &'static [&'static [u8]],
) -> impl Strategy<Value = String> {
    mutated(parser, tokens).prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// Runs `parse` and fails when it takes longer than [`CASE_TIME_LIMIT`].
pub fn timed<T>(what: &str, parse: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = parse();
    let elapsed = started.elapsed();
    assert!(
        elapsed <= CASE_TIME_LIMIT,
        "{what} took {elapsed:?}, over the {CASE_TIME_LIMIT:?} bound for one input"
    );
    value
}

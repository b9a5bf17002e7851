//! Fuzzing of every parser of untrusted input, on the stable toolchain: one proptest harness
//! per parser, seeded from the committed corpus in `tests/fuzz/corpus/<parser>/`, mutating
//! corpus entries and generating inputs, asserting no panic, a bounded time per input and the
//! parser's own invariants (a signature check never accepts a wrong signature, a printed URL
//! re-parses to the same repository, budgets hold...).
//!
//! `make test` runs each harness for `DRIFTLESS_FUZZ_CASES` cases (256 by default); `make fuzz`
//! runs them with many more. A failure prints the minimal input: add it to the corpus as a
//! regression case, then fix the parser.

mod support;
mod tree;

mod chart;
mod duration;
mod known_hosts;
mod kustomization;
mod manifests;
mod spec_file;
mod substitution;
mod url;
mod webhook;

//! `driftless build --spec-file`: whatever the file holds, reading it ends with a GitRepository
//! or an error naming the file, and what is read prints and reads back the same.

use std::path::PathBuf;

use driftless::api::GitRepository;
use driftless::cli::{CliError, read_spec};
use proptest::prelude::*;

use crate::support::{config, each_entry, mutated, timed};

const PARSER: &str = "spec_file";

const TOKENS: &[&[u8]] = &[
    b"spec:\n  ",
    b"url: ",
    b"interval: ",
    b"helm:\n    releaseName: ",
    b"--post-renderer=/bin/sh",
    b"postBuild:\n    substitute: {",
    b"ref: {",
    b"&a ",
    b"*a",
    b"\n---\n",
    b"{",
    b"[",
    b"~",
    b"!!binary ",
];

fn check(bytes: &[u8]) {
    let file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::fs::write(file.path(), bytes).expect("write the spec file");
    let path = PathBuf::from(file.path());
    match timed("read_spec", || read_spec(&path)) {
        Ok(repository) => {
            let printed = serde_saphyr::to_string(&repository).expect("a GitRepository prints");
            std::fs::write(&path, &printed).expect("write the printed spec");
            let again: GitRepository = read_spec(&path)
                .unwrap_or_else(|e| panic!("the printed spec does not read back: {e}\n{printed}"));
            assert_eq!(
                serde_json::to_value(&again).expect("json"),
                serde_json::to_value(&repository).expect("json"),
                "the printed spec reads back different:\n{printed}"
            );
        }
        Err(CliError::SpecFile { spec_file, reason }) => {
            assert_eq!(spec_file, path.display().to_string());
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("reading a spec file failed with {other:?}"),
    }
}

#[test]
fn corpus_spec_files_read_or_fail_cleanly() {
    each_entry(PARSER, check);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_spec_files_read_or_fail_cleanly(bytes in mutated(PARSER, TOKENS)) {
        check(&bytes);
    }
}

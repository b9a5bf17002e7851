//! Real git servers on loopback for integration tests.
//!
//! - [`GitRepos`] / [`TestRepo`]: bare repositories on disk, with helpers that write commits,
//!   branches and tags straight into them.
//! - [`HttpGitServer`]: smart HTTP(S) served by git's own CGI program `git http-backend`,
//!   with optional basic auth and TLS from a per-server test CA.
//! - [`SshGitServer`]: a real OpenSSH `sshd` with generated host and client keys.
//!
//! Both servers serve the same directory, so one [`TestRepo`] is reachable over every transport.

mod cgi;
mod http;
mod repos;
mod ssh;
mod tls;

pub use http::{HttpGitServer, HttpOptions};
pub use repos::{GitRepos, TestRepo};
pub use ssh::{ClientKey, SshGitServer};
pub use tls::TestTls;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `git` with `args` in `cwd`, isolated from the machine's and user's git config so
/// that settings like `commit.gpgsign` cannot change what the tests see. Panics with git's
/// stderr on failure and returns trimmed stdout.
fn git(cwd: &Path, args: &[&str], envs: &[(&str, &Path)]) -> String {
    let output = git_output(cwd, args, envs);
    if !output.status.success() {
        panic!(
            "git {args:?} in {} failed ({}): {}",
            cwd.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    String::from_utf8(output.stdout)
        .expect("git printed non-UTF-8")
        .trim()
        .to_owned()
}

/// Like [`git`] but hands back the raw output, for commands whose failure is an answer.
fn git_output(cwd: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut command = Command::new("git");
    command
        .current_dir(cwd)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    for (name, value) in envs {
        command.env(name, value);
    }
    command
        .output()
        .unwrap_or_else(|err| panic!("cannot run git {args:?}: {err}"))
}

//! The pinned upstream `kustomize` binary: finding it, checking its version, and the one command
//! line driftless runs.

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    RenderError,
    kustomization::display_dir,
    sandbox::{self, ProcessLimits, RunError, WorkDir},
};

pub const RENDERER: &str = "kustomize";

/// The version driftless is tested against and ships in its image; another v5 runs with a
/// warning, anything else is refused.
pub const PINNED_VERSION: &str = "v5.8.2";

/// Longest message kept from kustomize's error output: it ends up in a status condition.
const MAX_MESSAGE_CHARS: usize = 2048;

/// A usable kustomize binary.
#[derive(Clone, Debug)]
pub struct Kustomize {
    pub binary: PathBuf,
    pub version: String,
}

impl Kustomize {
    /// Finds the binary (`binary`, or `kustomize` on `PATH`) and checks that it is kustomize v5.
    pub async fn locate(
        binary: Option<&Path>,
        work_parent: Option<&Path>,
    ) -> Result<Self, RenderError> {
        let unavailable = |reason: String| RenderError::Unavailable {
            renderer: RENDERER.to_owned(),
            reason,
        };
        let binary = match binary {
            Some(path) => path.to_owned(),
            None => find_on_path(RENDERER).ok_or_else(|| {
                unavailable("no `kustomize` on PATH; set --kustomize-binary".into())
            })?,
        };
        let work = WorkDir::create(work_parent)
            .map_err(|e| unavailable(format!("creating a work directory: {e}")))?;
        let limits = ProcessLimits {
            timeout: Duration::from_secs(20),
            memory_bytes: 512 * 1024 * 1024,
            max_stdout_bytes: 4096,
            max_stderr_bytes: 4096,
        };
        let finished = sandbox::run(&binary, &["version".into()], &work, &limits)
            .await
            .map_err(|e| unavailable(format!("{}: {e}", binary.display())))?;
        let output = String::from_utf8_lossy(&finished.stdout);
        if !finished.status.success() {
            return Err(unavailable(format!(
                "`{} version` failed: {}",
                binary.display(),
                String::from_utf8_lossy(&finished.stderr).trim()
            )));
        }
        let version = parse_version(&output).ok_or_else(|| {
            unavailable(format!(
                "`{} version` printed {:?}, not a kustomize version",
                binary.display(),
                output.trim()
            ))
        })?;
        if !version.starts_with("v5.") {
            return Err(unavailable(format!(
                "{} is kustomize {version}; driftless needs kustomize v5 ({PINNED_VERSION})",
                binary.display()
            )));
        }
        Ok(Self { binary, version })
    }

    /// `kustomize build <unit> --load-restrictor LoadRestrictionsRootOnly`, and nothing that
    /// would enable plugins, exec functions, Helm or the network.
    pub fn build_args(unit: &str) -> Vec<OsString> {
        let unit = if unit.is_empty() { "." } else { unit };
        [
            "build",
            unit,
            "--load-restrictor",
            "LoadRestrictionsRootOnly",
        ]
        .into_iter()
        .map(OsString::from)
        .collect()
    }

    /// Runs the build of `unit` in `work` (whose `repo/` holds the materialized inputs).
    pub async fn build(
        &self,
        unit: &str,
        work: &WorkDir,
        limits: &ProcessLimits,
    ) -> Result<Vec<u8>, RenderError> {
        let unit_name = display_dir(unit);
        let finished = sandbox::run(&self.binary, &Self::build_args(unit), work, limits)
            .await
            .map_err(|error| match error {
                RunError::TimedOut => RenderError::TimedOut {
                    renderer: RENDERER.to_owned(),
                    unit: unit_name.clone(),
                    after: limits.timeout,
                },
                RunError::OutputTooLarge => RenderError::OutputTooLarge {
                    renderer: RENDERER.to_owned(),
                    unit: unit_name.clone(),
                    limit: limits.max_stdout_bytes,
                },
                other => RenderError::Sandbox(work.scrub(&other.to_string())),
            })?;
        if finished.status.success() {
            return Ok(finished.stdout);
        }
        let stderr = String::from_utf8_lossy(&finished.stderr);
        let mut message = work.scrub(stderr.trim());
        if let Some(rest) = message.strip_prefix("Error: ") {
            message = rest.to_owned();
        }
        if message.is_empty() {
            message = format!("exited with {}", finished.status);
        }
        if message.chars().count() > MAX_MESSAGE_CHARS {
            message = message.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + " ...";
        }
        Err(RenderError::Failed {
            renderer: RENDERER.to_owned(),
            unit: unit_name,
            message,
        })
    }
}

/// `v5.8.2` from `kustomize version`'s output (`v5.8.2`, or older `{Version:kustomize/v4...}`).
fn parse_version(output: &str) -> Option<String> {
    output
        .split(|c: char| c.is_whitespace() || c == '/' || c == '{' || c == ':' || c == ',')
        .find(|word| {
            word.strip_prefix('v')
                .and_then(|rest| rest.chars().next())
                .is_some_and(|c| c.is_ascii_digit())
        })
        .map(str::to_owned)
}

/// The first executable file named `name` in a `PATH` directory.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_both_output_styles() {
        assert_eq!(parse_version("v5.8.2\n").as_deref(), Some("v5.8.2"));
        assert_eq!(
            parse_version("{Version:kustomize/v4.5.7 GitCommit:abc}").as_deref(),
            Some("v4.5.7")
        );
        assert_eq!(parse_version("(devel)\n"), None);
    }

    #[test]
    fn the_build_never_enables_plugins_helm_or_the_network() {
        let args = Kustomize::build_args("apps/prod");
        assert_eq!(
            args,
            [
                "build",
                "apps/prod",
                "--load-restrictor",
                "LoadRestrictionsRootOnly"
            ]
            .map(OsString::from)
        );
        let root = Kustomize::build_args("");
        assert_eq!(root[1], OsString::from("."));
    }
}

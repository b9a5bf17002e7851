//! What every renderer binary shares: finding it, asking it for its version, and running one
//! render with it in the sandbox, its failures turned into [`RenderError`]s without a temporary
//! path in them.

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    RenderError,
    sandbox::{self, ProcessLimits, RunError, WorkDir},
};

/// Longest message kept from a renderer's error output: it ends up in a status condition.
const MAX_MESSAGE_CHARS: usize = 2048;

/// The binary (`binary`, or `renderer` on `PATH`, `flag` naming the option that overrides it)
/// and what `binary version_args...` printed on stdout.
async fn probe(
    renderer: &str,
    flag: &str,
    binary: Option<&Path>,
    version_args: &[&str],
    work_parent: Option<&Path>,
) -> Result<(PathBuf, String), RenderError> {
    let unavailable = |reason: String| RenderError::Unavailable {
        renderer: renderer.to_owned(),
        reason,
    };
    let binary = match binary {
        Some(path) => path.to_owned(),
        None => find_on_path(renderer)
            .ok_or_else(|| unavailable(format!("no `{renderer}` on PATH; set {flag}")))?,
    };
    let work = WorkDir::create(work_parent)
        .map_err(|e| unavailable(format!("creating a work directory: {e}")))?;
    let limits = ProcessLimits {
        timeout: Duration::from_secs(20),
        memory_bytes: 512 * 1024 * 1024,
        max_stdout_bytes: 4096,
        max_stderr_bytes: 4096,
    };
    let args: Vec<OsString> = version_args.iter().map(OsString::from).collect();
    let finished = sandbox::run(&binary, &args, &work, &limits)
        .await
        .map_err(|e| unavailable(format!("{}: {e}", binary.display())))?;
    if !finished.status.success() {
        return Err(unavailable(format!(
            "`{} {}` failed: {}",
            binary.display(),
            version_args.join(" "),
            String::from_utf8_lossy(&finished.stderr).trim()
        )));
    }
    let output = String::from_utf8_lossy(&finished.stdout).into_owned();
    Ok((binary, output))
}

/// What driftless expects of a renderer binary, to find it and check its version.
pub struct Expected<'a> {
    pub renderer: &'a str,
    /// The option that names the binary when it is not on `PATH`.
    pub flag: &'a str,
    pub version_args: &'a [&'a str],
    /// The major version driftless works with, e.g. `v5`.
    pub major: &'a str,
    /// The version driftless is tested with, named in the message of a mismatch.
    pub pinned: &'a str,
}

/// The binary (`binary`, or the renderer on `PATH`) and its version, refused unless it is of
/// the expected major version.
pub async fn locate(
    expected: &Expected<'_>,
    binary: Option<&Path>,
    work_parent: Option<&Path>,
) -> Result<(PathBuf, String), RenderError> {
    let Expected {
        renderer,
        flag,
        version_args,
        major,
        pinned,
    } = expected;
    let (binary, output) = probe(renderer, flag, binary, version_args, work_parent).await?;
    let unavailable = |reason: String| RenderError::Unavailable {
        renderer: (*renderer).to_owned(),
        reason,
    };
    let version = parse_version(&output).ok_or_else(|| {
        unavailable(format!(
            "`{} {}` printed {:?}, not a {renderer} version",
            binary.display(),
            version_args.join(" "),
            output.trim()
        ))
    })?;
    if !version.starts_with(&format!("{major}.")) {
        return Err(unavailable(format!(
            "{} is {renderer} {version}; driftless needs {renderer} {major} ({pinned})",
            binary.display()
        )));
    }
    Ok((binary, version))
}

/// Runs one render and returns its stdout; `unit` names what is rendered in messages.
pub async fn render(
    renderer: &str,
    unit: &str,
    binary: &Path,
    args: &[OsString],
    env: &[(OsString, OsString)],
    work: &WorkDir,
    limits: &ProcessLimits,
) -> Result<Vec<u8>, RenderError> {
    // Boxed: the process's future holds the pipes' read buffers.
    let finished = Box::pin(sandbox::run_with_env(binary, args, env, work, limits))
        .await
        .map_err(|error| match error {
            RunError::TimedOut => RenderError::TimedOut {
                renderer: renderer.to_owned(),
                unit: unit.to_owned(),
                after: limits.timeout,
            },
            RunError::OutputTooLarge => RenderError::OutputTooLarge {
                renderer: renderer.to_owned(),
                unit: unit.to_owned(),
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
        renderer: renderer.to_owned(),
        unit: unit.to_owned(),
        message,
    })
}

/// `v5.8.2` from a version output (`v5.8.2`, `v3.22.0+g1234`, or older
/// `{Version:kustomize/v4...}`).
pub fn parse_version(output: &str) -> Option<String> {
    output
        .split(|c: char| c.is_whitespace() || matches!(c, '/' | '{' | ':' | ',' | '+' | '"'))
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
    fn versions_are_read_from_every_output_style() {
        assert_eq!(parse_version("v5.8.2\n").as_deref(), Some("v5.8.2"));
        assert_eq!(
            parse_version("{Version:kustomize/v4.5.7 GitCommit:abc}").as_deref(),
            Some("v4.5.7")
        );
        assert_eq!(
            parse_version("v3.22.0+g1d11fcb\n").as_deref(),
            Some("v3.22.0")
        );
        assert_eq!(parse_version("(devel)\n"), None);
    }
}

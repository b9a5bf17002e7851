//! Running a renderer's binary on untrusted input: a private work directory holding only
//! regular files, an empty environment with no usable network proxy, resource limits, a
//! timeout that kills the whole process group, and bounded output. Shared by every renderer.

use std::{
    ffi::OsString,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::repo_path::RepoPath;

/// A closed port on loopback: Go's HTTP client fails fast through this proxy, so a renderer
/// that tries the network (a remote base that slipped through) gets an error, not a download.
const CLOSED_PROXY: &str = "http://127.0.0.1:9";

/// Bounds on one renderer process.
#[derive(Clone, Copy, Debug)]
pub struct ProcessLimits {
    pub timeout: Duration,
    /// Bytes of writable memory (`RLIMIT_DATA`; Go also gets `GOMEMLIMIT` below it).
    pub memory_bytes: u64,
    pub max_stdout_bytes: usize,
    pub max_stderr_bytes: usize,
}

/// A fresh, randomly named 0700 directory, removed on drop: `repo/` holds the materialized
/// files, `home/` is the process's `HOME` and `TMPDIR`.
pub struct WorkDir {
    dir: tempfile::TempDir,
    /// The canonical path of `dir`, as the process sees and prints it.
    root: PathBuf,
}

impl WorkDir {
    pub fn create(parent: Option<&Path>) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let mut builder = tempfile::Builder::new();
        // tempfile's default is 0777 less the umask (usually 0755): readable by everyone.
        builder
            .prefix("driftless-render-")
            .permissions(std::fs::Permissions::from_mode(0o700));
        let dir = match parent {
            Some(parent) => builder.tempdir_in(parent)?,
            None => builder.tempdir()?,
        };
        let root = dir.path().canonicalize()?;
        for sub in ["repo", "home"] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(root.join(sub))?;
        }
        Ok(Self { dir, root })
    }

    /// Where the repository's files go.
    pub fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    /// The process's `HOME`: empty at the start of every render.
    pub fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    /// Where files that are not the repository's go (values read from the cluster, inline
    /// values); `../generated/<name>` from the process's working directory.
    pub fn generated(&self) -> PathBuf {
        self.root.join("generated")
    }

    /// Writes `contents` at `path` below `repo/` as a new regular file; existing entries are
    /// never followed or overwritten. A [`RepoPath`] has only normal components, so the file
    /// cannot land outside `repo/`.
    pub fn write_file(&self, path: &RepoPath, contents: &[u8]) -> std::io::Result<()> {
        write_new_file(&path.under(&self.repo()), contents)
    }

    /// Writes `contents` as `generated/<name>` (`name` chosen by driftless, never by a commit).
    pub fn write_generated(&self, name: &str, contents: &[u8]) -> std::io::Result<()> {
        write_new_file(&self.generated().join(name), contents)
    }

    /// `text` with every mention of the work directory replaced: repository paths become
    /// relative, generated files are `<generated>/name`, anything else is called `<work dir>`.
    /// No temporary path reaches a status.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for root in [self.root.clone(), self.dir.path().to_owned()] {
            let repo = root.join("repo");
            let repo = repo.to_string_lossy();
            text = text.replace(&format!("{repo}/"), "").replace(&*repo, ".");
            let generated = root.join("generated");
            text = text.replace(&*generated.to_string_lossy(), "<generated>");
            text = text.replace(&*root.to_string_lossy(), "<work dir>");
        }
        text.replace("../generated/", "<generated>/")
    }
}

fn write_new_file(target: &Path, contents: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)?;
    file.write_all(contents)
}

/// How a finished process ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("reading the output: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out")]
    TimedOut,
    #[error("output too large")]
    OutputTooLarge,
}

/// Runs `program args...` in `work` under `limits` and collects its output.
pub async fn run(
    program: &Path,
    args: &[OsString],
    work: &WorkDir,
    limits: &ProcessLimits,
) -> Result<Finished, RunError> {
    run_with_env(program, args, &[], work, limits).await
}

/// [`run`], with `extra` variables (a renderer's own, pointing into the work directory) on top
/// of the empty environment.
pub async fn run_with_env(
    program: &Path,
    args: &[OsString],
    extra: &[(OsString, OsString)],
    work: &WorkDir,
    limits: &ProcessLimits,
) -> Result<Finished, RunError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(work.repo())
        .env_clear()
        .envs(environment(work, limits))
        .envs(extra.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let network_sandbox = landlock::deny_network();
    let rlimits = Rlimits {
        network_ruleset: network_sandbox.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        ..Rlimits::for_limits(limits)
    };
    // SAFETY: the closure runs between fork and exec; it only calls setrlimit and prctl, which
    // are async-signal-safe, and allocates nothing.
    unsafe {
        command.pre_exec(move || rlimits.apply());
    }
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    drop(network_sandbox); // the child holds its own copy until it execs
    let group = ProcessGroup::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let finished = async {
        let (stdout, stderr) = tokio::try_join!(
            read_at_most(stdout, limits.max_stdout_bytes, true),
            read_at_most(stderr, limits.max_stderr_bytes, false),
        )?;
        // Both pipes are closed: stop anything the process left behind while its group id is
        // still reserved by the unreaped leader, then reap it.
        group.kill();
        let status = child.wait().await?;
        Ok::<_, RunError>(Finished {
            status,
            stdout,
            stderr,
        })
    };
    match tokio::time::timeout(limits.timeout, finished).await {
        Ok(result) => result,
        Err(_) => Err(RunError::TimedOut),
    }
    // `group` is dropped here on every path: a timed-out or over-talkative process group is
    // killed, not left running.
}

/// The only variables the process gets.
fn environment(work: &WorkDir, limits: &ProcessLimits) -> Vec<(OsString, OsString)> {
    let home = work.home().into_os_string();
    let go_memory_limit = format!("{}MiB", limits.memory_bytes / 4 * 3 / (1024 * 1024));
    let mut variables: Vec<(OsString, OsString)> = vec![
        ("HOME".into(), home.clone()),
        ("TMPDIR".into(), home.clone()),
        ("XDG_CONFIG_HOME".into(), home.clone()),
        ("XDG_CACHE_HOME".into(), home),
        ("GOMAXPROCS".into(), "2".into()),
        ("GOMEMLIMIT".into(), go_memory_limit.into()),
        ("NO_PROXY".into(), "".into()),
        ("no_proxy".into(), "".into()),
    ];
    for proxy in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        variables.push((proxy.into(), CLOSED_PROXY.into()));
    }
    variables
}

/// Reads `pipe` to its end, keeping at most `limit` bytes. Past the limit, stdout is an error
/// (a truncated manifest stream must never be applied); stderr is drained and cut.
async fn read_at_most(
    mut pipe: impl AsyncRead + Unpin,
    limit: usize,
    fail_when_over: bool,
) -> Result<Vec<u8>, RunError> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let read = pipe.read(&mut buffer).await?;
        if read == 0 {
            return Ok(kept);
        }
        let room = limit.saturating_sub(kept.len());
        if read > room && fail_when_over {
            return Err(RunError::OutputTooLarge);
        }
        kept.extend_from_slice(&buffer[..read.min(room)]);
    }
}

/// Kills the whole process group on drop, or once on request (after which the group id may be
/// reused by the system and is forgotten).
struct ProcessGroup(std::sync::atomic::AtomicU32);

impl ProcessGroup {
    fn new(leader: Option<u32>) -> Self {
        Self(std::sync::atomic::AtomicU32::new(leader.unwrap_or(0)))
    }

    fn kill(&self) {
        let id = self.0.swap(0, std::sync::atomic::Ordering::Relaxed);
        if let Some(id) = libc::pid_t::try_from(id).ok().filter(|id| *id > 0) {
            // SAFETY: plain syscall; the group is the child's own (process_group(0)).
            unsafe {
                libc::kill(-id, libc::SIGKILL);
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resource limits and restrictions set in the child before exec.
#[derive(Clone, Copy)]
struct Rlimits {
    cpu_seconds: u64,
    memory_bytes: u64,
    /// A Landlock ruleset denying TCP, or -1 where the kernel has none.
    network_ruleset: i32,
}

impl Rlimits {
    fn for_limits(limits: &ProcessLimits) -> Self {
        Self {
            cpu_seconds: limits.timeout.as_secs().max(1) * 2,
            memory_bytes: limits.memory_bytes,
            network_ruleset: -1,
        }
    }

    fn apply(self) -> std::io::Result<()> {
        prefer_for_oom_kill();
        set_limit(libc::RLIMIT_CPU, self.cpu_seconds)?;
        set_limit(libc::RLIMIT_DATA, self.memory_bytes)?;
        // The renderer writes nothing but its pipes; any file write kills it.
        set_limit(libc::RLIMIT_FSIZE, 0)?;
        set_limit(libc::RLIMIT_CORE, 0)?;
        set_limit(libc::RLIMIT_NOFILE, 256)?;
        // SAFETY: plain syscall without pointers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if self.network_ruleset >= 0 {
            landlock::restrict_self(self.network_ruleset)?;
        }
        Ok(())
    }
}

/// Makes the renderer, not the controller, the process the kernel kills first when the
/// container runs out of memory (raising one's own score needs no privilege). Best effort.
fn prefer_for_oom_kill() {
    const PATH: &[u8] = b"/proc/self/oom_score_adj\0";
    const SCORE: &[u8] = b"1000";
    // SAFETY: open/write/close with a NUL-terminated static path and a static buffer; all three
    // are async-signal-safe.
    unsafe {
        let fd = libc::open(PATH.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            let _ = libc::write(fd, SCORE.as_ptr().cast(), SCORE.len());
            libc::close(fd);
        }
    }
}

/// Whether this kernel lets renderers run without TCP (Landlock network rules).
pub fn network_denied_by_kernel() -> bool {
    landlock::abi() >= 4
}

/// Landlock (Linux 6.7 and later for network rules): the renderer may neither connect nor
/// bind any TCP port, and (6.12 and later) neither signal processes nor reach abstract UNIX
/// sockets outside its own sandbox. Best effort: without Landlock the closed proxy and the Rust
/// checks remain.
mod landlock {
    use super::*;

    const CREATE_RULESET_VERSION: u32 = 1;
    const ACCESS_NET_BIND_TCP: u64 = 1;
    const ACCESS_NET_CONNECT_TCP: u64 = 2;
    const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1;
    const SCOPE_SIGNAL: u64 = 2;

    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
        scoped: u64,
    }

    /// The kernel's Landlock ABI version, 0 without Landlock.
    pub(super) fn abi() -> i64 {
        // SAFETY: the version query takes no attribute pointer.
        let version = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        version.max(0)
    }

    /// A ruleset handling (so denying) TCP bind and connect, with no rule allowing any.
    pub(super) fn deny_network() -> Option<OwnedFd> {
        let abi = abi();
        if abi < 4 {
            return None;
        }
        let attr = RulesetAttr {
            handled_access_fs: 0,
            handled_access_net: ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP,
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        let size = if abi >= 6 {
            std::mem::size_of::<RulesetAttr>()
        } else {
            2 * std::mem::size_of::<u64>()
        };
        // SAFETY: `attr` outlives the call and `size` does not exceed it.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
        // SAFETY: the kernel just returned this descriptor to us alone.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Applies the ruleset to the calling (child) process; async-signal-safe.
    pub(super) fn restrict_self(ruleset: i32) -> std::io::Result<()> {
        // SAFETY: plain syscall on a descriptor inherited from the parent.
        if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Lowers a limit to `value` (never raises it: that would fail without privileges).
fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` lives for both calls.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let value = value.min(limit.rlim_max);
    limit.rlim_cur = value;
    limit.rlim_max = value;
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout: Duration) -> ProcessLimits {
        ProcessLimits {
            timeout,
            memory_bytes: 256 * 1024 * 1024,
            max_stdout_bytes: 1024 * 1024,
            max_stderr_bytes: 1024,
        }
    }

    async fn shell(script: &str, limits: &ProcessLimits) -> (WorkDir, Result<Finished, RunError>) {
        let work = WorkDir::create(None).unwrap();
        let args = ["-c".into(), script.into()];
        let result = run(Path::new("/bin/sh"), &args, &work, limits).await;
        (work, result)
    }

    #[tokio::test]
    async fn the_process_sees_only_its_own_environment() {
        let (work, result) = shell("env", &limits(Duration::from_secs(10))).await;
        let finished = result.unwrap();
        let env = String::from_utf8(finished.stdout).unwrap();
        let names: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(n, _)| n)
            .collect();
        let allowed = [
            "HOME",
            "TMPDIR",
            "XDG_CONFIG_HOME",
            "XDG_CACHE_HOME",
            "GOMAXPROCS",
            "GOMEMLIMIT",
            "NO_PROXY",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "PWD",
            "SHLVL",
            "_",
            "OLDPWD",
        ];
        for name in &names {
            assert!(
                allowed.contains(name),
                "unexpected variable {name} in {env}"
            );
        }
        assert!(env.contains("HTTPS_PROXY=http://127.0.0.1:9"), "{env}");
        assert!(
            !env.contains("KUBECONFIG") && !env.contains("PATH=/"),
            "{env}"
        );
        let home = work.home();
        assert!(env.contains(&format!("HOME={}", home.display())), "{env}");
    }

    #[tokio::test]
    async fn limits_are_set_before_the_program_runs() {
        let (_work, result) = shell(
            "cat /proc/self/limits; echo oom_score_adj=$(cat /proc/self/oom_score_adj); echo x > written",
            &limits(Duration::from_secs(10)),
        )
        .await;
        let finished = result.unwrap();
        let text = String::from_utf8(finished.stdout).unwrap();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} missing in {text}"))
                .split_whitespace()
                .filter(|w| w.chars().all(|c| c.is_ascii_digit()) || *w == "unlimited")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(line("Max data size"), ["268435456", "268435456"]);
        assert_eq!(line("Max file size"), ["0", "0"]);
        assert_eq!(line("Max cpu time"), ["20", "20"]);
        assert!(text.contains("oom_score_adj=1000"), "{text}");
        // Writing a file is refused: RLIMIT_FSIZE 0 kills the writer (SIGXFSZ) or fails it.
        assert!(!finished.status.success(), "a file write succeeded");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        // A background grandchild that would outlive its parent: it must die too.
        let marker = format!("{}.{}", 1000 + std::process::id() % 1000, 4321);
        let script = format!("sleep {marker} & sleep {marker}");
        let (_work, result) = shell(&script, &limits(Duration::from_millis(500))).await;
        assert!(matches!(result, Err(RunError::TimedOut)), "{result:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let survivors: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(&marker))
            .collect();
        assert!(survivors.is_empty(), "still running: {survivors:?}");
    }

    #[tokio::test]
    async fn the_process_cannot_open_a_tcp_connection() {
        assert!(
            landlock::abi() >= 4,
            "this kernel has no Landlock network rules; the test cannot show the denial"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let work = WorkDir::create(None).unwrap();
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
        let args = ["-c".into(), script.into()];
        let finished = run(
            Path::new("/bin/bash"),
            &args,
            &work,
            &limits(Duration::from_secs(10)),
        )
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&finished.stdout);
        let stderr = String::from_utf8_lossy(&finished.stderr);
        assert!(
            !finished.status.success() && !stdout.contains("connected"),
            "{stdout}"
        );
        assert!(stderr.contains("Permission denied"), "{stderr}");
    }

    #[tokio::test]
    async fn output_past_the_cap_stops_the_process() {
        let (_work, result) = shell("yes driftless", &limits(Duration::from_secs(10))).await;
        assert!(
            matches!(result, Err(RunError::OutputTooLarge)),
            "{result:?}"
        );
    }

    #[test]
    fn work_directories_are_private_and_scrubbed_from_messages() {
        use std::os::unix::fs::PermissionsExt;
        let work = WorkDir::create(None).unwrap();
        let mode = std::fs::metadata(&work.root).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let path = RepoPath::parse("apps/base/a.yaml").unwrap();
        work.write_file(&path, b"x").unwrap();
        assert!(work.write_file(&path, b"y").is_err(), "overwrote a file");
        let message = format!(
            "open {}/apps/x.yaml: no such file; root {}; home {}",
            work.repo().display(),
            work.repo().display(),
            work.home().display()
        );
        assert_eq!(
            work.scrub(&message),
            "open apps/x.yaml: no such file; root .; home <work dir>/home"
        );
        let root = work.root.clone();
        drop(work);
        assert!(!root.exists(), "the work directory outlived its render");
    }
}

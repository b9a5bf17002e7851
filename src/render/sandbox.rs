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
    #[error("confining the process to its work directory: {0}")]
    Confine(std::io::Error),
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
    run_confined(program, args, extra, work, limits, &[]).await
}

/// [`run_with_env`], the process also allowed `more` on the file system (the tests' shell
/// scripts need their shell's programs).
async fn run_confined(
    program: &Path,
    args: &[OsString],
    extra: &[(OsString, OsString)],
    work: &WorkDir,
    limits: &ProcessLimits,
    more: &[(PathBuf, landlock::Access)],
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
    let mut grants = allowed_paths(program, work);
    grants.extend_from_slice(more);
    let confinement = landlock::ruleset(&grants).map_err(RunError::Confine)?;
    let rlimits = Rlimits {
        landlock_ruleset: confinement.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        ..Rlimits::for_limits(limits)
    };
    // SAFETY: the closure runs between fork and exec; it only calls setrlimit, prctl, open,
    // write, close and the Landlock syscalls, which are async-signal-safe, and allocates
    // nothing.
    unsafe {
        command.pre_exec(move || rlimits.apply());
    }
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    drop(confinement); // the child holds its own copy until it execs
    let group = ProcessGroup::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let finished = async {
        let (stdout, stderr) = tokio::try_join!(
            read_at_most(stdout, limits.max_stdout_bytes, true),
            read_at_most(stderr, limits.max_stderr_bytes, false),
        )?;
        // Both pipes are closed. A program may close them just before it exits (coreutils do):
        // wait until the leader has exited, without reaping it, so that it is not killed in
        // between and its group id stays reserved while anything it left behind is stopped;
        // then reap it.
        if let Some(leader) = child.id() {
            let _ = tokio::task::spawn_blocking(move || wait_unreaped(leader)).await;
        }
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

/// Blocks until process `pid`, a child of this process, has exited, leaving it a zombie for
/// `wait` to reap.
fn wait_unreaped(pid: libc::id_t) {
    loop {
        // SAFETY: plain syscall writing only into `info`, which lives across the call.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let done =
            unsafe { libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT) };
        if done == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
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
    /// The Landlock ruleset (see [`landlock`]), or -1 where the kernel has none.
    landlock_ruleset: i32,
}

impl Rlimits {
    fn for_limits(limits: &ProcessLimits) -> Self {
        Self {
            cpu_seconds: limits.timeout.as_secs().max(1) * 2,
            memory_bytes: limits.memory_bytes,
            landlock_ruleset: -1,
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
        if self.landlock_ruleset >= 0 {
            landlock::restrict_self(self.landlock_ruleset)?;
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

/// Whether this kernel confines renderers to their work directory (Landlock file-system
/// rules, and truncation among them from ABI 3 on).
pub fn files_confined_by_kernel() -> bool {
    landlock::abi() >= 1
}

/// The kernel's Landlock ABI version, 0 without Landlock: logged at start, so what a node
/// enforces can be read from the controller's log.
pub fn landlock_abi() -> i64 {
    landlock::abi()
}

/// Directories of the dynamic loader and the libraries a dynamically linked program loads:
/// system files, readable by everyone; holding no secret.
const LIBRARY_DIRS: &[&str] = &[
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libx32",
    "/usr/local/lib",
    "/etc/ld.so.cache",
];

/// All a renderer may touch: its work directory (read; `HOME`, which is also `TMPDIR`, read
/// and write), its binary (read and execute), the libraries when the binary is dynamically
/// linked (the pinned kustomize and helm are static Go binaries and need none), and
/// `/dev/null`. Nothing else: not the ServiceAccount token, not `/proc`, not `/etc`.
fn allowed_paths(program: &Path, work: &WorkDir) -> Vec<(PathBuf, landlock::Access)> {
    use landlock::Access;
    let mut grants = vec![
        (work.root.clone(), Access::Read),
        (work.home(), Access::ReadWrite),
        (program.to_owned(), Access::ReadExecute),
        (PathBuf::from("/dev/null"), Access::ReadWrite),
    ];
    if !is_static_elf(program) {
        grants.extend(
            LIBRARY_DIRS
                .iter()
                .map(|dir| (PathBuf::from(dir), Access::ReadExecute)),
        );
    }
    grants
}

/// Whether `program` is an ELF executable without a program interpreter (statically linked).
/// Anything that cannot be read as one counts as dynamic: it then gets the library directories,
/// which is safe, rather than failing to start.
fn is_static_elf(program: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(bytes) = read_prefix(program, 64 * 1024) else {
        return false;
    };
    // ELF64, little-endian: the only kind of renderer binary the image ships.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let Ok(table) = usize::try_from(u64::from_le_bytes(
        bytes[0x20..0x28].try_into().expect("8 bytes"),
    )) else {
        return false;
    };
    let (entry_size, entries) = (u16_at(0x36), u16_at(0x38));
    if entry_size < 4 {
        return false;
    }
    (0..entries).all(|index| {
        let at = index
            .checked_mul(entry_size)
            .and_then(|offset| offset.checked_add(table));
        match at.and_then(|at| bytes.get(at..at + 4)) {
            Some(kind) => u32::from_le_bytes(kind.try_into().expect("4 bytes")) != PT_INTERP,
            None => false,
        }
    })
}

fn read_prefix(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether this kernel lets renderers run without TCP (Landlock network rules).
pub fn network_denied_by_kernel() -> bool {
    landlock::abi() >= 4
}

/// Landlock: the renderer's view of the file system and the network, set up in the parent (one
/// ruleset per process) and applied in the child just before it execs.
///
/// - Files (Linux 5.13 and later): the process may read its work directory, write only below
///   its `HOME`, execute and read its own binary (and, for a dynamically linked one, the system
///   library directories), and read or write `/dev/null`; every other open, exec, create,
///   remove, rename or link fails with `EACCES`. The controller's ServiceAccount token, its git
///   cache, other renders' work directories and `/proc` are out of reach.
/// - Network (6.7 and later): no TCP bind or connect at all.
/// - Scopes (6.12 and later): no signals to, and no abstract UNIX sockets of, processes outside
///   the sandbox.
///
/// Each layer is used as far as the kernel supports it; without Landlock the other protections
/// (empty environment, closed proxy, rlimits, the Rust checks) remain.
mod landlock {
    use super::*;

    const CREATE_RULESET_VERSION: u32 = 1;
    const RULE_PATH_BENEATH: u32 = 1;

    const FS_EXECUTE: u64 = 1 << 0;
    const FS_WRITE_FILE: u64 = 1 << 1;
    const FS_READ_FILE: u64 = 1 << 2;
    const FS_READ_DIR: u64 = 1 << 3;
    const FS_REMOVE_DIR: u64 = 1 << 4;
    const FS_REMOVE_FILE: u64 = 1 << 5;
    const FS_MAKE_DIR: u64 = 1 << 7;
    const FS_MAKE_REG: u64 = 1 << 8;
    /// Every file-system right of ABI 1 (`EXECUTE` to `MAKE_SYM`).
    const FS_ABI_1: u64 = (1 << 13) - 1;
    /// ABI 2: linking or renaming a file into another directory.
    const FS_REFER: u64 = 1 << 13;
    /// ABI 3: truncating a file.
    const FS_TRUNCATE: u64 = 1 << 14;
    /// ABI 5: ioctl on device files.
    const FS_IOCTL_DEV: u64 = 1 << 15;
    /// The rights a rule on a file (not a directory) may carry.
    const FS_FILE_RIGHTS: u64 = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE;

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

    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }

    /// What a rule lets the process do below (or with) a path.
    #[derive(Clone, Copy, Debug)]
    pub(super) enum Access {
        /// Open files and list directories.
        Read,
        /// Read, and execute programs.
        ReadExecute,
        /// Read, and create, write, truncate and remove files and directories.
        ReadWrite,
    }

    impl Access {
        fn rights(self) -> u64 {
            let read = FS_READ_FILE | FS_READ_DIR;
            match self {
                Access::Read => read,
                Access::ReadExecute => read | FS_EXECUTE,
                Access::ReadWrite => {
                    read | FS_WRITE_FILE
                        | FS_REMOVE_DIR
                        | FS_REMOVE_FILE
                        | FS_MAKE_DIR
                        | FS_MAKE_REG
                        | FS_REFER
                        | FS_TRUNCATE
                }
            }
        }
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

    /// The file-system rights this kernel can restrict (all of them are handled, so whatever
    /// no rule grants is denied).
    fn handled_fs(abi: i64) -> u64 {
        let mut handled = FS_ABI_1;
        if abi >= 2 {
            handled |= FS_REFER;
        }
        if abi >= 3 {
            handled |= FS_TRUNCATE;
        }
        if abi >= 5 {
            handled |= FS_IOCTL_DEV;
        }
        handled
    }

    /// A ruleset allowing only `grants` on the file system, and no TCP, as far as this kernel
    /// supports; `None` without Landlock. Paths that do not exist are skipped.
    pub(super) fn ruleset(grants: &[(PathBuf, Access)]) -> std::io::Result<Option<OwnedFd>> {
        let abi = abi();
        if abi < 1 {
            return Ok(None);
        }
        let handled_access_fs = handled_fs(abi);
        let attr = RulesetAttr {
            handled_access_fs,
            handled_access_net: if abi >= 4 {
                ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // Older kernels accept only the fields they know.
        let size = match abi {
            1..=3 => std::mem::size_of::<u64>(),
            4 | 5 => 2 * std::mem::size_of::<u64>(),
            _ => std::mem::size_of::<RulesetAttr>(),
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
        let fd = i32::try_from(fd)
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(std::io::Error::last_os_error)?;
        // SAFETY: the kernel just returned this descriptor to us alone.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd) };
        for (path, access) in grants {
            let rights = access.rights() & handled_access_fs;
            if rights != 0 {
                allow(&ruleset, path, rights)?;
            }
        }
        Ok(Some(ruleset))
    }

    /// Adds a rule granting `rights` below `path` (on `path` alone when it is a file).
    fn allow(ruleset: &OwnedFd, path: &Path, rights: u64) -> std::io::Result<()> {
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
        {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let rights = if file.metadata()?.is_dir() {
            rights
        } else {
            rights & FS_FILE_RIGHTS
        };
        let attr = PathBeneathAttr {
            allowed_access: rights,
            parent_fd: file.as_raw_fd(),
        };
        // SAFETY: `attr` and the descriptors outlive the call.
        let added = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if added != 0 {
            let error = std::io::Error::last_os_error();
            return Err(std::io::Error::new(
                error.kind(),
                format!("allowing {}: {error}", path.display()),
            ));
        }
        Ok(())
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

    /// The shell and the programs of a test script; renderers get neither.
    fn shell_programs() -> Vec<(PathBuf, landlock::Access)> {
        ["/bin", "/usr/bin"]
            .into_iter()
            .map(|dir| (PathBuf::from(dir), landlock::Access::ReadExecute))
            .collect()
    }

    async fn shell(script: &str, limits: &ProcessLimits) -> (WorkDir, Result<Finished, RunError>) {
        shell_with(script, limits, &[]).await
    }

    /// `script` run by `/bin/sh` in the sandbox, also allowed its programs and `more`.
    async fn shell_with(
        script: &str,
        limits: &ProcessLimits,
        more: &[(PathBuf, landlock::Access)],
    ) -> (WorkDir, Result<Finished, RunError>) {
        let work = WorkDir::create(None).unwrap();
        let args = ["-c".into(), script.into()];
        let mut allowed = shell_programs();
        allowed.extend_from_slice(more);
        let result = run_confined(Path::new("/bin/sh"), &args, &[], &work, limits, &allowed).await;
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
        // /proc is readable here only to show the limits; a renderer never gets it.
        let (_work, result) = shell_with(
            "cat /proc/self/limits; echo oom_score_adj=$(cat /proc/self/oom_score_adj); echo x > \"$HOME/written\"",
            &limits(Duration::from_secs(10)),
            &[(PathBuf::from("/proc"), landlock::Access::Read)],
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

    /// The ServiceAccount token of the controller's pod, which a renderer must never read.
    const TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

    #[tokio::test]
    async fn the_process_reads_its_work_directory_and_no_file_outside_it() {
        assert!(
            files_confined_by_kernel(),
            "this kernel has no Landlock; the test cannot show the denial"
        );
        // A stand-in for the token: a file the controller's user may read, outside the work
        // directory. The real token path is tried too when this machine has one.
        let outside = tempfile::tempdir().unwrap();
        let token = outside.path().join("token");
        std::fs::write(&token, "the-controller-token").unwrap();
        let work = WorkDir::create(None).unwrap();
        work.write_file(
            &RepoPath::parse("apps/cm.yaml").unwrap(),
            b"kind: ConfigMap",
        )
        .unwrap();
        let cat = |path: &Path| {
            let args = [path.as_os_str().to_owned()];
            let work = &work;
            async move {
                // The production entry point: nothing allowed beyond what every renderer gets.
                run(
                    Path::new("/bin/cat"),
                    &args,
                    work,
                    &limits(Duration::from_secs(10)),
                )
                .await
                .unwrap()
            }
        };

        let inside = cat(Path::new("apps/cm.yaml")).await;
        assert!(inside.status.success(), "{inside:?}");
        assert_eq!(inside.stdout, b"kind: ConfigMap");

        let mut denied = vec![
            token.clone(),
            PathBuf::from("/etc/hostname"),
            PathBuf::from("/proc/self/environ"),
            PathBuf::from("/proc/1/environ"),
        ];
        if Path::new(TOKEN).exists() {
            denied.push(PathBuf::from(TOKEN));
        }
        for path in denied {
            if !path.exists() {
                continue;
            }
            let finished = cat(&path).await;
            let stderr = String::from_utf8_lossy(&finished.stderr);
            assert!(
                !finished.status.success() && finished.stdout.is_empty(),
                "{} was read from inside the sandbox: {:?}",
                path.display(),
                String::from_utf8_lossy(&finished.stdout)
            );
            assert!(
                stderr.contains("Permission denied"),
                "reading {} must fail with EACCES: {stderr}",
                path.display()
            );
        }
        // The same file is readable outside the sandbox: the denial is Landlock's.
        assert_eq!(std::fs::read(&token).unwrap(), b"the-controller-token");
    }

    #[tokio::test]
    async fn the_process_creates_files_only_below_its_home() {
        assert!(
            files_confined_by_kernel(),
            "this kernel has no Landlock; the test cannot show the denial"
        );
        let outside = tempfile::tempdir().unwrap();
        let escaped = outside.path().join("escaped");
        let script = format!(
            "mkdir \"$HOME/cache\" && echo home-ok; mkdir escaped-repo; mkdir '{}'; \
             rm -f '{}/victim'; ls '{}'",
            escaped.display(),
            outside.path().display(),
            outside.path().display()
        );
        std::fs::write(outside.path().join("victim"), "kept").unwrap();
        let (work, result) = shell(&script, &limits(Duration::from_secs(10))).await;
        let finished = result.unwrap();
        let stdout = String::from_utf8_lossy(&finished.stdout);
        let stderr = String::from_utf8_lossy(&finished.stderr);
        assert!(stdout.contains("home-ok"), "{stdout} {stderr}");
        assert!(work.home().join("cache").is_dir());
        assert!(
            !work.repo().join("escaped-repo").exists(),
            "the repository is read-only"
        );
        assert!(!escaped.exists(), "created a directory outside: {stderr}");
        assert!(
            outside.path().join("victim").exists(),
            "removed a file outside: {stderr}"
        );
        assert!(
            !stdout.contains("victim"),
            "listed a directory outside: {stdout}"
        );
        assert!(stderr.contains("Permission denied"), "{stderr}");
    }

    #[test]
    fn only_programs_without_an_interpreter_count_as_static() {
        assert!(!is_static_elf(Path::new("/bin/sh")), "/bin/sh is dynamic");
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").unwrap();
        assert!(!is_static_elf(&script));
        assert!(!is_static_elf(&dir.path().join("missing")));
        // A minimal static ELF64 header: no program headers at all, so no interpreter.
        let mut header = vec![0u8; 64];
        header[..4].copy_from_slice(b"\x7fELF");
        header[4] = 2;
        header[5] = 1;
        header[0x36] = 56;
        let elf = dir.path().join("static");
        std::fs::write(&elf, &header).unwrap();
        assert!(is_static_elf(&elf));
        // The same with one PT_INTERP program header.
        header[0x20] = 64;
        header[0x38] = 1;
        let mut interp = vec![0u8; 56];
        interp[0] = 3;
        header.extend_from_slice(&interp);
        std::fs::write(&elf, &header).unwrap();
        assert!(!is_static_elf(&elf));
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

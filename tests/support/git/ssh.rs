//! A real OpenSSH `sshd` on a loopback port, serving git over SSH with key auth.

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::TestRepo;

/// sshd re-executes itself for each connection, which only works from an absolute path.
const SSHD: &str = "/usr/sbin/sshd";
/// sshd refuses to start without its privilege-separation directory.
const PRIVSEP_DIR: &str = "/run/sshd";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many ports to try when another process takes the one picked for sshd.
const PORT_ATTEMPTS: usize = 3;

/// The client keys authorized on the server, one per private-key format that clients
/// (libssh2 in particular) may or may not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientKey {
    /// ed25519 in the OpenSSH format (`BEGIN OPENSSH PRIVATE KEY`), ssh-keygen's default.
    Ed25519OpenSsh,
    /// RSA in the traditional PEM format (`BEGIN RSA PRIVATE KEY`).
    RsaPem,
    /// ECDSA P-256 in the traditional PEM format (`BEGIN EC PRIVATE KEY`).
    EcdsaPem,
}

impl ClientKey {
    pub const ALL: [ClientKey; 3] = [Self::Ed25519OpenSsh, Self::RsaPem, Self::EcdsaPem];

    fn file_name(self) -> &'static str {
        match self {
            Self::Ed25519OpenSsh => "client_ed25519",
            Self::RsaPem => "client_rsa",
            Self::EcdsaPem => "client_ecdsa",
        }
    }

    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            Self::Ed25519OpenSsh => &["-t", "ed25519"],
            Self::RsaPem => &["-t", "rsa", "-b", "3072", "-m", "PEM"],
            Self::EcdsaPem => &["-t", "ecdsa", "-b", "256", "-m", "PEM"],
        }
    }
}

/// A running `sshd` that lets the current user in with any [`ClientKey`]. It serves any
/// repository by absolute path (see [`SshGitServer::url_for`]); dropping it kills sshd.
pub struct SshGitServer {
    dir: TempDir,
    sshd: Child,
    port: u16,
    user: String,
    known_hosts_line: String,
}

impl SshGitServer {
    /// Starts sshd and returns once its port accepts connections. Panics with sshd's own
    /// output if it cannot start: a missing SSH server must fail tests, not skip them.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("driftless-sshd-")
            .tempdir()
            .expect("create temp dir for sshd");
        let host_key = generate_key(dir.path(), "host_ed25519", &["-t", "ed25519"]);
        authorize_client_keys(dir.path());
        // Created if missing; when that fails sshd's error below says what is wrong.
        let _ = fs::create_dir_all(PRIVSEP_DIR);
        let (sshd, port) = start_sshd_on_free_port(dir.path(), &host_key);
        Self {
            known_hosts_line: known_hosts_line(port, &host_key),
            user: current_user(),
            dir,
            sshd,
            port,
        }
    }

    /// `ssh://USER@127.0.0.1:PORT/abs/path/<name>.git`.
    pub fn url_for(&self, repo: &TestRepo) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            repo.path().display()
        )
    }

    /// The private key of `kind`, as the text of its key file.
    pub fn private_key(&self, kind: ClientKey) -> String {
        read(&self.dir.path().join(kind.file_name()))
    }

    /// A PEM private key for `Cred::ssh_key_from_memory`: RSA in the traditional PEM
    /// format, which every libssh2 crypto backend parses. (With git2 0.21's libssh2 on
    /// OpenSSL, the OpenSSH-format ed25519 key and the ECDSA PEM key work too; the tests in
    /// `tests/it/git_transport.rs` fetch with each.)
    pub fn private_key_pem(&self) -> String {
        self.private_key(ClientKey::RsaPem)
    }

    /// The public half of `kind`, one `authorized_keys` line.
    pub fn public_key(&self, kind: ClientKey) -> String {
        let path = self.dir.path().join(format!("{}.pub", kind.file_name()));
        read(&path).trim().to_owned()
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA...`: the server's host key as known_hosts has it.
    pub fn known_hosts_line(&self) -> &str {
        &self.known_hosts_line
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.sshd.id()
    }

    /// Everything sshd has logged so far, to show when a test fails.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }
}

impl Drop for SshGitServer {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// Runs ssh-keygen without a passphrase and returns the private key's path.
fn generate_key(dir: &Path, name: &str, type_args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let output = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .args(type_args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run ssh-keygen (install openssh-client): {err}"));
    assert!(
        output.status.success(),
        "ssh-keygen {type_args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    path
}

fn authorize_client_keys(dir: &Path) {
    let authorized: String = ClientKey::ALL
        .into_iter()
        .map(|kind| {
            let key = generate_key(dir, kind.file_name(), kind.keygen_args());
            read(&key.with_extension("pub"))
        })
        .collect();
    fs::write(dir.join("authorized_keys"), authorized).expect("write authorized_keys");
}

/// sshd cannot be given port 0, so it gets a port that was free a moment ago; when another
/// process took it meanwhile, sshd is started again on another one.
fn start_sshd_on_free_port(dir: &Path, host_key: &Path) -> (Child, u16) {
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port();
        write_sshd_config(dir, port, host_key);
        let mut sshd = spawn_sshd(dir);
        match wait_until_listening(&mut sshd, dir) {
            Ok(()) => return (sshd, port),
            Err(failure) => {
                let _ = sshd.kill();
                let _ = sshd.wait();
                if !failure.contains("Address already in use") {
                    panic!("sshd did not start on 127.0.0.1:{port}: {failure}");
                }
            }
        }
    }
    panic!("sshd found no free port in {PORT_ATTEMPTS} attempts")
}

/// Waits for sshd's "Server listening" line, which it logs once its socket listens: a
/// connection attempt instead could reach whichever other process holds the port.
/// The error is what went wrong, with sshd's log.
fn wait_until_listening(sshd: &mut Child, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        let log = read_log(dir);
        if log.contains("Server listening on") {
            return Ok(());
        }
        if let Some(status) = sshd.try_wait().expect("poll sshd") {
            return Err(format!("exited with {status}:\n{log}"));
        }
        if Instant::now() > deadline {
            return Err(format!("not listening after {STARTUP_TIMEOUT:?}:\n{log}"));
        }
        sleep(Duration::from_millis(20));
    }
}

/// What sshd logged (it runs with `-e`: log to stderr, which goes to this file).
fn read_log(dir: &Path) -> String {
    fs::read_to_string(dir.join("sshd.log")).unwrap_or_default()
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener
        .local_addr()
        .expect("listener has an address")
        .port()
}

fn write_sshd_config(dir: &Path, port: u16, host_key: &Path) {
    let config = format!(
        "Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
PidFile {pid_file}
# The temp dir and key files are not laid out the way StrictModes wants.
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
# Tests run as root in containers; keys only, never passwords.
PermitRootLogin prohibit-password
# Lets clients ask for protocol v2.
AcceptEnv GIT_PROTOCOL
LogLevel VERBOSE
",
        host_key = host_key.display(),
        authorized_keys = dir.join("authorized_keys").display(),
        pid_file = dir.join("sshd.pid").display(),
    );
    fs::write(dir.join("sshd_config"), config).expect("write sshd_config");
}

fn spawn_sshd(dir: &Path) -> Child {
    let log = fs::File::create(dir.join("sshd.log")).expect("create sshd.log");
    Command::new(SSHD)
        .arg("-D") // stay in the foreground so the Child is sshd itself
        .arg("-e") // log to stderr, i.e. sshd.log
        .arg("-f")
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| match err.kind() {
            ErrorKind::NotFound => panic!("{SSHD} is missing: run tests/prereqs.sh"),
            _ => panic!("cannot start {SSHD}: {err}"),
        })
}

/// The host key's public half (`type base64 comment`) as a known_hosts line for the port.
fn known_hosts_line(port: u16, host_key: &Path) -> String {
    let public = read(&host_key.with_extension("pub"));
    let mut fields = public.split_whitespace();
    let (key_type, key) = (fields.next(), fields.next());
    let (Some(key_type), Some(key)) = (key_type, key) else {
        panic!("unexpected public key file: {public:?}");
    };
    format!("[127.0.0.1]:{port} {key_type} {key}")
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("run id -un");
    String::from_utf8(output.stdout)
        .expect("user name is UTF-8")
        .trim()
        .to_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

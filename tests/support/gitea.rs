//! A real Gitea on loopback, one per test: built once per machine by
//! `tests/cluster/build.sh gitea` (like the control plane), run from a temporary directory that
//! is removed with it. One per test, not one per run: each test gets its own users, hooks and
//! status history to count, and nothing outlives the test that started it (about 10 s each).
//!
//! A Gitea that cannot be built or started fails the test: it is never skipped.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// The admin user every test Gitea has.
pub const ADMIN: &str = "driftless";
const PASSWORD: &str = "driftless-test-password";

/// The directory with the `gitea` binary and its `static/` files, built if missing.
pub fn gitea_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg("gitea")
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
        assert!(
            output.status.success(),
            "`{} gitea` failed, so there is no Gitea to test against:\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    })
}

/// A running Gitea with an admin user and its API token; stopped and removed on drop.
pub struct Gitea {
    child: Child,
    pub port: u16,
    /// An API token of [`ADMIN`] with every scope.
    pub token: String,
    dir: tempfile::TempDir,
}

impl Gitea {
    /// Starts a Gitea on a free loopback port and waits until its API answers.
    pub fn start() -> Gitea {
        let bin = gitea_dir();
        let dir = tempfile::tempdir().expect("a Gitea work directory");
        let port = free_port();
        let config = dir.path().join("app.ini");
        std::fs::write(&config, app_ini(dir.path(), &bin.join("static"), port)).unwrap();
        let gitea = bin.join("gitea");
        let run = |args: &[&str]| {
            let output = Command::new(&gitea)
                .arg("--config")
                .arg(&config)
                .args(args)
                .current_dir(dir.path())
                .env("GITEA_WORK_DIR", dir.path())
                .output()
                .unwrap_or_else(|error| panic!("cannot run {}: {error}", gitea.display()));
            assert!(
                output.status.success(),
                "gitea {args:?} failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        };
        run(&["migrate"]);
        run(&[
            "admin",
            "user",
            "create",
            "--username",
            ADMIN,
            "--password",
            PASSWORD,
            "--email",
            "driftless@example.com",
            "--admin",
            "--must-change-password=false",
        ]);
        let log = std::fs::File::create(dir.path().join("web.log")).unwrap();
        let child = Command::new(&gitea)
            .arg("--config")
            .arg(&config)
            .arg("web")
            .current_dir(dir.path())
            .env("GITEA_WORK_DIR", dir.path())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", gitea.display()));
        let mut gitea = Gitea {
            child,
            port,
            token: String::new(),
            dir,
        };
        gitea.wait_until_serving();
        let created = gitea.call_as_admin_password(
            "POST",
            &format!("/api/v1/users/{ADMIN}/tokens"),
            &json!({ "name": "tests", "scopes": ["all"] }),
        );
        gitea.token = created["sha1"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {created}"))
            .to_owned();
        gitea
    }

    fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("gitea web exited ({status}):\n{}", self.log());
            }
            let (code, _) = self.curl("GET", "/api/v1/version", &[], None);
            if code == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Gitea did not answer within 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Gitea's own log, for failure messages.
    pub fn log(&self) -> String {
        let web = std::fs::read_to_string(self.dir.path().join("web.log")).unwrap_or_default();
        let gitea =
            std::fs::read_to_string(self.dir.path().join("log/gitea.log")).unwrap_or_default();
        format!("{web}\n{gitea}")
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The clone URL of `owner/name` without credentials, as a GitRepository names it.
    pub fn clone_url(&self, repository: &str) -> String {
        format!("{}/{repository}.git", self.base_url())
    }

    /// Calls the API with the admin's token; panics unless the answer is a 2xx.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let auth = format!("Authorization: token {}", self.token);
        let (code, text) = self.curl(method, path, &[&auth], body);
        assert!(
            (200..300).contains(&code),
            "{method} {path}: Gitea answered {code}: {text}"
        );
        if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
        }
    }

    fn call_as_admin_password(&self, method: &str, path: &str, body: &Value) -> Value {
        let (code, text) = self.curl_with(method, path, &[], Some(body), Some((ADMIN, PASSWORD)));
        assert!(
            (200..300).contains(&code),
            "{method} {path}: {code}: {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    fn curl(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&Value>,
    ) -> (u16, String) {
        self.curl_with(method, path, headers, body, None)
    }

    fn curl_with(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&Value>,
        basic: Option<(&str, &str)>,
    ) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args([
                "-sS",
                "--max-time",
                "20",
                "-X",
                method,
                "-w",
                "\n%{http_code}",
            ])
            .args(["-H", "Content-Type: application/json"]);
        for header in headers {
            command.args(["-H", header]);
        }
        if let Some((user, password)) = basic {
            command.args(["-u", &format!("{user}:{password}")]);
        }
        if let Some(body) = body {
            command.args(["--data-binary", &body.to_string()]);
        }
        command.arg(format!("{}{path}", self.base_url()));
        let output = command.output().expect("curl runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Creates an empty repository `ADMIN/name` whose default branch is `main`.
    pub fn create_repository(&self, name: &str) -> GiteaRepository {
        self.call(
            "POST",
            "/api/v1/user/repos",
            Some(&json!({ "name": name, "default_branch": "main", "private": false })),
        );
        let work = tempfile::tempdir().expect("a work tree");
        let repository = GiteaRepository {
            full_name: format!("{ADMIN}/{name}"),
            push_url: format!(
                "http://{ADMIN}:{PASSWORD}@127.0.0.1:{}/{ADMIN}/{name}.git",
                self.port
            ),
            work,
        };
        repository.git(&["init", "-q", "-b", "main"]);
        repository
    }

    /// Adds a push webhook of type `gitea` to `repository`, signed with `secret`.
    pub fn add_push_hook(&self, repository: &GiteaRepository, url: &str, secret: &str) {
        self.call(
            "POST",
            &format!("/api/v1/repos/{}/hooks", repository.full_name),
            Some(&json!({
                "type": "gitea",
                "active": true,
                "events": ["push"],
                "config": { "url": url, "content_type": "json", "secret": secret },
            })),
        );
    }

    /// Adds a webhook of type `gitea` for pull request events (opened, reopened, and pushes
    /// to them) to `repository`, signed with `secret`.
    pub fn add_pull_request_hook(&self, repository: &GiteaRepository, url: &str, secret: &str) {
        self.call(
            "POST",
            &format!("/api/v1/repos/{}/hooks", repository.full_name),
            Some(&json!({
                "type": "gitea",
                "active": true,
                "events": ["pull_request", "pull_request_sync"],
                "config": { "url": url, "content_type": "json", "secret": secret },
            })),
        );
    }

    /// Opens a pull request of `head` (a branch, or `owner:branch` of a fork) into `base` of
    /// `repository`; returns its number.
    pub fn open_pull_request(&self, repository: &GiteaRepository, head: &str, base: &str) -> u64 {
        let created = self.call(
            "POST",
            &format!("/api/v1/repos/{}/pulls", repository.full_name),
            Some(&json!({ "head": head, "base": base, "title": format!("{head} into {base}") })),
        );
        created["number"].as_u64().expect("a pull request number")
    }

    /// A fork of `repository` into a new organization `organization`, with a work tree at
    /// the fork's `main`.
    pub fn fork(&self, repository: &GiteaRepository, organization: &str) -> GiteaRepository {
        self.call(
            "POST",
            "/api/v1/orgs",
            Some(&json!({ "username": organization })),
        );
        self.call(
            "POST",
            &format!("/api/v1/repos/{}/forks", repository.full_name),
            Some(&json!({ "organization": organization })),
        );
        let name = repository.full_name.rsplit('/').next().unwrap();
        let fork = GiteaRepository {
            full_name: format!("{organization}/{name}"),
            push_url: format!(
                "http://{ADMIN}:{PASSWORD}@127.0.0.1:{}/{organization}/{name}.git",
                self.port
            ),
            work: tempfile::tempdir().expect("a work tree"),
        };
        fork.git(&["init", "-q", "-b", "main"]);
        fork.git(&["fetch", "-q", &fork.push_url, "main"]);
        fork.git(&["reset", "-q", "--hard", "FETCH_HEAD"]);
        fork
    }

    /// The comments of issue or pull request `number`, oldest first.
    pub fn comments(&self, repository: &GiteaRepository, number: u64) -> Vec<Value> {
        let listed = self.call(
            "GET",
            &format!(
                "/api/v1/repos/{}/issues/{number}/comments",
                repository.full_name
            ),
            None,
        );
        listed.as_array().cloned().unwrap_or_default()
    }

    /// Every status of `commit` in `repository`, newest first, as Gitea lists them.
    pub fn statuses(&self, repository: &GiteaRepository, commit: &str) -> Vec<Value> {
        let listed = self.call(
            "GET",
            &format!(
                "/api/v1/repos/{}/commits/{commit}/statuses?limit=50",
                repository.full_name
            ),
            None,
        );
        listed.as_array().cloned().unwrap_or_default()
    }

    /// A token of a user who may not write statuses to `repository` (a new, unrelated user).
    pub fn token_without_access(&self) -> String {
        self.call(
            "POST",
            "/api/v1/admin/users",
            Some(&json!({
                "username": "outsider", "password": "outsider-password-1",
                "email": "outsider@example.com", "must_change_password": false,
            })),
        );
        let (code, text) = self.curl_with(
            "POST",
            "/api/v1/users/outsider/tokens",
            &[],
            Some(&json!({ "name": "t", "scopes": ["all"] })),
            Some(("outsider", "outsider-password-1")),
        );
        assert!((200..300).contains(&code), "{code}: {text}");
        let created: Value = serde_json::from_str(&text).unwrap();
        created["sha1"].as_str().unwrap().to_owned()
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A repository on a test Gitea and a work tree that pushes to it.
pub struct GiteaRepository {
    /// `owner/name`.
    pub full_name: String,
    push_url: String,
    work: tempfile::TempDir,
}

impl GiteaRepository {
    /// Writes `files`, commits them and pushes `main`; returns the commit's SHA.
    pub fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        self.push_to("main", files, message)
    }

    /// Writes `files`, commits them on the work tree's HEAD and pushes it as `branch`; returns
    /// the commit's SHA.
    pub fn push_to(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        self.git(&["add", "-A"]);
        self.git(&[
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ]);
        let target = format!("HEAD:refs/heads/{branch}");
        self.git(&["push", "-q", &self.push_url, &target]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn git(&self, args: &[&str]) -> String {
        let output = Command::new("git")
            .current_dir(self.work.path())
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

/// The webhook receiver of a controller replica that Gitea delivers to: its own port on
/// loopback and the shared secret it verifies Gitea's signatures with. Keep it as long as the
/// replica: it holds the secrets directory.
pub struct GiteaReceiver {
    pub port: u16,
    address: String,
    secrets: tempfile::TempDir,
}

impl GiteaReceiver {
    pub fn new(hook_secret: &str) -> Self {
        let secrets = tempfile::tempdir().unwrap();
        super::webhook::write_secret(secrets.path(), "gitea", hook_secret);
        let port = free_port();
        Self {
            port,
            address: format!("127.0.0.1:{port}"),
            secrets,
        }
    }

    /// The replica's flags that open this receiver.
    pub fn flags(&self) -> [&str; 4] {
        [
            "--webhook-bind-address",
            &self.address,
            "--webhook-secrets-dir",
            self.secrets.path().to_str().unwrap(),
        ]
    }

    /// The address Gitea's hooks deliver to.
    pub fn hook_url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/gitea", self.port)
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// The configuration that runs Gitea as root on loopback, with its data under `dir` and
/// deliveries to loopback receivers allowed (Gitea refuses them by default).
fn app_ini(dir: &Path, static_root: &Path, port: u16) -> String {
    let dir = dir.display();
    let static_root = static_root.display();
    format!(
        "APP_NAME = driftless tests
RUN_MODE = prod
RUN_USER = root
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
WORK_PATH = {dir}

[database]
DB_TYPE = sqlite3
PATH = {dir}/gitea.db

[repository]
ROOT = {dir}/repositories
DEFAULT_BRANCH = main

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
OFFLINE_MODE = true
STATIC_ROOT_PATH = {static_root}
APP_DATA_PATH = {dir}/data
LFS_START_SERVER = false

[security]
INSTALL_LOCK = true
SECRET_KEY = driftless-test-secret-key

[service]
DISABLE_REGISTRATION = true

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[indexer]
REPO_INDEXER_ENABLED = false

[log]
MODE = file
LEVEL = Info
ROOT_PATH = {dir}/log
"
    )
}

//! The real test cluster (see `tests/cluster/cluster.sh`): a kube [`Client`] for it and a
//! fresh namespace per test, deleted when the test ends with nothing left holding it.
//!
//! The cluster is found through `DRIFTLESS_TEST_KUBECONFIG` (set by `make test`); without it,
//! `cluster.sh up` is run once per test binary, which reuses a cluster that already serves.
//! Nothing here skips: a test that cannot reach the cluster panics and says why.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, Config,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};

/// The kubeconfig file of the test cluster, starting the cluster when nothing names one.
pub fn kubeconfig_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| match std::env::var_os("DRIFTLESS_TEST_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(run_cluster_script("up")),
    })
}

/// The directory holding the test cluster's binaries (kubectl, helm, kwokctl, ...).
pub fn binaries_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| PathBuf::from(run_cluster_script("bin")))
}

/// Kills kube-apiserver (SIGKILL) and keeps it down until [`ApiserverDown::start`] or drop, so a
/// test can act while it is unreachable.
pub fn stop_apiserver() -> ApiserverDown {
    run_cluster_script("stop-apiserver");
    ApiserverDown { started: false }
}

/// The apiserver, stopped by [`stop_apiserver`]; started again when dropped, so that a failing
/// test does not leave the shared cluster without one.
pub struct ApiserverDown {
    started: bool,
}

impl ApiserverDown {
    /// Starts kube-apiserver again with the same command line and waits until it serves.
    pub fn start(mut self) {
        self.started = true;
        run_cluster_script("start-apiserver");
    }
}

impl Drop for ApiserverDown {
    fn drop(&mut self) {
        if !self.started {
            run_cluster_script("start-apiserver");
        }
    }
}

fn run_cluster_script(verb: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(verb)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "`{} {verb}` failed, so the test cluster is unavailable:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("cluster.sh prints a UTF-8 path")
        .trim()
        .to_owned()
}

/// Client settings for the test cluster as its admin.
pub async fn admin_config() -> Config {
    let kubeconfig = Kubeconfig::read_from(kubeconfig_path()).unwrap_or_else(|error| {
        panic!(
            "cannot read kubeconfig {}: {error}",
            kubeconfig_path().display()
        )
    });
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the test cluster's kubeconfig is valid")
}

/// A client for the test cluster as its admin.
pub async fn admin_client() -> Client {
    Client::try_from(admin_config().await).expect("a client for the test cluster")
}

/// A namespace of one's own for one test, deleted (without waiting) when dropped.
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
}

impl TestNamespace {
    /// Creates a namespace named after `test` plus a unique suffix.
    pub async fn create(test: &str) -> Self {
        let client = admin_client().await;
        let name = unique_name(test);
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    [
                        ("driftless.dev/test".to_owned(), "true".to_owned()),
                        (RUN_LABEL.to_owned(), test_run().to_owned()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|error| panic!("cannot create test namespace {name}: {error}"));
        eprintln!("test namespace {name} on {}", client.default_namespace());
        Self { client, name }
    }

    /// A typed API for namespaced objects in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl TestNamespace {
    /// Creates the GitRepository `name` with `spec`.
    pub async fn create_git_repository(&self, name: &str, spec: serde_json::Value) {
        let object: driftless::api::GitRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": name }, "spec": spec,
        }))
        .expect("a GitRepository literal");
        self.api::<driftless::api::GitRepository>()
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|error| panic!("cannot create GitRepository {name}: {error}"));
    }
}

impl TestNamespace {
    /// Creates ServiceAccount `account` and a Role and RoleBinding of the same name granting it
    /// `verbs` on the core-group `resources` of this namespace, and nothing else.
    pub async fn grant_service_account(&self, account: &str, resources: &[&str], verbs: &[&str]) {
        use k8s_openapi::api::{
            core::v1::ServiceAccount,
            rbac::v1::{Role, RoleBinding},
        };
        let post = PostParams::default();
        let service_account: ServiceAccount =
            literal(serde_json::json!({ "metadata": { "name": account } }));
        let role: Role = literal(serde_json::json!({
            "metadata": { "name": account },
            "rules": [{ "apiGroups": [""], "resources": resources, "verbs": verbs }],
        }));
        let binding: RoleBinding = literal(serde_json::json!({
            "metadata": { "name": account },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account },
            "subjects": [{ "kind": "ServiceAccount", "name": account, "namespace": self.name }],
        }));
        self.api::<ServiceAccount>()
            .create(&post, &service_account)
            .await
            .unwrap();
        self.api::<Role>().create(&post, &role).await.unwrap();
        self.api::<RoleBinding>()
            .create(&post, &binding)
            .await
            .unwrap();
    }

    /// Creates Secret `name` holding `data`.
    pub async fn create_secret(&self, name: &str, data: &[(&str, &[u8])]) {
        use k8s_openapi::{ByteString, api::core::v1::Secret};
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                    .collect(),
            ),
            ..Default::default()
        };
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await, and the test's runtime may be shutting down: clean up from a
        // runtime of our own on a thread of its own.
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for namespace clean-up")
                .block_on(delete_namespace(&name))
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!("could not delete test namespace {}: {error}", self.name);
        }
    }
}

/// Deletes namespace `name` without waiting. The test's controller is gone by now, so nothing
/// would remove driftless's finalizer from the namespace's GitRepositories and the namespace
/// would stay Terminating for ever: the finalizers are removed first, and once more after the
/// delete in case a controller still running put one back.
async fn delete_namespace(name: &str) -> Result<(), kube::Error> {
    let client = admin_client().await;
    release_finalizers(&client, name).await;
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await?;
    release_finalizers(&client, name).await;
    Ok(())
}

/// Removes the finalizers of every GitRepository in `namespace`; a cluster without the CRD has
/// none to remove.
async fn release_finalizers(client: &Client, namespace: &str) {
    use driftless::api::GitRepository;
    use kube::api::{ListParams, Patch, PatchParams};
    let api = Api::<GitRepository>::namespaced(client.clone(), namespace);
    let Ok(repositories) = api.list(&ListParams::default()).await else {
        return;
    };
    let release = serde_json::json!({ "metadata": { "finalizers": null } });
    for repository in repositories.items {
        if repository.metadata.finalizers.is_none_or(|f| f.is_empty()) {
            continue;
        }
        let name = repository.metadata.name.unwrap_or_default();
        if let Err(error) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&release))
            .await
        {
            eprintln!("could not release GitRepository {namespace}/{name}: {error}");
        }
    }
}

/// The label naming the run a test namespace belongs to, so that `tests/run.sh` can check
/// what its own run left behind while other runs share the cluster.
pub const RUN_LABEL: &str = "driftless.dev/test-run";

/// This run's id: `DRIFTLESS_TEST_RUN` when `tests/run.sh` sets it, else one of this process.
fn test_run() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        std::env::var("DRIFTLESS_TEST_RUN")
            .unwrap_or_else(|_| format!("pid-{}", std::process::id()))
    })
}

/// A DNS-1123 label made of `prefix` and a suffix unique within this machine and run.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let sequence = COUNTER.fetch_add(1, Ordering::Relaxed);
    let slug: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!(
        "{}-{:x}{:x}{sequence}",
        slug.trim_matches('-'),
        std::process::id(),
        nanos
    )
}

/// Held shared while [`install_crds`] writes the CRD, and exclusively by a test that installs
/// a CRD of its own for a moment, so that no other test's install undoes it meanwhile.
pub static CRD_SCHEMA: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Installs (or updates) driftless's CRDs and waits until they are Established.
pub async fn install_crds() {
    let _shared = CRD_SCHEMA.read().await;
    use driftless::api::GitRepository;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::{
        CustomResourceExt,
        api::{Patch, PatchParams},
        runtime::wait::{await_condition, conditions},
    };

    let crds: Api<CustomResourceDefinition> = Api::all(admin_client().await);
    let name = GitRepository::crd_name();
    crds.patch(
        name,
        &PatchParams::apply("driftless-test").force(),
        &Patch::Apply(GitRepository::crd()),
    )
    .await
    .expect("the apiserver accepts the CRD, CEL rules included");
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        await_condition(crds, name, conditions::is_crd_established()),
    )
    .await
    .expect("the CRD becomes Established")
    .unwrap();
}

fn literal<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("a valid literal")
}

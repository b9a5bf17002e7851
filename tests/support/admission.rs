//! A validating admission webhook served by the test process and registered with the real
//! apiserver, for tests that need the apiserver itself to hold a request: a Lease write that
//! hangs, a delete that waits while its object is replaced. Requests the test does not ask to
//! hold are allowed at once; held ones are allowed when released.

use std::{
    net::TcpListener,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use axum::{Json, Router, extract::State, routing::post};
use axum_server::{Handle, tls_rustls::RustlsConfig};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use k8s_openapi::api::{
    admissionregistration::v1::ValidatingWebhookConfiguration, core::v1::ConfigMap,
};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    cluster::{TestNamespace, admin_client, unique_name},
    git::TestTls,
};

/// Decides, from an `AdmissionReview`'s `request`, whether to hold that request.
pub type HoldWhen = Box<dyn Fn(&Value) -> bool + Send + Sync>;

/// The label of the dry-run ConfigMaps that show the webhook is in force.
const PROBE_LABEL: &str = "driftless-test/admission-probe";

/// The registered webhook; unregistered (and every held request released) when dropped.
pub struct AdmissionHook {
    configuration: String,
    state: Arc<HookState>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

struct HookState {
    hold_when: HoldWhen,
    released: watch::Sender<bool>,
    held: AtomicUsize,
    probes: AtomicUsize,
}

impl AdmissionHook {
    /// Registers a webhook for `operations` on `resources` (e.g. `["leases"]`) of
    /// `api_group`/`api_version` in `namespace` only, which holds the requests `hold_when`
    /// picks; returns once the apiserver calls it.
    pub async fn start(
        namespace: &TestNamespace,
        api_group: &str,
        api_version: &str,
        resources: &[&str],
        operations: &[&str],
        hold_when: HoldWhen,
    ) -> Self {
        let tls = TestTls::generate();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(HookState {
            hold_when,
            released: watch::Sender::new(false),
            held: AtomicUsize::new(0),
            probes: AtomicUsize::new(0),
        });
        let handle = Handle::new();
        let thread = serve(listener, &tls, state.clone(), handle.clone());
        let configuration = unique_name("driftless-test-hold");
        let scope = json!({ "matchLabels": { "kubernetes.io/metadata.name": namespace.name } });
        let webhook = |name: &str, rules: Value, object_selector: Value, path: &str| {
            json!({
                "name": format!("{name}.driftless.test"),
                "clientConfig": {
                    "url": format!("https://{address}{path}"),
                    "caBundle": BASE64.encode(tls.ca_pem.as_bytes()),
                },
                "rules": [rules],
                "namespaceSelector": scope,
                "objectSelector": object_selector,
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 30,
            })
        };
        let hold_rules = json!({
            "apiGroups": [api_group], "apiVersions": [api_version],
            "resources": resources, "operations": operations, "scope": "Namespaced",
        });
        let probe_rules = json!({
            "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["configmaps"], "operations": ["CREATE"], "scope": "Namespaced",
        });
        let probe_selector = json!({ "matchLabels": { PROBE_LABEL: "true" } });
        let object: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": { "name": configuration },
            "webhooks": [
                webhook("hold", hold_rules, json!({}), "/hold"),
                webhook("probe", probe_rules, probe_selector, "/probe"),
            ],
        }))
        .expect("a ValidatingWebhookConfiguration literal");
        Api::<ValidatingWebhookConfiguration>::all(admin_client().await)
            .create(&PostParams::default(), &object)
            .await
            .expect("the apiserver accepts the webhook configuration");
        let hook = Self {
            configuration,
            state,
            handle,
            thread: Some(thread),
        };
        hook.wait_in_force(namespace).await;
        hook
    }

    /// How many requests were held so far.
    pub fn held(&self) -> usize {
        self.state.held.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` requests have been held.
    pub async fn wait_held(&self, count: usize, within: Duration) {
        let started = tokio::time::Instant::now();
        while self.held() < count {
            assert!(
                started.elapsed() < within,
                "the apiserver sent {} of {count} requests to hold within {within:?}",
                self.held()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lets every held request through, and every later one at once.
    pub fn release(&self) {
        self.state.released.send_replace(true);
    }

    /// The apiserver picks a new webhook configuration up asynchronously: dry-run probes until
    /// one reaches this server.
    async fn wait_in_force(&self, namespace: &TestNamespace) {
        let probe: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": "admission-probe", "labels": { PROBE_LABEL: "true" } },
        }))
        .unwrap();
        let dry_run = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        for _ in 0..300 {
            let _ = namespace.api::<ConfigMap>().create(&dry_run, &probe).await;
            if self.state.probes.load(Ordering::SeqCst) > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "the apiserver never called the admission webhook {}",
            self.configuration
        );
    }
}

impl Drop for AdmissionHook {
    fn drop(&mut self) {
        self.release();
        let name = self.configuration.clone();
        // Drop cannot await, and the test's runtime may be shutting down: use a runtime of our own.
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for clean-up")
                .block_on(async move {
                    Api::<ValidatingWebhookConfiguration>::all(admin_client().await)
                        .delete(&name, &DeleteParams::default())
                        .await
                        .map(|_| ())
                })
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!(
                "could not delete webhook configuration {}: {error}",
                self.configuration
            );
        }
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    listener: TcpListener,
    tls: &TestTls,
    state: Arc<HookState>,
    handle: Handle,
) -> JoinHandle<()> {
    let config = RustlsConfig::from_config(tls.server_config());
    let app = Router::new()
        .route("/hold", post(hold))
        .route("/probe", post(probe))
        .with_state(state);
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the admission webhook")
            .block_on(async move {
                axum_server::from_tcp_rustls(listener, config)
                    .handle(handle)
                    .serve(app.into_make_service())
                    .await
            })
            .expect("the admission webhook serves");
    })
}

async fn hold(State(state): State<Arc<HookState>>, Json(review): Json<Value>) -> Json<Value> {
    let request = &review["request"];
    if (state.hold_when)(request) {
        state.held.fetch_add(1, Ordering::SeqCst);
        let mut released = state.released.subscribe();
        // The apiserver gives up after the webhook's 30 s timeout anyway.
        let _ = tokio::time::timeout(
            Duration::from_secs(60),
            released.wait_for(|released| *released),
        )
        .await;
    }
    allow(request)
}

async fn probe(State(state): State<Arc<HookState>>, Json(review): Json<Value>) -> Json<Value> {
    state.probes.fetch_add(1, Ordering::SeqCst);
    allow(&review["request"])
}

fn allow(request: &Value) -> Json<Value> {
    Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": { "uid": request["uid"], "allowed": true },
    }))
}

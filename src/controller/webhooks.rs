//! Serving the push webhooks on every replica: an in-memory index of GitRepositories kept by a
//! watch (no API list per request), and a trigger that asks for a reconcile by setting the
//! `driftless.dev/reconcile-requested-at` annotation, which survives restarts and reaches the
//! leader whichever replica received the push.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tracing::{info, warn};

use k8s_openapi::api::core::v1::Secret;

use super::{RECONCILE_REQUESTED_AT, webhook_tls};
use crate::{
    api::{GitRepository, LastWebhook},
    telemetry::metrics::Metrics,
    webhook::{
        self, Delivery, RateLimit, RateLimiter, SharedSecrets, Target, Trigger, WebhookState,
        router,
    },
};

/// Where the receiver listens and where its shared secrets are mounted.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub bind_address: SocketAddr,
    /// Files named `github`, `gitlab`, `gitea`, `bitbucket`, `generic`, each holding that
    /// provider's shared secret; a missing file disables that provider's shared receiver.
    pub secrets_dir: Option<PathBuf>,
    /// Largest accepted request body; larger deliveries get 413 without being read.
    pub max_body_bytes: usize,
    /// Requests per second and burst of each receiver; more get 429.
    pub rate_limit: RateLimit,
    /// Longest a client may take to send a request head (or finish a TLS handshake).
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body; slower ones get 408.
    pub body_timeout: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM); plain HTTP when `None`.
    pub tls: Option<WebhookTls>,
}

/// The receiver's certificate and, for mutual TLS, the CA its clients must present.
#[derive(Clone, Debug)]
pub struct WebhookTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// The receiver's writes (the trigger annotation, `status.lastWebhook`), attributed to it in
/// `managedFields`.
fn webhook_write() -> PatchParams {
    PatchParams {
        field_manager: Some("driftless-webhook".to_owned()),
        ..PatchParams::default()
    }
}

/// Reads the shared secrets; trailing newlines (from `kubectl create secret --from-file`) are
/// not part of a secret.
pub fn read_shared_secrets(dir: Option<&Path>) -> std::io::Result<SharedSecrets> {
    let read = |name: &str| -> std::io::Result<Option<Vec<u8>>> {
        let Some(dir) = dir else { return Ok(None) };
        match std::fs::read(dir.join(name)) {
            Ok(mut bytes) => {
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                Ok((!bytes.is_empty()).then_some(bytes))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    };
    Ok(SharedSecrets {
        github: read("github")?,
        gitlab: read("gitlab")?,
        gitea: read("gitea")?,
        bitbucket: read("bitbucket")?,
        generic: read("generic")?,
    })
}

/// Asks for a reconcile through the API, skipping pushes whose commit is already applied so a
/// burst of redundant deliveries causes no fetch storm.
struct AnnotationTrigger {
    client: Client,
    store: Store<GitRepository>,
}

impl Trigger for AnnotationTrigger {
    fn trigger(
        &self,
        namespace: &str,
        name: &str,
        commit: Option<&str>,
    ) -> BoxFuture<'static, Result<(), String>> {
        let reference = ObjectRef::new(name).within(namespace);
        let applied = self
            .store
            .get(&reference)
            .and_then(|r| r.status.as_ref()?.last_applied_revision.clone());
        let already_applied = matches!((commit, &applied), (Some(c), Some(a)) if a.ends_with(c));
        let api: Api<GitRepository> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move {
            if already_applied {
                return Ok(());
            }
            let now = jiff::Timestamp::now().to_string();
            let patch = json!({ "metadata": { "annotations": { RECONCILE_REQUESTED_AT: now } } });
            api.patch(&name, &webhook_write(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }

    /// A merge patch of `status.lastWebhook` alone, so the rest of the status (the leader's)
    /// is untouched. The controller reconciles only on spec, annotation, deletion and finalizer
    /// changes, so this write starts no reconcile.
    fn record_delivery(
        &self,
        namespace: &str,
        name: &str,
        delivery: &Delivery,
    ) -> BoxFuture<'static, Result<(), String>> {
        let api: Api<GitRepository> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        let record = last_webhook(delivery);
        Box::pin(async move {
            let patch = json!({ "status": { "lastWebhook": record } });
            api.patch_status(&name, &webhook_write(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        })
    }
}

fn last_webhook(delivery: &Delivery) -> LastWebhook {
    let received_at =
        jiff::Timestamp::try_from(delivery.received_at).unwrap_or_else(|_| jiff::Timestamp::now());
    LastWebhook {
        received_at: received_at.to_string(),
        delivery_id: delivery.id.clone(),
        provider: delivery.provider.to_string(),
    }
}

/// Starts the receiver and the watch that feeds its index; both run until the process ends.
pub fn start(
    client: Client,
    repositories: Api<GitRepository>,
    settings: WebhookSettings,
    metrics: Metrics,
) -> std::io::Result<()> {
    let secrets = read_shared_secrets(settings.secrets_dir.as_deref())?;
    let (store, writer) = reflector::store();
    let trigger = Arc::new(AnnotationTrigger {
        client: client.clone(),
        store,
    });
    let mut state = WebhookState::new(secrets, trigger);
    state.metrics = Some(metrics);
    state.body_limit = settings.max_body_bytes;
    state.rate_limiter = Arc::new(RateLimiter::new(settings.rate_limit));
    state.body_timeout = settings.body_timeout;
    tokio::spawn(keep_index(client, repositories, writer, state.clone()));
    let tls = match &settings.tls {
        Some(tls) => Some(
            webhook_tls::server_config(&tls.cert, &tls.key, tls.client_ca.as_deref())
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ),
        None => None,
    };
    let app = router(state);
    tokio::spawn(serve(
        settings.bind_address,
        app,
        settings.header_timeout,
        tls,
    ));
    Ok(())
}

/// Serves the receiver over HTTP, or HTTPS (mutual TLS when a client CA is set).
async fn serve(
    address: SocketAddr,
    app: axum::Router,
    header_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => {
            info!(%address, scheme, "webhook receiver listening");
            webhook::serve(listener, app, header_timeout, tls).await;
        }
        Err(error) => warn!(%error, %address, "webhook receiver could not listen"),
    }
}

/// Mirrors every GitRepository into the index (and its per-object hook, when it has one) as
/// the watch reports it.
async fn keep_index(
    client: Client,
    repositories: Api<GitRepository>,
    writer: reflector::store::Writer<GitRepository>,
    state: WebhookState,
) {
    let events = watcher(repositories, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut relisted = Vec::new();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        if let watcher::Event::Apply(repository) | watcher::Event::InitApply(repository) = &event {
            tokio::spawn(register_object_hook(
                client.clone(),
                repository.clone(),
                state.clone(),
            ));
        }
        let mut index = state
            .targets
            .write()
            .expect("the target index is never poisoned");
        match event {
            watcher::Event::Init => relisted.clear(),
            watcher::Event::InitApply(repository) => relisted.extend(target_of(&repository)),
            watcher::Event::InitDone => index.replace_all(relisted.drain(..)),
            watcher::Event::Apply(repository) => match target_of(&repository) {
                Some(target) => {
                    index.insert(target);
                }
                None => {
                    index.remove(
                        &repository.namespace().unwrap_or_default(),
                        &repository.name_any(),
                    );
                }
            },
            watcher::Event::Delete(repository) => {
                let (namespace, name) = (
                    repository.namespace().unwrap_or_default(),
                    repository.name_any(),
                );
                index.remove(&namespace, &name);
                state
                    .object_hooks
                    .write()
                    .expect("never poisoned")
                    .remove(&namespace, &name);
            }
        }
    }
}

/// Registers (or updates, or removes) the per-object hook of `repository`, whose token lives
/// in the Secret named by `spec.webhook.secretRef`.
async fn register_object_hook(client: Client, repository: GitRepository, state: WebhookState) {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let token = match &repository.spec.webhook {
        Some(webhook) => webhook_token(&client, &namespace, &webhook.secret_ref.name).await,
        None => None,
    };
    let mut hooks = state.object_hooks.write().expect("never poisoned");
    match token {
        Some(token) => {
            hooks.insert(&namespace, &name, &token);
        }
        None => {
            hooks.remove(&namespace, &name);
        }
    }
}

/// The `token` key of a webhook Secret, if it exists.
pub async fn webhook_token(client: &Client, namespace: &str, secret: &str) -> Option<Vec<u8>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets.get_opt(secret).await.ok()??;
    let token = secret.data?.remove("token")?.0;
    (!token.is_empty()).then_some(token)
}

fn target_of(repository: &GitRepository) -> Option<Target> {
    Target::from_git_repository(repository).ok()
}

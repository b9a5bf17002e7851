//! Serving the push webhooks on every replica: an in-memory index of GitRepositories kept by a
//! watch (no API list per request), and a trigger that asks for a reconcile: on the leading
//! replica straight into its reconcile queue (no API write), on any other by setting the
//! `driftless.dev/reconcile-requested-at` annotation, which reaches the leader whichever
//! replica received the push.
//!
//! Per-object hooks follow their token Secrets by a metadata watch, so a rotated token takes
//! effect (and the old one stops working) at once, not at the object's next reconcile. The
//! shared secrets and the TLS files are mounted files, re-read every `reload_interval`, so
//! rotating them needs no restart either.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, future::BoxFuture};
use kube::{
    Api, Client, ResourceExt,
    api::{PartialObjectMeta, Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use k8s_openapi::api::core::v1::Secret;

use super::{
    Settings,
    identity::Tenants,
    preview::Previews,
    pushes::{Pushes, QueueError},
    webhook_token::read_webhook_token,
};
use crate::{
    api::{GitRepository, LastWebhook, RECONCILE_REQUESTED_AT},
    sync::write,
    telemetry::metrics::Metrics,
    webhook::{
        self, BodyBudget, Delivery, DeliverySlots, PullRequest, RateLimit, RateLimiter,
        ReloadableSecrets, SharedSecrets, Target, Trigger, TriggerError, WebhookState, WebhookTls,
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
    /// Most request-body bytes held at once by all receivers together; more get 503.
    pub body_budget_bytes: usize,
    /// Most verified deliveries whose triggers run at once; more get 503.
    pub max_in_flight_deliveries: usize,
    /// How often the shared secrets and TLS files are re-read, so rotations need no restart.
    pub reload_interval: Duration,
    /// Requests per second and burst of each receiver; more get 429.
    pub rate_limit: RateLimit,
    /// Longest a client may take to send a request head (or finish a TLS handshake).
    pub header_timeout: Duration,
    /// Longest a client may take to send a request body; slower ones get 408.
    pub body_timeout: Duration,
    /// Serve HTTPS with this certificate chain and key (PEM); plain HTTP when `None`.
    pub tls: Option<WebhookTls>,
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

/// Asks for a reconcile of each matched object: straight into the reconcile queue on the
/// leading replica, through the annotation on any other. Pushes whose commit is already applied
/// are skipped, so a burst of redundant deliveries causes no fetch storm.
struct PushTrigger {
    client: Client,
    store: Store<GitRepository>,
    pushes: Arc<Pushes>,
    previews: Arc<Previews>,
    metrics: Metrics,
}

impl Trigger for PushTrigger {
    fn preview(&self, namespace: &str, name: &str, pull: &PullRequest) -> bool {
        let reference = ObjectRef::new(name).within(namespace);
        match self.store.get(&reference) {
            Some(repository) => self.previews.request(&repository, pull),
            None => false,
        }
    }

    fn trigger(
        &self,
        namespace: &str,
        name: &str,
        commit: Option<&str>,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        let reference = ObjectRef::new(name).within(namespace);
        let applied = self
            .store
            .get(&reference)
            .and_then(|r| r.applied_revision().map(str::to_owned));
        if matches!((commit, &applied), (Some(c), Some(a)) if a.ends_with(c)) {
            return Box::pin(async { Ok(()) });
        }
        // Queued at once, not in the future: the delivery kept by `record_delivery` just
        // before must reach the reconcile this starts.
        match self.pushes.trigger(namespace, name) {
            Ok(()) => {
                self.metrics.count_webhook_trigger("queue");
                return Box::pin(async { Ok(()) });
            }
            Err(QueueError::Stopped) => {
                let error = TriggerError::Failed(Box::new(QueueError::Stopped));
                return Box::pin(async { Err(error) });
            }
            Err(QueueError::NotLeading) => {}
        }
        let api: Api<GitRepository> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let now = jiff::Timestamp::now().to_string();
            let patch = json!({ "metadata": { "annotations": { RECONCILE_REQUESTED_AT: now } } });
            api.patch(&name, &webhook_write(), &Patch::Merge(&patch))
                .await
                .map_err(|error| TriggerError::Failed(Box::new(error)))?;
            metrics.count_webhook_trigger("annotation");
            Ok(())
        })
    }

    /// On the leading replica, the delivery is handed to the reconcile it starts, which writes
    /// it with its own status (a delivery that starts none is not written). On any other, a
    /// merge patch of `status.lastWebhook` alone, so the rest of the status (the leader's) is
    /// untouched; the controller reconciles only on spec, annotation, deletion and finalizer
    /// changes, so this write starts no reconcile.
    fn record_delivery(
        &self,
        namespace: &str,
        name: &str,
        delivery: &Delivery,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        let record = last_webhook(delivery);
        if self.pushes.is_leading() {
            self.pushes.record(namespace, name, record);
            return Box::pin(async { Ok(()) });
        }
        let api: Api<GitRepository> = Api::namespaced(self.client.clone(), namespace);
        let name = name.to_owned();
        Box::pin(async move {
            let patch = json!({ "status": { "lastWebhook": record } });
            api.patch_status(&name, &webhook_write(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
                .map_err(|error| TriggerError::Failed(Box::new(error)))
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

/// Who reads the per-object token Secrets: the tenant of each object, as the reconcile does.
pub(super) struct TokenReader {
    pub(super) config: kube::Config,
    pub(super) client: Client,
    pub(super) settings: Settings,
}

impl TokenReader {
    fn tenants(&self) -> Tenants<'_> {
        Tenants {
            config: &self.config,
            client: &self.client,
            settings: &self.settings,
        }
    }
}

/// Starts the receiver, the watches that feed its indexes and the re-reading of its files;
/// all run until the process ends.
pub(super) fn start(
    tokens: TokenReader,
    repositories: Api<GitRepository>,
    settings: WebhookSettings,
    pushes: Arc<Pushes>,
    previews: Arc<Previews>,
    metrics: Metrics,
) -> std::io::Result<()> {
    let client = tokens.client.clone();
    let namespace = tokens.settings.namespace.clone();
    let shared_secrets = read_shared_secrets(settings.secrets_dir.as_deref())?;
    let (store, writer) = reflector::store();
    let trigger = Arc::new(PushTrigger {
        client: client.clone(),
        store: store.clone(),
        pushes,
        previews,
        metrics: metrics.clone(),
    });
    let mut state = WebhookState::new(shared_secrets, trigger);
    state.metrics = Some(metrics);
    state.body_limit = settings.max_body_bytes;
    state.body_budget = BodyBudget::new(settings.body_budget_bytes);
    state.delivery_slots = DeliverySlots::new(settings.max_in_flight_deliveries);
    state.rate_limiter = Arc::new(RateLimiter::new(settings.rate_limit));
    state.body_timeout = settings.body_timeout;
    let (registrations, pending) = mpsc::unbounded_channel();
    tokio::spawn(keep_object_hooks(
        tokens,
        store.clone(),
        (registrations.clone(), pending),
        state.clone(),
    ));
    // Metadata only: the watch says which Secret changed; tokens are read for referenced ones.
    let secrets: Api<PartialObjectMeta<Secret>> = match namespace.as_deref() {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    tokio::spawn(follow_token_secrets(secrets, store, registrations.clone()));
    tokio::spawn(keep_index(
        repositories,
        writer,
        registrations,
        state.clone(),
    ));
    if let Some(dir) = settings.secrets_dir.clone() {
        tokio::spawn(keep_secrets_current(
            dir,
            state.secrets.clone(),
            settings.reload_interval,
        ));
    }
    let tls = match &settings.tls {
        Some(files) => {
            let config =
                webhook::tls::server_config(&files.cert, &files.key, files.client_ca.as_deref())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let reloadable = axum_server::tls_rustls::RustlsConfig::from_config(config);
            tokio::spawn(webhook::tls::keep_current(
                files.clone(),
                reloadable.clone(),
                settings.reload_interval,
            ));
            Some(reloadable)
        }
        None => None,
    };
    let app = router(state);
    tokio::spawn(listen(
        settings.bind_address,
        app,
        settings.header_timeout,
        tls,
    ));
    Ok(())
}

/// Re-reads the shared secrets every `interval` and serves them once they changed. A read
/// that fails keeps the secrets in use: a half-written mount must not disable a receiver.
async fn keep_secrets_current(dir: PathBuf, secrets: ReloadableSecrets, interval: Duration) {
    let mut ticks = tokio::time::interval(interval.max(webhook::tls::MIN_RELOAD_INTERVAL));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match read_shared_secrets(Some(&dir)) {
            Ok(read) if read != *secrets.current() => {
                info!(configured = ?read, dir = %dir.display(), "webhook secrets reloaded");
                secrets.replace(read);
            }
            Ok(_) => {}
            Err(error) => {
                warn!(%error, dir = %dir.display(), "could not re-read the webhook secrets; keeping the ones in use");
            }
        }
    }
}

/// Wait before reading a webhook token Secret again after the API failed to answer.
const TOKEN_READ_RETRY: Duration = Duration::from_secs(5);

/// Serves the receiver over HTTP, or HTTPS (mutual TLS when a client CA is set).
async fn listen(
    address: SocketAddr,
    app: axum::Router,
    header_timeout: Duration,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => {
            info!(%address, scheme, "webhook receiver listening");
            webhook::serve_connections(listener, app, header_timeout, tls).await;
        }
        Err(error) => warn!(%error, %address, "webhook receiver could not listen"),
    }
}

/// An object whose per-object hook must be registered again from its current spec and Secret.
type HookRegistration = (String, String);

/// Mirrors every GitRepository into the index as the watch reports it, and asks for its
/// per-object hook to be registered when it is new or names another token Secret.
async fn keep_index(
    repositories: Api<GitRepository>,
    writer: reflector::store::Writer<GitRepository>,
    registrations: mpsc::UnboundedSender<HookRegistration>,
    state: WebhookState,
) {
    let events = watcher(repositories, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut relisted = Vec::new();
    // The token Secret and published path each object was last registered for; token changes
    // come through the Secret watch, so only a new object, another Secret or a path the
    // reconcile published anew (e.g. once the tenant's account may read the Secret) needs a
    // registration here.
    let mut token_secrets: HashMap<HookRegistration, RegisteredFor> = HashMap::new();
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        if let watcher::Event::Apply(repository) | watcher::Event::InitApply(repository) = &event {
            let object = (
                repository.namespace().unwrap_or_default(),
                repository.name_any(),
            );
            let secret = registered_for(repository);
            let relisting = matches!(event, watcher::Event::InitApply(_));
            if relisting || token_secrets.get(&object) != Some(&secret) {
                token_secrets.insert(object.clone(), secret);
                let _ = registrations.send(object);
            }
        }
        let mut index = write(&state.targets);
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
                let object = (
                    repository.namespace().unwrap_or_default(),
                    repository.name_any(),
                );
                index.remove(&object.0, &object.1);
                token_secrets.remove(&object);
                write(&state.object_hooks).remove(&object.0, &object.1);
                // A registration still queued finds the object gone and removes it again.
            }
        }
    }
}

/// What a hook's registration depends on besides the Secret's content: the Secret's name and
/// the path the reconcile published.
type RegisteredFor = (Option<String>, Option<String>);

fn registered_for(repository: &GitRepository) -> RegisteredFor {
    let published = repository
        .status
        .as_ref()
        .and_then(|status| status.webhook_path.clone());
    (webhook_secret_name(repository), published)
}

fn webhook_secret_name(repository: &GitRepository) -> Option<String> {
    Some(repository.spec.webhook.as_ref()?.secret_ref.name.clone())
}

/// Asks for the hooks of every object that names a Secret to be registered again whenever
/// that Secret changes or goes away. Metadata only: the tokens themselves are read by
/// [`keep_object_hooks`], for referenced Secrets alone.
async fn follow_token_secrets(
    secrets: Api<PartialObjectMeta<Secret>>,
    repositories: Store<GitRepository>,
    registrations: mpsc::UnboundedSender<HookRegistration>,
) {
    let events = watcher(secrets, watcher::Config::default()).default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret))
            | Ok(watcher::Event::Delete(secret)) => secret,
            Ok(watcher::Event::Init | watcher::Event::InitDone) => continue,
            Err(error) => {
                info!(%error, "webhook token Secret watch interrupted; resuming");
                continue;
            }
        };
        let namespace = changed.namespace();
        let name = changed.name_any();
        for repository in repositories.state() {
            let uses_it = repository.namespace() == namespace
                && webhook_secret_name(&repository).as_deref() == Some(name.as_str());
            if uses_it {
                let object = (
                    repository.namespace().unwrap_or_default(),
                    repository.name_any(),
                );
                let _ = registrations.send(object);
            }
        }
    }
}

/// Registers, updates or removes per-object hooks one request at a time. One at a time on
/// purpose: each registration reads the object's spec and Secret as they are when it runs, so
/// the last one to run reflects the newest token, and a slow read of a rotated-away token can
/// never overwrite a newer one.
async fn keep_object_hooks(
    tokens: TokenReader,
    repositories: Store<GitRepository>,
    (retries, mut pending): (
        mpsc::UnboundedSender<HookRegistration>,
        mpsc::UnboundedReceiver<HookRegistration>,
    ),
    state: WebhookState,
) {
    while let Some((namespace, name)) = pending.recv().await {
        let reference = ObjectRef::new(&name).within(&namespace);
        let token = match repositories.get(&reference) {
            Some(repository) => match read_webhook_token(tokens.tenants(), &repository).await {
                Ok(token) => token,
                // The tenant's account may not read the Secret: no hook. The reconcile says why
                // in a Warning event, and registers again once it can publish a path.
                Err(error) if error.is_refusal() => {
                    warn!(%error, %namespace, %name, "per-object webhook not served");
                    None
                }
                Err(error) => {
                    // The hook in place stays until the Secret can be read: an API hiccup must
                    // not switch a working hook off, and no later event may come to retry.
                    warn!(%error, %namespace, %name, "could not read the webhook token Secret; retrying");
                    let retry = retries.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(TOKEN_READ_RETRY).await;
                        let _ = retry.send((namespace, name));
                    });
                    continue;
                }
            },
            None => None,
        };
        let mut hooks = write(&state.object_hooks);
        match token {
            Some(token) => {
                hooks.insert(&namespace, &name, &token);
            }
            None => {
                hooks.remove(&namespace, &name);
            }
        }
    }
}

fn target_of(repository: &GitRepository) -> Option<Target> {
    Target::from_git_repository(repository).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rewritten_secret_files_are_served_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("github"), "before\n").unwrap();
        let secrets = ReloadableSecrets::new(read_shared_secrets(Some(dir.path())).unwrap());
        let reload = tokio::spawn(keep_secrets_current(
            dir.path().to_owned(),
            secrets.clone(),
            webhook::tls::MIN_RELOAD_INTERVAL,
        ));
        std::fs::write(dir.path().join("github"), "after\n").unwrap();
        std::fs::write(dir.path().join("gitlab"), "added").unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while secrets.current().github.as_deref() != Some(b"after".as_slice()) {
            assert!(tokio::time::Instant::now() < deadline, "never reloaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            secrets.current().gitlab.as_deref(),
            Some(b"added".as_slice())
        );
        std::fs::remove_file(dir.path().join("github")).unwrap();
        while secrets.current().github.is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a removed file stays served"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        reload.abort();
    }
}

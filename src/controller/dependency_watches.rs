//! Event-driven dependencies of other kinds than GitRepository: the first time a kind blocks a
//! dependent, a watch of that kind starts (one per distinct apiVersion and kind, for the
//! controller's life), and each change of an object of it reconciles the GitRepositories that
//! it blocks at once. The watch only wakes them: readiness is still read as the tenant by the
//! reconcile. Until a kind's watch has listed its objects (or when the controller may not watch
//! it), its dependents are polled as before.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use futures::{
    StreamExt,
    channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, GroupVersionKind},
    discovery::{Scope, pinned_kind},
    runtime::{
        WatchStreamExt,
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tokio_util::task::AbortOnDropHandle;

use super::conditions::Reason;
use crate::{api::GitRepository, sync::lock};

/// How long to wait before asking discovery again for a kind it does not serve yet.
const KIND_NOT_SERVED_RETRY: Duration = Duration::from_secs(5);

/// The watches of dependency kinds, and the channel their changes wake dependents through.
pub(super) struct DependencyWatches {
    client: Client,
    /// `--namespace`: watch only there.
    namespace: Option<String>,
    store: Store<GitRepository>,
    wake: UnboundedSender<ObjectRef<GitRepository>>,
    watched: Mutex<HashMap<(String, String), Watch>>,
}

struct Watch {
    /// The watch has listed the kind's objects: its events can be relied on.
    live: Arc<AtomicBool>,
    _task: AbortOnDropHandle<()>,
}

impl DependencyWatches {
    /// The watches, and the stream of GitRepositories to reconcile that they feed.
    pub(super) fn new(
        client: Client,
        namespace: Option<String>,
        store: Store<GitRepository>,
    ) -> (Self, UnboundedReceiver<ObjectRef<GitRepository>>) {
        let (wake, woken) = unbounded();
        let watches = Self {
            client,
            namespace,
            store,
            wake,
            watched: Mutex::new(HashMap::new()),
        };
        (watches, woken)
    }

    /// Starts watching `api_version` `kind` unless it is watched already; true when its watch
    /// is live, so its dependents need no poll.
    pub(super) fn watch(&self, api_version: &str, kind: &str) -> bool {
        let key = (api_version.to_owned(), kind.to_owned());
        let mut watched = lock(&self.watched);
        if let Some(watch) = watched.get(&key) {
            return watch.live.load(Ordering::Relaxed);
        }
        let live = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(watch_kind(
            self.client.clone(),
            self.namespace.clone(),
            key.clone(),
            self.store.clone(),
            self.wake.clone(),
            live.clone(),
        ));
        let watch = Watch {
            live,
            _task: AbortOnDropHandle::new(task),
        };
        watched.insert(key, watch);
        false
    }
}

/// Watches one kind and wakes the dependents each change blocks.
async fn watch_kind(
    client: Client,
    namespace: Option<String>,
    (api_version, kind): (String, String),
    store: Store<GitRepository>,
    wake: UnboundedSender<ObjectRef<GitRepository>>,
    live: Arc<AtomicBool>,
) {
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("", api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (resource, capabilities) = loop {
        match pinned_kind(&client, &gvk).await {
            Ok(found) => break found,
            Err(_) => tokio::time::sleep(KIND_NOT_SERVED_RETRY).await,
        }
    };
    let api: Api<DynamicObject> = match (&capabilities.scope, &namespace) {
        (Scope::Namespaced, Some(namespace)) => Api::namespaced_with(client, namespace, &resource),
        _ => Api::all_with(client, &resource),
    };
    let events = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(events);
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => object,
            Ok(watcher::Event::InitDone) => {
                live.store(true, Ordering::Relaxed);
                continue;
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Err(error) => {
                // Forbidden or gone: the dependents are polled again until it recovers.
                live.store(false, Ordering::Relaxed);
                tracing::debug!(%error, api_version, kind, "dependency watch interrupted");
                continue;
            }
        };
        for dependent in blocked_by(&store, &api_version, &kind, &object) {
            let _ = wake.unbounded_send(dependent);
        }
    }
}

/// The GitRepositories that name `object` in `dependsOn` and wait for their dependencies now;
/// the others have nothing to gain from a reconcile.
fn blocked_by(
    store: &Store<GitRepository>,
    api_version: &str,
    kind: &str,
    object: &DynamicObject,
) -> Vec<ObjectRef<GitRepository>> {
    let name = object.name_any();
    let namespace = object.namespace();
    store
        .state()
        .into_iter()
        .filter(|dependent| is_blocked(dependent))
        .filter(|dependent| {
            let own = dependent.namespace().unwrap_or_default();
            dependent.spec.depends_on.iter().any(|dependency| {
                dependency.api_version() == api_version
                    && dependency.kind() == kind
                    && dependency.name == name
                    && namespace
                        .as_deref()
                        .is_none_or(|namespace| dependency.namespace_or(&own) == namespace)
            })
        })
        .map(|dependent| ObjectRef::from_obj(&*dependent))
        .collect()
}

fn is_blocked(repository: &GitRepository) -> bool {
    repository.status.as_ref().is_some_and(|status| {
        status.conditions.iter().any(|condition| {
            condition.type_ == "Ready" && condition.reason == Reason::DependencyNotReady.as_str()
        })
    })
}

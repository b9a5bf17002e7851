//! Waiting for the cluster or a process to reach a state: each waiter polls, and panics after
//! its deadline saying what it waited for and what it saw last.

use std::time::Duration;

use driftless::api::GitRepository;
use k8s_openapi::api::core::v1::ConfigMap;

use super::cluster::TestNamespace;

/// Polls GitRepository `app` for up to 60 s until `check` accepts it.
pub async fn wait_for(
    namespace: &TestNamespace,
    what: &str,
    check: impl Fn(&GitRepository) -> bool,
) -> GitRepository {
    wait_for_named(namespace, "app", what, Duration::from_secs(60), check).await
}

/// Polls GitRepository `name` until `check` accepts it, or fails with its last status.
pub async fn wait_for_named(
    namespace: &TestNamespace,
    name: &str,
    what: &str,
    within: Duration,
    check: impl Fn(&GitRepository) -> bool,
) -> GitRepository {
    let api = namespace.api::<GitRepository>();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let repository = api.get(name).await.unwrap();
        if check(&repository) {
            return repository;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; status of {name}: {:#?}",
                repository.status
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits up to 30 s until ConfigMap `name` no longer exists.
pub async fn wait_until_gone(namespace: &TestNamespace, name: &str) {
    for _ in 0..120 {
        if namespace
            .api::<ConfigMap>()
            .get_opt(name)
            .await
            .unwrap()
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("ConfigMap {name} was not deleted");
}

/// Waits until GitRepository `app` reports `commit` applied; returns how long that took.
pub async fn wait_applied(namespace: &TestNamespace, commit: &str, within: Duration) -> Duration {
    wait_applied_named(namespace, "app", commit, within).await
}

/// Waits until GitRepository `name` reports `commit` in `status.lastAppliedRevision`. A failed
/// read is retried: the apiserver may be restarting.
pub async fn wait_applied_named(
    namespace: &TestNamespace,
    name: &str,
    commit: &str,
    within: Duration,
) -> Duration {
    let started = tokio::time::Instant::now();
    let api = namespace.api::<GitRepository>();
    let mut last = None;
    while started.elapsed() < within {
        last = Some(api.get(name).await.map(|repository| repository.status));
        if let Some(Ok(Some(status))) = &last {
            if status
                .last_applied_revision
                .as_deref()
                .is_some_and(|applied| applied.ends_with(commit))
            {
                return started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{commit} was not applied to {name} within {within:?}; last read: {last:?}");
}

/// Waits until something accepts connections on `port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

/// Asks for a reconcile of GitRepository `app` now (`driftless.dev/reconcile-requested-at` set
/// to `token`), without waiting for it.
pub async fn request_reconcile(namespace: &TestNamespace, token: &str) {
    let request = serde_json::json!({ "metadata": { "annotations": {
        driftless::api::RECONCILE_REQUESTED_AT: token } } });
    namespace
        .api::<GitRepository>()
        .patch(
            "app",
            &Default::default(),
            &kube::api::Patch::Merge(&request),
        )
        .await
        .unwrap();
}

/// Asks for a reconcile of GitRepository `app` and waits until the controller has handled it
/// (its status echoes `token`).
pub async fn resync(namespace: &TestNamespace, token: &str) -> GitRepository {
    request_reconcile(namespace, token).await;
    wait_for(namespace, &format!("the reconcile asked as {token}"), |r| {
        r.status
            .as_ref()
            .and_then(|status| status.last_handled_reconcile_at.as_deref())
            == Some(token)
    })
    .await
}

/// The note of the first Warning event with `reason` about GitRepository `name`, waiting up to
/// `within`; fails listing the events seen.
pub async fn wait_for_warning(
    namespace: &TestNamespace,
    name: &str,
    reason: &str,
    within: Duration,
) -> String {
    use k8s_openapi::api::events::v1::Event;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let events = namespace
            .api::<Event>()
            .list(&Default::default())
            .await
            .unwrap();
        let found = events.items.iter().find(|event| {
            event.reason.as_deref() == Some(reason)
                && event
                    .regarding
                    .as_ref()
                    .is_some_and(|r| r.name.as_deref() == Some(name))
        });
        if let Some(event) = found {
            assert_eq!(event.type_.as_deref(), Some("Warning"));
            return event.note.clone().unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {reason} event for {name}: {:#?}",
            events
                .items
                .iter()
                .map(|e| (&e.reason, &e.note))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

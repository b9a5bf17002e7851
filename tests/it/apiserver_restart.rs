//! The controller keeps working through a kube-apiserver crash: a commit pushed while the
//! apiserver is down (killed, proven unreachable) is applied once it is back. Ignored in a plain run, since every
//! other test uses the same apiserver: `tests/run.sh` runs it alone, after all the others.

use crate::support;

use std::time::Duration;

use driftless::api::GitRepository;
use kube::api::PostParams;
use serde_json::json;
use support::{
    cluster::{TestNamespace, admin_config, install_crds, stop_apiserver},
    git::{GitRepos, HttpGitServer, HttpOptions},
    objects::manifest,
    waiting::wait_applied,
};

#[tokio::test]
#[ignore = "restarts the apiserver under every other test; tests/run.sh runs it alone, last"]
async fn reconcile_retries_and_converges_after_the_apiserver_restarts() {
    install_crds().await;
    let namespace = TestNamespace::create("apiserver-restart").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = repo.commit("one", &[("deploy/app.yaml", manifest("one").as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let cache = tempfile::tempdir().unwrap();
    let settings =
        support::controller::settings_for(&namespace.name, cache.path(), Duration::from_secs(1));
    let config = admin_config().await;
    let controller = tokio::spawn(driftless::controller::run(
        config,
        settings,
        Default::default(),
    ));
    let object: GitRepository = serde_json::from_value(json!({
        "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
        "metadata": { "name": "app" },
        "spec": { "url": server.url_for(&repo), "path": "deploy", "interval": "1s" },
    }))
    .unwrap();
    let api = namespace.api::<GitRepository>();
    api.create(&PostParams::default(), &object).await.unwrap();
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;

    // The fault must happen before the commit it is meant to delay: the apiserver is killed
    // first, proven unreachable, and only then does the next commit appear.
    let down = tokio::task::spawn_blocking(stop_apiserver).await.unwrap();
    let probe = api.get("app").await;
    assert!(
        probe.is_err(),
        "the apiserver still answers after the kill: {probe:?}"
    );
    let second = repo.commit("two", &[("deploy/app.yaml", manifest("two").as_str())]);
    // Long enough for the controller (1 s interval) to fetch the new commit and fail to apply
    // it at least once against the dead apiserver.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still_down = api.get("app").await;
    assert!(
        still_down.is_err(),
        "the apiserver came back before it was started: {still_down:?}"
    );
    tokio::task::spawn_blocking(move || down.start())
        .await
        .unwrap();
    eprintln!("kube-apiserver was down (SIGKILL) while the next commit was pushed, and is back");
    wait_applied(&namespace, &second, Duration::from_secs(60)).await;
    assert!(
        !controller.is_finished(),
        "the controller survived the outage"
    );
    controller.abort();
}

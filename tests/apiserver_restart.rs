//! The controller keeps working through a kube-apiserver crash: a reconcile that hits the
//! outage retries and converges once the apiserver is back. (Its own test binary, so no other
//! test runs while the apiserver is down.)

mod support;

use std::time::Duration;

use driftless::api::GitRepository;
use kube::api::PostParams;
use serde_json::json;
use support::{
    cluster::{TestNamespace, admin_config, install_crds, restart_apiserver},
    git::{GitRepos, HttpGitServer, HttpOptions},
};

fn manifest(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  value: \"{value}\"\n"
    )
}

#[tokio::test]
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
    wait_applied(&api, &first).await;

    let second = repo.commit("two", &[("deploy/app.yaml", manifest("two").as_str())]);
    tokio::task::spawn_blocking(restart_apiserver)
        .await
        .unwrap();
    eprintln!("kube-apiserver crashed and restarted while the next commit was pending");
    wait_applied(&api, &second).await;
    assert!(
        !controller.is_finished(),
        "the controller survived the outage"
    );
    controller.abort();
}

async fn wait_applied(api: &kube::Api<GitRepository>, commit: &str) {
    for _ in 0..240 {
        if let Ok(repository) = api.get("app").await {
            let applied = repository
                .status
                .and_then(|s| s.last_applied_revision)
                .unwrap_or_default();
            if applied.ends_with(commit) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{commit} was not applied within 60 s");
}

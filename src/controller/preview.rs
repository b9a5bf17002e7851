//! Pull request previews, composed from the parts an apply uses: the pull request's head is
//! fetched by the source engine (the host's pull ref, the object's credentials), rendered and
//! read by the same steps as an apply (same sandbox: its content is untrusted), dry-run on the
//! server as the object's ServiceAccount (never written), and planned against the live objects
//! and the inventory ([`crate::preview`]). The plan goes on the pull request as one comment,
//! edited in place at each push, and as a commit status on the head commit.
//!
//! Previews run a bounded number at a time (`--preview-concurrency`), each repository starts
//! a bounded number per minute (`--preview-rate-limit`: one over it waits, with an Event
//! saying so), and a newer push to the same pull request cancels the preview of the older one,
//! running or waiting.

use std::{collections::HashMap, sync::Arc, time::Duration};

use kube::{
    ResourceExt,
    runtime::{events::EventType, reflector::ObjectRef},
};
use tokio::{
    sync::{Semaphore, mpsc},
    task::AbortHandle,
};

use super::{
    Context,
    artifact::artifact_at,
    commit_status::{HostAccess, destination_of},
    identity::applier_for,
    reconcile::desired_state,
    report::publish,
};
use crate::{
    api::{GitRepository, PreviewCommentMode, PreviewSpec},
    apply::ApplyOptions,
    commit_status::{
        Destination, PostError, State, Status, StatusClient, description_limit, post_request,
        truncate,
    },
    preview::{
        Plan, PreviewRateLimit, Subject, comment_limit, create_comment, failure_comment,
        find_marked, list_comments, marker, plan_comment, pull_request_reference, update_comment,
        would_prune,
    },
    webhook::PullRequest,
};

/// The Warning event of a preview that could not be posted (address, token, the host).
const PREVIEW_FAILED: &str = "PreviewFailed";

/// The Normal event of a preview held back by the repository's rate limit.
const PREVIEW_DELAYED: &str = "PreviewDelayed";

/// One pull request to preview for one object.
#[derive(Debug)]
pub(super) struct PreviewJob {
    namespace: String,
    name: String,
    /// `spec.url`: whose preview budget the job draws from.
    url: String,
    pull: PullRequest,
}

/// Where the webhook receiver hands pull requests; the previews run once the controller's
/// context exists ([`run_previews`]).
pub(super) struct Previews {
    sender: mpsc::UnboundedSender<PreviewJob>,
}

impl Previews {
    pub(super) fn new() -> (Previews, mpsc::UnboundedReceiver<PreviewJob>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (Previews { sender }, receiver)
    }

    /// Queues a preview of `pull` by `repository` when its spec asks for one; returns whether
    /// it did.
    pub(super) fn request(&self, repository: &GitRepository, pull: &PullRequest) -> bool {
        let Some(spec) = &repository.spec.preview else {
            return false;
        };
        if !wants_preview(spec, repository, pull) {
            return false;
        }
        let job = PreviewJob {
            namespace: repository.namespace().unwrap_or_default(),
            name: repository.name_any(),
            url: repository.spec.url.clone(),
            pull: pull.clone(),
        };
        self.sender.send(job).is_ok()
    }
}

/// Whether `spec` previews `pull`: enabled, a target branch it names (default the branch the
/// object follows; any, when it follows the remote's default branch, which the payloads do not
/// all name), and no fork unless allowed.
fn wants_preview(spec: &PreviewSpec, repository: &GitRepository, pull: &PullRequest) -> bool {
    if !spec.enabled || (pull.from_fork && !spec.allows_forks()) {
        return false;
    }
    let target = pull.target_branch.as_str();
    let same = |branch: &String| branch.strip_prefix("refs/heads/").unwrap_or(branch) == target;
    if !spec.branches.is_empty() {
        return spec.branches.iter().any(same);
    }
    let followed = repository.spec.reference.as_ref();
    match followed.and_then(|reference| reference.branch.as_ref()) {
        Some(branch) => same(branch),
        None => followed.is_none_or(|r| r.tag.is_none() && r.semver.is_none()),
    }
}

/// Runs the queued previews until the controller stops: at most `--preview-concurrency` at
/// once and `--preview-rate-limit` started per repository and minute, a newer push to a pull
/// request cancelling the older preview of it (running, or waiting for its turn).
pub(super) async fn run_previews(
    context: Arc<Context>,
    mut jobs: mpsc::UnboundedReceiver<PreviewJob>,
) {
    let slots = Arc::new(Semaphore::new(context.settings.preview_concurrency.max(1)));
    let budget = Arc::new(PreviewRateLimit::per_minute(
        context.settings.preview_rate_limit,
    ));
    let client = StatusClient::new(context.settings.commit_status_retry);
    let mut running: HashMap<(String, String, u64), AbortHandle> = HashMap::new();
    while let Some(job) = jobs.recv().await {
        running.retain(|_, task| !task.is_finished());
        let key = (job.namespace.clone(), job.name.clone(), job.pull.number);
        if let Some(older) = running.remove(&key) {
            tracing::info!(
                namespace = key.0,
                name = key.1,
                number = key.2,
                "a newer push cancels the running preview"
            );
            older.abort();
        }
        let (context, slots, client) = (context.clone(), slots.clone(), client.clone());
        let budget = budget.clone();
        let task = tokio::spawn(async move {
            wait_for_budget(&context, &budget, &job).await;
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            preview(&context, &client, job).await;
        });
        running.insert(key, task.abort_handle());
    }
}

/// Returns once the repository's rate limit lets `job` start. The first refusal is logged and
/// recorded as an Event, so a preview that waits is never a silent one; a newer push to the
/// pull request aborts the wait with the task.
async fn wait_for_budget(context: &Context, budget: &PreviewRateLimit, job: &PreviewJob) {
    let Err(mut wait) = budget.check(&job.url) else {
        return;
    };
    let note = format!(
        "preview of pull request #{} delayed by {}: the repository has started its {} previews \
         of the last minute (--preview-rate-limit)",
        job.pull.number,
        seconds(wait),
        budget.limit_per_minute()
    );
    tracing::info!(
        namespace = job.namespace,
        name = job.name,
        number = job.pull.number,
        %note,
        "preview rate limited"
    );
    let reference = ObjectRef::new(&job.name).within(&job.namespace);
    if let Some(repository) = context.repositories.get(&reference) {
        publish(
            &context.recorder,
            &repository,
            EventType::Normal,
            PREVIEW_DELAYED,
            note,
        )
        .await;
    }
    loop {
        tokio::time::sleep(wait).await;
        match budget.check(&job.url) {
            Ok(()) => return,
            Err(longer) => wait = longer,
        }
    }
}

/// A wait as whole seconds, rounded up.
fn seconds(wait: Duration) -> String {
    format!("{}s", wait.as_secs_f64().ceil().max(1.0) as u64)
}

/// One preview: the plan (or why there is none) posted as the comment and the status.
async fn preview(context: &Context, client: &StatusClient, job: PreviewJob) {
    let reference = ObjectRef::new(&job.name).within(&job.namespace);
    let Some(repository) = context.repositories.get(&reference) else {
        return;
    };
    let Some(spec) = repository.spec.preview.clone() else {
        return;
    };
    let host = HostAccess {
        provider: spec.provider,
        address: spec.address.as_deref(),
        secret: &spec.secret_ref.name,
        field: "spec.preview.secretRef",
    };
    let destination = match destination_of(context, &repository, &host).await {
        Ok(destination) => destination,
        Err(refusal) => {
            let note = format!(
                "preview of pull request #{} not posted: {refusal}",
                job.pull.number
            );
            warn(context, &repository, note).await;
            return;
        }
    };
    let status_context = spec.status_context(&job.namespace, &job.name);
    let post_status = |commit: String, state: State, description: String| Status {
        commit,
        state,
        context: status_context.clone(),
        description,
        target_url: None,
    };
    if let Some(commit) = &job.pull.head_commit {
        let pending = post_status(commit.clone(), State::Pending, "planning".into());
        send_status(context, client, &repository, &destination, &pending).await;
    }
    let planned = plan_of(context, &repository, &job).await;
    let commit = match &planned {
        Ok((commit, _)) => Some(commit.clone()),
        Err(_) => job.pull.head_commit.clone(),
    };
    let object = format!("{}/{}", job.namespace, job.name);
    let shown_commit = commit.clone().unwrap_or_else(|| job.pull.head_ref.clone());
    let subject = Subject {
        object: &object,
        commit: &shown_commit,
    };
    let limit = comment_limit(spec.provider);
    let (body, state, description) = match &planned {
        Ok((_, plan)) => (
            plan_comment(&subject, plan, limit),
            State::Success,
            plan.summary(),
        ),
        Err(reason) => (
            failure_comment(&subject, reason, limit),
            State::Failure,
            reason.clone(),
        ),
    };
    if spec.comment_mode() == PreviewCommentMode::Upsert {
        let posted = upsert_comment(
            client,
            &destination,
            job.pull.number,
            &marker(&object),
            &body,
        )
        .await;
        if let Err(error) = posted {
            let note = format!(
                "preview comment on pull request #{} not posted: {error}",
                job.pull.number
            );
            warn(context, &repository, note).await;
        }
    }
    if let Some(commit) = commit {
        let description = truncate(&description, description_limit(spec.provider));
        let status = post_status(commit, state, description);
        send_status(context, client, &repository, &destination, &status).await;
    }
    tracing::info!(
        object,
        number = job.pull.number,
        state = state.name(),
        "pull request previewed"
    );
}

/// The head commit and its plan, or why there is none (the message names the file).
async fn plan_of(
    context: &Context,
    repository: &GitRepository,
    job: &PreviewJob,
) -> Result<(String, Plan), String> {
    let namespace = &job.namespace;
    let timeout = repository.timeout().map_err(|e| e.to_string())?;
    let reference = pull_request_reference(&job.pull.head_ref, job.pull.head_commit.as_deref());
    let artifact = artifact_at(repository, context, namespace, timeout, reference)
        .await
        .map_err(|failure| failure.message)?;
    let commit = artifact.commit.clone();
    let options =
        ApplyOptions::for_repository(repository, namespace, context.settings.apply_concurrency);
    let desired = desired_state(repository, context, namespace, &options, artifact)
        .await
        .map_err(|failure| failure.message)?;
    let applier = applier_for(repository, namespace, context).map_err(|f| f.message)?;
    let previewed = applier
        .preview(desired.objects, &options)
        .await
        .map_err(|error| format!("revision {}: the dry run failed: {error}", desired.revision))?;
    let pruned = would_prune(repository, &previewed);
    Ok((commit, Plan::of(&previewed, &pruned)))
}

/// Edits the comment that carries `marker`, or creates it.
async fn upsert_comment(
    client: &StatusClient,
    destination: &Destination,
    number: u64,
    marker: &str,
    body: &str,
) -> Result<(), PostError> {
    let listing = list_comments(destination, number);
    let found = client.send(listing.method, &listing.request).await?;
    let write = match find_marked(destination.provider, &found, marker) {
        Some(comment) => update_comment(destination, number, &comment, body),
        None => create_comment(destination, number, body),
    };
    client.send(write.method, &write.request).await.map(|_| ())
}

async fn send_status(
    context: &Context,
    client: &StatusClient,
    repository: &GitRepository,
    destination: &Destination,
    status: &Status,
) {
    if let Err(error) = client.post(&post_request(destination, status)).await {
        let note = format!(
            "preview status {} for commit {} not posted: {error}",
            status.state.name(),
            status.commit
        );
        warn(context, repository, note).await;
    }
}

async fn warn(context: &Context, repository: &GitRepository, note: String) {
    tracing::warn!(
        namespace = repository.namespace().unwrap_or_default(),
        name = repository.name_any(),
        %note,
        "preview"
    );
    publish(
        &context.recorder,
        repository,
        EventType::Warning,
        PREVIEW_FAILED,
        note,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CommitStatusProvider, GitReference, GitRepositorySpec, LocalObjectReference};

    fn repository(branch: Option<&str>, preview: PreviewSpec) -> GitRepository {
        GitRepository::new(
            "app",
            GitRepositorySpec {
                url: "https://git.example.com/org/app.git".into(),
                reference: branch.map(|b| GitReference {
                    branch: Some(b.into()),
                    ..GitReference::default()
                }),
                preview: Some(preview),
                ..GitRepositorySpec::default()
            },
        )
    }

    fn spec() -> PreviewSpec {
        PreviewSpec {
            enabled: true,
            provider: CommitStatusProvider::Gitea,
            address: None,
            secret_ref: LocalObjectReference { name: "t".into() },
            branches: Vec::new(),
            allow_forks: None,
            comment_mode: None,
            status_context: None,
        }
    }

    fn pull(target: &str, from_fork: bool) -> PullRequest {
        PullRequest {
            target_branch: target.into(),
            from_fork,
            number: 1,
            ..PullRequest::default()
        }
    }

    #[test]
    fn the_followed_branch_is_previewed_by_default_and_branches_replace_it() {
        let followed = repository(Some("main"), spec());
        assert!(wants_preview(&spec(), &followed, &pull("main", false)));
        assert!(!wants_preview(&spec(), &followed, &pull("dev", false)));
        let listed = PreviewSpec {
            branches: vec!["refs/heads/dev".into()],
            ..spec()
        };
        assert!(wants_preview(&listed, &followed, &pull("dev", false)));
        assert!(!wants_preview(&listed, &followed, &pull("main", false)));
    }

    #[test]
    fn forks_and_disabled_specs_are_never_previewed_unless_allowed() {
        let followed = repository(Some("main"), spec());
        assert!(!wants_preview(&spec(), &followed, &pull("main", true)));
        let forks = PreviewSpec {
            allow_forks: Some(true),
            ..spec()
        };
        assert!(wants_preview(&forks, &followed, &pull("main", true)));
        let off = PreviewSpec {
            enabled: false,
            ..spec()
        };
        assert!(!wants_preview(&off, &followed, &pull("main", false)));
    }
}

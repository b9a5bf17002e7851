//! Posts statuses in the background, each once: a table of what was posted last per object
//! (in memory, see [`Notifier`]) and a few bounded queues, each drained by one task, so that a
//! slow or failing host never holds a reconcile.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, DefaultHasher},
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::{
    client::{PostError, StatusClient},
    request::{Destination, State, Status, post_request},
};
use crate::{sync::lock, telemetry::metrics::Metrics};

/// Names the object whose statuses these are (its namespace and name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

/// Called, from the queue's task, when a status could not be posted.
pub type OnFailure = Box<dyn FnOnce(PostError) -> BoxFuture<'static, ()> + Send>;

/// What [`Notifier::post`] did with a status.
#[derive(Debug, PartialEq, Eq)]
pub enum Queued {
    /// It will be posted.
    Queued,
    /// This object's last status of this commit and context already has this state.
    AlreadyPosted,
    /// The object's queue is full; it is dropped (and counted).
    Dropped,
}

/// The last status queued for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Last {
    commit: String,
    context: String,
    state: State,
    /// Where it went; `None` for a state only learned from the object's status.
    destination: Option<Destination>,
}

struct Job {
    key: ObjectKey,
    destination: Destination,
    status: Status,
    on_failure: Option<OnFailure>,
}

/// The statuses of every object: posted at most once per change of a commit's state in a
/// context, so a resync, which finds the same commit in the same state, posts nothing. The
/// table is in memory and holds one entry per object (its latest commit): a restarted
/// controller posts each object's current state once more, which the hosts show as the same
/// state again; keeping it in the status would cost a status write per post instead.
#[derive(Clone)]
pub struct Notifier {
    last: Arc<Mutex<HashMap<ObjectKey, Last>>>,
    queues: Arc<Vec<mpsc::Sender<Job>>>,
    metrics: Metrics,
}

/// Queues (one task each); an object always uses the same one, so its statuses keep their
/// order.
const QUEUES: usize = 4;
/// Statuses waiting per queue before new ones are dropped.
const QUEUE_DEPTH: usize = 256;

impl Notifier {
    /// Starts the queues' tasks on the current runtime; they end when every clone is dropped.
    pub fn start(client: StatusClient, metrics: Metrics) -> Self {
        let last: Arc<Mutex<HashMap<ObjectKey, Last>>> = Arc::default();
        let queues = (0..QUEUES)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
                tokio::spawn(drain(
                    receiver,
                    client.clone(),
                    last.clone(),
                    metrics.clone(),
                ));
                sender
            })
            .collect();
        Self {
            last,
            queues: Arc::new(queues),
            metrics,
        }
    }

    /// Whether `status` would be posted: its state differs from the object's last one for
    /// this commit and context, and `pending` only for a commit with no status yet (a retry
    /// of a failing commit is not news; its recovery is). Lets the caller skip reading the
    /// token for a status that would not be sent.
    pub fn is_new(&self, key: &ObjectKey, status: &Status) -> bool {
        let last = lock(&self.last);
        !last.get(key).is_some_and(|last| {
            last.commit == status.commit
                && last.context == status.context
                && (last.state == status.state || status.state == State::Pending)
        })
    }

    /// Queues `status` for `destination` unless it is the object's last one. A newer commit
    /// replacing one whose last status was a failure marks that failure as superseded
    /// (`error`), so no commit stays red for a problem nobody has to fix any more.
    pub fn post(
        &self,
        key: ObjectKey,
        destination: Destination,
        status: Status,
        on_failure: Option<OnFailure>,
    ) -> Queued {
        if !self.is_new(&key, &status) {
            return Queued::AlreadyPosted;
        }
        let previous = {
            let mut last = lock(&self.last);
            last.insert(
                key.clone(),
                Last {
                    commit: status.commit.clone(),
                    context: status.context.clone(),
                    state: status.state,
                    destination: Some(destination.clone()),
                },
            )
        };
        let superseded = previous.and_then(|p| {
            let failed = p.state == State::Failure && p.context == status.context;
            let destination = p.destination.clone()?;
            (failed && p.commit != status.commit).then_some((p, destination))
        });
        if let Some((previous, previous_destination)) = superseded {
            let superseded = Status {
                commit: previous.commit,
                state: State::Error,
                context: previous.context,
                description: format!("superseded by commit {}", short(&status.commit)),
                target_url: status.target_url.clone(),
            };
            self.enqueue(Job {
                key: key.clone(),
                destination: previous_destination,
                status: superseded,
                on_failure: None,
            });
        }
        self.enqueue(Job {
            key,
            destination,
            status,
            on_failure,
        })
    }

    /// Records `status` as the object's last one without posting it, unless the object has
    /// one already: what a controller that just started learns from the object's own status
    /// (a commit it shows applied and Ready was reported `success` by whoever applied it), so
    /// that the first resync after a restart or a leader change posts nothing.
    pub fn seed(&self, key: &ObjectKey, status: &Status) {
        lock(&self.last).entry(key.clone()).or_insert_with(|| Last {
            commit: status.commit.clone(),
            context: status.context.clone(),
            state: status.state,
            destination: None,
        });
    }

    /// Forgets a deleted object.
    pub fn forget(&self, key: &ObjectKey) {
        lock(&self.last).remove(key);
    }

    fn enqueue(&self, job: Job) -> Queued {
        let index = BuildHasherDefault::<DefaultHasher>::default().hash_one(&job.key) as usize;
        let provider = job.destination.provider.name();
        match self.queues[index % self.queues.len()].try_send(job) {
            Ok(()) => Queued::Queued,
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                self.metrics.count_commit_status(provider, "dropped");
                unmark(&self.last, &job);
                Queued::Dropped
            }
        }
    }
}

async fn drain(
    mut jobs: mpsc::Receiver<Job>,
    client: StatusClient,
    last: Arc<Mutex<HashMap<ObjectKey, Last>>>,
    metrics: Metrics,
) {
    while let Some(job) = jobs.recv().await {
        let provider = job.destination.provider.name();
        let request = post_request(&job.destination, &job.status);
        match client.post(&request).await {
            Ok(()) => metrics.count_commit_status(provider, "posted"),
            Err(error) => {
                metrics.count_commit_status(provider, "failed");
                // A later reconcile tries again (a host that was down, a token replaced).
                unmark(&last, &job);
                if let Some(on_failure) = job.on_failure {
                    on_failure(error).await;
                }
            }
        }
    }
}

/// Leaves a tombstone if the object's entry still is `job`'s status: it matches no commit, so
/// the next reconcile posts again, and it keeps [`Notifier::seed`] from assuming the status
/// was posted.
fn unmark(last: &Mutex<HashMap<ObjectKey, Last>>, job: &Job) {
    let mut last = lock(last);
    if let Some(entry) = last.get_mut(&job.key) {
        if entry.commit == job.status.commit && entry.state == job.status.state {
            entry.commit.clear();
            entry.destination = None;
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        api::CommitStatusProvider,
        commit_status::{Credentials, RetryPolicy},
    };

    fn status(commit: &str, state: State) -> Status {
        Status {
            commit: commit.repeat(40),
            state,
            context: "driftless/team-a/app".into(),
            description: String::new(),
            target_url: None,
        }
    }

    #[tokio::test]
    async fn each_state_of_a_commit_is_posted_once_and_pending_only_first() {
        // A server that accepts and never answers: every post stays in flight, so what the
        // table decided is all the test sees.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let destination = Destination {
            provider: CommitStatusProvider::Gitea,
            api: format!("http://{}", silent.local_addr().unwrap()),
            repository: "o/a".into(),
            credentials: Credentials {
                username: None,
                token: "t".into(),
            },
        };
        let client = StatusClient::new(RetryPolicy {
            timeout: Duration::from_secs(60),
            ..Default::default()
        });
        let notifier = Notifier::start(client, Metrics::default());
        let key = ObjectKey {
            namespace: "team-a".into(),
            name: "app".into(),
        };
        let post = |commit: &str, state| {
            notifier.post(
                key.clone(),
                destination.clone(),
                status(commit, state),
                None,
            )
        };
        assert_eq!(post("a", State::Pending), Queued::Queued);
        assert_eq!(post("a", State::Success), Queued::Queued);
        // A resync of the same commit.
        assert_eq!(post("a", State::Success), Queued::AlreadyPosted);
        // A failure, retried: once; a retry's apply start is no news.
        assert_eq!(post("a", State::Failure), Queued::Queued);
        assert_eq!(post("a", State::Pending), Queued::AlreadyPosted);
        assert_eq!(post("a", State::Failure), Queued::AlreadyPosted);
        // Recovery.
        assert_eq!(post("a", State::Success), Queued::Queued);
        // A new commit starts with pending.
        assert_eq!(post("b", State::Pending), Queued::Queued);
        notifier.forget(&key);
        assert!(notifier.is_new(&key, &status("b", State::Pending)));
        // A restarted controller learns the last success from the object's status.
        notifier.seed(&key, &status("b", State::Success));
        assert_eq!(post("b", State::Success), Queued::AlreadyPosted);
        notifier.seed(&key, &status("b", State::Failure));
        assert_eq!(
            post("b", State::Failure),
            Queued::Queued,
            "a seed never overrides"
        );
    }
}

//! The HTTP side: `POST /hooks/{provider}` (shared receivers) and `POST /hooks/{id}`
//! (per-object receivers), wired as verify → parse → de-duplicate → match → trigger.
//!
//! Responses:
//! - 202 `{"triggered": n}` after a push: how many objects it asks to reconcile, possibly 0.
//!   A count, never names: a shared receiver serves every tenant, and its answer must not tell
//!   one sender which objects of other namespaces follow a repository;
//! - 200 `{"triggered": 0}` for pings, ignored events (`"ignored": kind`) and redeliveries
//!   (`"duplicate": true`). A redelivery gets 200 rather than 409 on purpose: the first
//!   delivery was handled, and a 4xx would show as failed in the Git host and can make GitLab
//!   disable the hook;
//! - 401 for a missing or wrong signature, 400 for an unreadable body, 404 for an unknown
//!   provider, a provider without a configured secret or an unknown hook id, 408 when the body
//!   did not arrive within the body deadline, 413 over the body limit, 429 with `Retry-After`
//!   when the receiver's rate limit is exhausted, 503 with `Retry-After` when the process-wide
//!   body budget or the in-flight deliveries are exhausted ([`super::budget`]); a 503 triggers
//!   nothing and leaves the delivery to be redelivered.
//!
//! A verified, matched push is answered 202 at once and its triggers run right after, with
//! retries ([`TriggerRetry`]): the sender gets its answer in well under a millisecond whatever
//! the API server's write latency, and a slow or briefly unavailable API server costs retries
//! here rather than failed deliveries (GitHub recommends answering first and processing
//! asynchronously; GitLab disables hooks after repeated failures). If every attempt fails, the
//! failure is logged and counted, the delivery id is forgotten so a redelivery is processed,
//! and polling at the interval remains the safety net.
//!
//! The order is chosen by cost: the receiver is looked up (404), its rate limit checked (429)
//! and room for the body reserved (413, 503) before the body is read, and the body is read
//! before any signature is computed.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio_util::task::TaskTracker;

use super::budget::{BodyBudget, DeliverySlots};
use super::connections::DEFAULT_BODY_TIMEOUT;
use super::delivery::{TriggerRetry, deliver};
use super::matching::{TargetIndex, reference_matches};
use super::object_hooks::{ObjectHook, ObjectHooks, is_object_hook_id};
use super::payload::{Event, PullRequest, Push, parse_event};
use super::provider::Provider;
use super::rate_limit::{RateLimit, RateLimiter, ReceiverKey, retry_after_seconds};
use super::replay::{DeliveryKey, ReplayCache, bounded_delivery_id};
use super::verify::{VerifyError, verify_request};
use crate::sync::read;
use crate::telemetry::metrics::Metrics;

/// Largest accepted request body. Push payloads are far smaller; the limit keeps a sender from
/// exhausting memory (Argo CD's CVE-2024-40634).
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// `Retry-After` of a 503: deliveries finish within seconds, so room comes back quickly.
const OVERLOADED_RETRY_AFTER_SECONDS: u64 = 5;

/// Why a trigger or a delivery record failed. The webhook module makes no API call itself, so
/// the implementation's own error is carried as its source.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("the request failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
}

/// Asks the controller to reconcile an object soon. The controller implements it by patching
/// the reconcile-requested annotation; it must return once the request is recorded, not when
/// the reconcile is done.
pub trait Trigger: Send + Sync {
    /// Requests a reconcile of `namespace/name`. `commit` is the pushed commit when known, a
    /// hint only (the reconcile still resolves the ref); it is `None` for semver targets.
    fn trigger(
        &self,
        namespace: &str,
        name: &str,
        commit: Option<&str>,
    ) -> BoxFuture<'static, Result<(), TriggerError>>;

    /// Records that a verified delivery matched `namespace/name`, whether or not a reconcile is
    /// needed (the controller writes `status.lastWebhook`). Best effort: a failure is logged
    /// and does not fail the delivery, which has done its job once the trigger succeeded.
    fn record_delivery(
        &self,
        namespace: &str,
        name: &str,
        delivery: &Delivery,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        let _ = (namespace, name, delivery);
        Box::pin(async { Ok(()) })
    }

    /// Asks for a preview of `pull` by `namespace/name`, an object that follows the pull
    /// request's repository; the implementation decides whether that object previews it
    /// (`spec.preview`, the target branch, forks). Returns at once whether one was queued.
    fn preview(&self, namespace: &str, name: &str, pull: &PullRequest) -> bool {
        let _ = (namespace, name, pull);
        false
    }
}

/// A verified delivery, as recorded on the objects it matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Who sent it (for per-object hooks, guessed from the headers).
    pub provider: Provider,
    /// The sender's delivery id, if it sent one, bounded in length
    /// ([`bounded_delivery_id`]).
    pub id: Option<String>,
    /// When the request arrived.
    pub received_at: SystemTime,
}

/// Secrets of the shared receivers, one per provider family. A provider without a secret (or
/// with an empty one) has no receiver: unsigned deliveries are never accepted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SharedSecrets {
    /// `X-Hub-Signature-256` key.
    pub github: Option<Vec<u8>>,
    /// `X-Gitlab-Token` value, or a `whsec_<base64>` Standard Webhooks key.
    pub gitlab: Option<Vec<u8>>,
    /// Gitea, Gogs and Forgejo key.
    pub gitea: Option<Vec<u8>>,
    /// Bitbucket Cloud and Server key.
    pub bitbucket: Option<Vec<u8>>,
    /// `X-Signature` key of the generic receiver.
    pub generic: Option<Vec<u8>>,
}

impl Delivery {
    /// The record of a delivery, its id bounded so that no sender can bloat the statuses.
    pub fn new(provider: Provider, sent_id: Option<&str>, received_at: SystemTime) -> Delivery {
        Delivery {
            provider,
            id: sent_id.map(bounded_delivery_id),
            received_at,
        }
    }
}

impl SharedSecrets {
    /// The secret the shared receiver of `provider` verifies with.
    pub fn for_provider(&self, provider: Provider) -> Option<&[u8]> {
        let secret = match provider {
            Provider::GitHub => &self.github,
            Provider::GitLab => &self.gitlab,
            Provider::Gitea | Provider::Forgejo => &self.gitea,
            Provider::Bitbucket => &self.bitbucket,
            Provider::Generic => &self.generic,
        };
        secret.as_deref().filter(|secret| !secret.is_empty())
    }
}

/// Shows which providers are configured, never the secrets.
impl fmt::Debug for SharedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let configured: Vec<&str> = [
            Provider::GitHub,
            Provider::GitLab,
            Provider::Gitea,
            Provider::Bitbucket,
            Provider::Generic,
        ]
        .into_iter()
        .filter(|provider| self.for_provider(*provider).is_some())
        .map(Provider::path_segment)
        .collect();
        f.debug_struct("SharedSecrets")
            .field("configured", &configured)
            .finish()
    }
}

/// The shared secrets in use, replaceable while serving: the controller re-reads the mounted
/// files and swaps them in, so a rotated secret takes effect without a restart.
#[derive(Clone, Debug, Default)]
pub struct ReloadableSecrets(Arc<RwLock<Arc<SharedSecrets>>>);

impl ReloadableSecrets {
    pub fn new(secrets: SharedSecrets) -> ReloadableSecrets {
        ReloadableSecrets(Arc::new(RwLock::new(Arc::new(secrets))))
    }

    /// The secrets now; a request keeps the snapshot it started with.
    pub fn current(&self) -> Arc<SharedSecrets> {
        read(&self.0).clone()
    }

    /// Serves `secrets` from the next request on.
    pub fn replace(&self, secrets: SharedSecrets) {
        *crate::sync::write(&self.0) = Arc::new(secrets);
    }
}

/// Everything the receiver needs, cheap to clone. The locks are `std` locks: they are only held
/// for lookups and never across an await.
#[derive(Clone)]
pub struct WebhookState {
    /// Targets by repository URL, kept current by the controller's watch.
    pub targets: Arc<RwLock<TargetIndex>>,
    /// Per-object hooks by id, kept current by the controller.
    pub object_hooks: Arc<RwLock<ObjectHooks>>,
    /// Secrets of the shared receivers.
    pub secrets: ReloadableSecrets,
    /// Recently seen deliveries.
    pub replay: Arc<ReplayCache>,
    /// How matched objects are asked to reconcile.
    pub trigger: Arc<dyn Trigger>,
    /// Largest accepted body in bytes; larger requests get 413.
    pub body_limit: usize,
    /// Bytes of bodies being read, across all receivers; when spent, 503.
    pub body_budget: BodyBudget,
    /// Deliveries whose triggers still run; when all are taken, 503.
    pub delivery_slots: DeliverySlots,
    /// Token buckets per receiver; an empty bucket answers 429.
    pub rate_limiter: Arc<RateLimiter>,
    /// Longest time from a request's head to the end of its body; slower bodies get 408.
    pub body_timeout: Duration,
    /// Counts requests by receiver, provider and outcome, rejected ones included, and their
    /// latency.
    pub metrics: Option<Metrics>,
    /// Retries of triggers after the answer.
    pub retry: TriggerRetry,
    /// Triggers still running after their answer; `wait()` after `close()` awaits them (tests,
    /// shutdown).
    pub in_flight: TaskTracker,
}

impl WebhookState {
    /// State with empty indexes, a default replay cache and the default body limit.
    pub fn new(secrets: SharedSecrets, trigger: Arc<dyn Trigger>) -> WebhookState {
        WebhookState {
            targets: Arc::default(),
            object_hooks: Arc::default(),
            secrets: ReloadableSecrets::new(secrets),
            replay: Arc::default(),
            trigger,
            body_limit: DEFAULT_BODY_LIMIT,
            body_budget: BodyBudget::default(),
            delivery_slots: DeliverySlots::default(),
            rate_limiter: Arc::new(RateLimiter::new(RateLimit::DEFAULT)),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            metrics: None,
            retry: TriggerRetry::default(),
            in_flight: TaskTracker::new(),
        }
    }
}

/// The receiver's routes, ready to be served (the caller chooses listener, TLS and shutdown).
pub fn router(state: WebhookState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .route("/hooks/{hook}", post(receive))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// One route for both kinds of hook, since both are a single path segment.
async fn receive(
    State(state): State<WebhookState>,
    Path(hook): Path<String>,
    request: Request,
) -> Response {
    handle(&state, &hook, request).await
}

/// Counts every request, wrong methods and paths included, with its latency.
async fn observe(State(state): State<WebhookState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (receiver, provider) = route_labels(request.uri().path(), request.headers());
    let response = next.run(request).await;
    if let Some(metrics) = &state.metrics {
        let outcome = response
            .extensions()
            .get::<RequestOutcome>()
            .copied()
            .unwrap_or_else(|| RequestOutcome::from_status(response.status()));
        let provider = provider.map_or("unknown", Provider::path_segment);
        metrics.observe_webhook(receiver, provider, outcome.as_str(), started.elapsed());
    }
    response
}

/// `shared` or `object`, and the provider: named by the path for shared receivers, guessed
/// from the headers for per-object hooks, `None` for paths that name neither.
fn route_labels(path: &str, headers: &HeaderMap) -> (&'static str, Option<Provider>) {
    let segment = path.strip_prefix("/hooks/").unwrap_or_default();
    if let Some(provider) = Provider::from_path_segment(segment) {
        return ("shared", Some(provider));
    }
    if is_object_hook_id(segment) {
        return ("object", Some(Provider::detect(headers)));
    }
    ("shared", None)
}

/// How a request ended, for metrics. A fixed set, so that senders cannot create series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    Accepted,
    Duplicate,
    Ignored,
    Ping,
    Unauthorized,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    TooLarge,
    RateLimited,
    Overloaded,
    Timeout,
    Misconfigured,
}

impl RequestOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Accepted => "accepted",
            RequestOutcome::Duplicate => "duplicate",
            RequestOutcome::Ignored => "ignored",
            RequestOutcome::Ping => "ping",
            RequestOutcome::Unauthorized => "unauthorized",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::MethodNotAllowed => "method_not_allowed",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::RateLimited => "rate_limited",
            RequestOutcome::Overloaded => "overloaded",
            RequestOutcome::Timeout => "timeout",
            RequestOutcome::Misconfigured => "misconfigured",
        }
    }

    /// Every answer but 200 has one meaning; the three kinds of 200 are labelled where made.
    fn from_status(status: StatusCode) -> RequestOutcome {
        match status {
            StatusCode::ACCEPTED => RequestOutcome::Accepted,
            StatusCode::OK => RequestOutcome::Ignored,
            StatusCode::UNAUTHORIZED => RequestOutcome::Unauthorized,
            StatusCode::NOT_FOUND => RequestOutcome::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => RequestOutcome::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => RequestOutcome::Timeout,
            StatusCode::PAYLOAD_TOO_LARGE => RequestOutcome::TooLarge,
            StatusCode::TOO_MANY_REQUESTS => RequestOutcome::RateLimited,
            StatusCode::SERVICE_UNAVAILABLE => RequestOutcome::Overloaded,
            StatusCode::INTERNAL_SERVER_ERROR => RequestOutcome::Misconfigured,
            _ => RequestOutcome::BadRequest,
        }
    }
}

fn labelled(mut response: Response, outcome: RequestOutcome) -> Response {
    response.extensions_mut().insert(outcome);
    response
}

/// The receiver a path names, with what its deliveries are verified with.
enum Receiver {
    Shared(Provider, Vec<u8>),
    Object(String, ObjectHook),
}

impl Receiver {
    fn key(&self) -> ReceiverKey {
        match self {
            Receiver::Shared(provider, _) => ReceiverKey::Shared(*provider),
            Receiver::Object(id, _) => ReceiverKey::Object(id.clone()),
        }
    }
}

/// Unknown providers, providers without a secret and unknown hook ids are all `None`, so a
/// wrong per-object token looks exactly like a path that never existed.
fn resolve(state: &WebhookState, hook: &str) -> Option<Receiver> {
    if let Some(provider) = Provider::from_path_segment(hook) {
        let secret = state.secrets.current().for_provider(provider)?.to_vec();
        return Some(Receiver::Shared(provider, secret));
    }
    if !is_object_hook_id(hook) {
        return None;
    }
    let object_hook = read(&state.object_hooks).get(hook).cloned()?;
    Some(Receiver::Object(hook.to_string(), object_hook))
}

async fn handle(state: &WebhookState, hook: &str, request: Request) -> Response {
    let received_at = SystemTime::now();
    let Some(receiver) = resolve(state, hook) else {
        return error_response(StatusCode::NOT_FOUND, "no such webhook receiver");
    };
    if let Err(wait) = state.rate_limiter.check(&receiver.key()) {
        return too_many_requests(wait);
    }
    let declared = declared_length(request.headers());
    if declared.is_some_and(|length| length > state.body_limit) {
        return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body over the limit");
    }
    // A body of unknown length may grow to the limit, so that much is reserved for it.
    let reserve = declared.unwrap_or(state.body_limit);
    let Some(_body_room) = state.body_budget.try_reserve(reserve) else {
        return overloaded("too many request bodies in flight");
    };
    let headers = request.headers().clone();
    let read = axum::body::Bytes::from_request(request, &());
    let body = match tokio::time::timeout(state.body_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(rejection)) => return error_response(rejection.status(), &rejection.body_text()),
        Err(_) => return request_timeout(),
    };
    match receiver {
        Receiver::Shared(provider, secret) => {
            receive_shared(state, provider, &secret, &headers, &body, received_at).await
        }
        Receiver::Object(id, object_hook) => {
            let request = (&headers, &body[..], received_at);
            receive_for_object(state, &id, &object_hook, request).await
        }
    }
}

/// The rest of the body is never read, so the connection cannot carry another request.
fn request_timeout() -> Response {
    let mut response = error_response(StatusCode::REQUEST_TIMEOUT, "request body too slow");
    let close = HeaderValue::from_static("close");
    response.headers_mut().insert(header::CONNECTION, close);
    response
}

/// The `Content-Length` a request declares, if it declares a readable one.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A process-wide bound is reached: nothing was done, and the sender may retry soon.
fn overloaded(reason: &str) -> Response {
    let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, reason);
    let seconds = HeaderValue::from(OVERLOADED_RETRY_AFTER_SECONDS);
    response.headers_mut().insert(header::RETRY_AFTER, seconds);
    response
}

fn too_many_requests(wait: Duration) -> Response {
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
    let seconds = HeaderValue::from(retry_after_seconds(wait));
    response.headers_mut().insert(header::RETRY_AFTER, seconds);
    response
}

async fn receive_shared(
    state: &WebhookState,
    provider: Provider,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    received_at: SystemTime,
) -> Response {
    let pushes = match verified_pushes(provider, secret, headers, body) {
        Ok(Verified::Pushes(pushes)) => pushes,
        Ok(Verified::PullRequest(pull)) => {
            let objects = read(&state.targets).repository_objects(&pull.repository_urls);
            let replay_key =
                DeliveryKey::of_delivery(provider, "", pull.delivery_id.as_deref(), body);
            return accept_pull_request(state, replay_key, objects, &pull);
        }
        Err(response) => return *response,
    };
    let matched = {
        let index = read(&state.targets);
        matched_with_commits(&index, &pushes)
    };
    let sent_id = pushes[0].delivery_id.as_deref();
    let replay_key = DeliveryKey::of_delivery(provider, "", sent_id, body);
    let delivery = Delivery::new(provider, sent_id, received_at);
    accept_first_delivery(state, replay_key, matched, delivery).await
}

async fn receive_for_object(
    state: &WebhookState,
    id: &str,
    hook: &ObjectHook,
    (headers, body, received_at): (&HeaderMap, &[u8], SystemTime),
) -> Response {
    let provider = Provider::detect(headers);
    let pushes = match verified_pushes(provider, &hook.token, headers, body) {
        Ok(Verified::Pushes(pushes)) => pushes,
        Ok(Verified::PullRequest(pull)) => {
            let object = (hook.namespace.clone(), hook.name.clone());
            let sent_id = pull.delivery_id.as_deref();
            let replay_key = DeliveryKey::of_delivery(provider, id, sent_id, body);
            return accept_pull_request(state, replay_key, vec![object], &pull);
        }
        Err(response) => return *response,
    };
    let matched = object_match(state, hook, &pushes);
    let sent_id = pushes[0].delivery_id.as_deref();
    // Scoped to the object: the same delivery may legitimately reach several hooks.
    let replay_key = DeliveryKey::of_delivery(provider, id, sent_id, body);
    let delivery = Delivery::new(provider, sent_id, received_at);
    accept_first_delivery(state, replay_key, matched, delivery).await
}

/// A verified delivery that asks for work.
enum Verified {
    Pushes(Vec<Push>),
    PullRequest(PullRequest),
}

/// Verifies, then parses. Anything but a push or a pull request ends here with its response.
fn verified_pushes(
    provider: Provider,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verified, Box<Response>> {
    if let Err(error) = verify_request(provider, secret, headers, body, SystemTime::now()) {
        return Err(Box::new(rejected(provider, &error)));
    }
    match parse_event(provider, headers, body) {
        Ok(Event::Push(pushes)) if !pushes.is_empty() => Ok(Verified::Pushes(pushes)),
        Ok(Event::PullRequest(pull)) => Ok(Verified::PullRequest(pull)),
        Ok(Event::Push(_)) => Err(Box::new(labelled(
            answer(StatusCode::OK, Answer::default()),
            RequestOutcome::Ignored,
        ))),
        Ok(Event::Ping) => Err(Box::new(labelled(
            answer(StatusCode::OK, Answer::default()),
            RequestOutcome::Ping,
        ))),
        Ok(Event::Ignored(kind)) => {
            let ignored = Answer {
                ignored: Some(kind),
                ..Answer::default()
            };
            Err(Box::new(answer(StatusCode::OK, ignored)))
        }
        Err(error) => Err(Box::new(error_response(
            StatusCode::BAD_REQUEST,
            &error.to_string(),
        ))),
    }
}

fn rejected(provider: Provider, error: &VerifyError) -> Response {
    if *error == VerifyError::InvalidSecret {
        tracing::error!(%provider, %error, "webhook secret is misconfigured");
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
    }
    tracing::warn!(%provider, %error, "rejected webhook delivery");
    error_response(StatusCode::UNAUTHORIZED, &error.to_string())
}

/// Targets of every push with the commit to pass along; when several pushes of one delivery
/// match the same object, the first wins (one reconcile resolves the ref anyway).
fn matched_with_commits(index: &TargetIndex, pushes: &[Push]) -> Triggers {
    let mut matched = Triggers::new();
    for push in pushes {
        for target in index.matching_targets(push) {
            let object = (target.namespace.clone(), target.name.clone());
            let commit = target.commit_hint(push).map(str::to_string);
            matched.entry(object).or_insert(commit);
        }
    }
    matched
}

/// A per-object hook names its object, so the repository URL is not compared (mirrors may push
/// from elsewhere); the ref still has to fit. An object not yet indexed is triggered.
fn object_match(state: &WebhookState, hook: &ObjectHook, pushes: &[Push]) -> Triggers {
    let index = read(&state.targets);
    let target = index.get(&hook.namespace, &hook.name);
    let fitting = pushes.iter().find(|push| match target {
        Some(target) => reference_matches(target.reference.as_ref(), push),
        None => true,
    });
    let mut matched = Triggers::new();
    if let Some(push) = fitting {
        let commit = match target {
            Some(target) => target.commit_hint(push),
            None => push.commit.as_deref(),
        };
        let object = (hook.namespace.clone(), hook.name.clone());
        matched.insert(object, commit.map(str::to_string));
    }
    matched
}

/// `(namespace, name)` → commit, ordered for stable responses.
pub(super) type Triggers = BTreeMap<(String, String), Option<String>>;

/// Drops redeliveries; answers the rest at once with how many objects matched, and starts
/// their triggers in one of the bounded delivery slots ([`super::delivery`]).
async fn accept_first_delivery(
    state: &WebhookState,
    replay_key: DeliveryKey,
    matched: Triggers,
    delivery: Delivery,
) -> Response {
    if !state.replay.first_delivery(replay_key) {
        let duplicate = Answer {
            duplicate: true,
            ..Answer::default()
        };
        return labelled(answer(StatusCode::OK, duplicate), RequestOutcome::Duplicate);
    }
    let slot = if matched.is_empty() {
        None
    } else {
        match state.delivery_slots.try_take() {
            Some(slot) => Some(slot),
            None => {
                // Not handled, so not seen: its redelivery must be processed.
                state.replay.forget(replay_key);
                return overloaded("too many deliveries in flight");
            }
        }
    };
    let accepted = Answer {
        triggered: matched.len(),
        ..Answer::default()
    };
    if let Some(slot) = slot {
        state
            .in_flight
            .spawn(deliver(state.clone(), replay_key, matched, delivery, slot));
    }
    answer(StatusCode::ACCEPTED, accepted)
}

/// Drops redeliveries; hands the pull request to every object that follows its repository,
/// which decides whether it previews it, and answers with how many do.
fn accept_pull_request(
    state: &WebhookState,
    replay_key: DeliveryKey,
    objects: Vec<(String, String)>,
    pull: &PullRequest,
) -> Response {
    if !state.replay.first_delivery(replay_key) {
        let duplicate = Answer {
            duplicate: true,
            ..Answer::default()
        };
        return labelled(answer(StatusCode::OK, duplicate), RequestOutcome::Duplicate);
    }
    let previewed = objects
        .iter()
        .filter(|(namespace, name)| state.trigger.preview(namespace, name, pull))
        .count();
    tracing::info!(
        number = pull.number,
        target_branch = pull.target_branch,
        from_fork = pull.from_fork,
        following = objects.len(),
        previewed,
        "pull request delivery handled"
    );
    let accepted = Answer {
        previewed,
        ..Answer::default()
    };
    answer(StatusCode::ACCEPTED, accepted)
}

/// The JSON body of every non-error response.
#[derive(Debug, Default, Serialize)]
struct Answer {
    /// How many objects were asked to reconcile.
    triggered: usize,
    /// How many objects preview the pull request of the delivery.
    #[serde(skip_serializing_if = "is_zero")]
    previewed: usize,
    /// The event kind when nothing was done because of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<String>,
    /// Set when the delivery id was seen recently.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

fn answer(status: StatusCode, body: Answer) -> Response {
    (status, Json(body)).into_response()
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(ErrorBody { error: message })).into_response()
}

fn is_zero(count: &usize) -> bool {
    *count == 0
}

//! Applying one stage: dry-run every object first, write only when all passed, and skip the
//! objects the dry run shows to be unchanged.

use std::{
    collections::{BTreeMap, HashSet},
    time::{Duration, Instant},
};

use futures::{StreamExt, stream};
use kube::{
    Api, Client,
    api::{DynamicObject, Patch, PatchParams},
};

use super::{
    FIELD_MANAGER,
    compare::{applied_hash, same_object, unchanged_since_applied},
    error::{ApplyError, ObjectFailure, reason_of},
    live::{Listed, prefetch},
    object::{ObjectRef, PreparedObject},
    report::ApplyReport,
};

/// What the dry run found for one object.
enum Plan {
    /// Nothing to write.
    Unchanged(ObjectRef),
    /// Needs a write; the outcome says how to report it.
    Write(Box<PreparedObject>, WriteKind),
}

#[derive(Clone, Copy)]
enum WriteKind {
    Created,
    Configured,
    DriftCorrected,
}

/// Applies the objects of one stage, `concurrency` at a time.
pub async fn apply_stage(
    client: &Client,
    objects: Vec<PreparedObject>,
    owner_labels: &BTreeMap<String, String>,
    concurrency: usize,
    trusted: &HashSet<String>,
) -> Result<ApplyReport, ApplyError> {
    let concurrency = concurrency.max(1);
    let in_place: Vec<String> = objects.iter().map(|object| object.hash.clone()).collect();
    let (trusted, objects): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .partition(|object| trusted.contains(&object.hash));
    let started = Instant::now();
    let mut live = prefetch(client, &objects, owner_labels, concurrency).await;
    let listed = started.elapsed();
    let with_live: Vec<_> = objects
        .into_iter()
        .map(|object| {
            let listed = live.take(&object);
            (object, listed)
        })
        .collect();
    let plans = stream::iter(with_live.into_iter().enumerate())
        .map(|(index, (object, live))| async move { (index, plan(client, object, live).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let (plans, failures) = split(plans);
    if !failures.is_empty() {
        return Err(ApplyError::Validation(failures));
    }
    let planned = started.elapsed();
    let mut report = write_all(client, plans, concurrency).await?;
    report
        .unchanged
        .extend(trusted.into_iter().map(|object| object.reference));
    report.in_place = in_place;
    report.timings.list = listed;
    report.timings.plan = planned - listed;
    report.timings.write = started.elapsed() - planned;
    Ok(report)
}

/// Decides whether the object needs a write. An object that was last applied from this very
/// content and still holds all of it needs none; anything else is dry-run, which validates it
/// and tells whether a write would change anything.
async fn plan(
    client: &Client,
    prepared: PreparedObject,
    listed: Listed,
) -> Result<Plan, ObjectFailure> {
    let api = api_for(client, &prepared);
    let live = match listed {
        Listed::Found(live) => Some(*live),
        // Create-only objects must not be touched if they exist at all, owned or not.
        Listed::NotOwned if !prepared.create_only => None,
        Listed::NotOwned | Listed::Unknown => api
            .get_opt(&prepared.reference.name)
            .await
            .map_err(|error| failure(&prepared, &error))?,
    };
    let unchanged = |live: &DynamicObject| {
        prepared.create_only || unchanged_since_applied(live, &prepared.object, &prepared.hash)
    };
    if live.as_ref().is_some_and(unchanged) {
        return Ok(Plan::Unchanged(prepared.reference));
    }
    let would_be = dry_run(&api, &prepared)
        .await
        .map_err(|error| failure(&prepared, &error))?;
    // A dry-run create leaves `resourceVersion` empty: a set one means the object exists
    // although its list did not show it (its owner labels are missing), so it is read to tell
    // an adoption from drift.
    let live = match live {
        None if would_be.metadata.resource_version.is_some() => api
            .get_opt(&prepared.reference.name)
            .await
            .map_err(|error| failure(&prepared, &error))?,
        live => live,
    };
    let outcome = match live {
        None => WriteKind::Created,
        Some(live) if same_object(&live, &would_be) => {
            return Ok(Plan::Unchanged(prepared.reference));
        }
        Some(live) if applied_hash(&live) == Some(prepared.hash.as_str()) => {
            WriteKind::DriftCorrected
        }
        Some(_) => WriteKind::Configured,
    };
    Ok(Plan::Write(Box::new(prepared), outcome))
}

/// The object as the server would store it after the apply.
///
/// Right after a CRD becomes Established the apiserver can still answer 404 for its resource
/// for a moment; that answer is retried briefly rather than reported as invalid.
pub(super) async fn dry_run(
    api: &Api<DynamicObject>,
    prepared: &PreparedObject,
) -> Result<DynamicObject, kube::Error> {
    let params = apply_params().dry_run();
    let patch = Patch::Apply(&prepared.object);
    let mut attempt = 1;
    loop {
        match api.patch(&prepared.reference.name, &params, &patch).await {
            Err(error)
                if attempt < RESOURCE_NOT_SERVED_ATTEMPTS && is_resource_not_served(&error) =>
            {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

const RESOURCE_NOT_SERVED_ATTEMPTS: u64 = 5;

/// A 404 about the resource type itself, not about a missing namespace.
fn is_resource_not_served(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status)
        if status.code == 404 && status.message.contains("could not find the requested resource"))
}

/// Writes every planned change and reports all outcomes, or every write that failed.
async fn write_all(
    client: &Client,
    plans: Vec<Plan>,
    concurrency: usize,
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    let mut writes = Vec::new();
    for plan in plans {
        match plan {
            Plan::Unchanged(reference) => report.unchanged.push(reference),
            Plan::Write(prepared, outcome) => writes.push((prepared, outcome)),
        }
    }
    report.writes = writes.len();
    let results = stream::iter(writes.into_iter().enumerate())
        .map(|(index, (prepared, outcome))| async move {
            (index, write(client, prepared, outcome).await)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let (written, failures) = split(results);
    if !failures.is_empty() {
        return Err(ApplyError::Write(failures));
    }
    for (reference, outcome) in written {
        match outcome {
            WriteKind::Created => report.created.push(reference),
            WriteKind::Configured => report.configured.push(reference),
            WriteKind::DriftCorrected => report.drift_corrected.push(reference),
        }
    }
    Ok(report)
}

async fn write(
    client: &Client,
    prepared: Box<PreparedObject>,
    outcome: WriteKind,
) -> Result<(ObjectRef, WriteKind), ObjectFailure> {
    let api = api_for(client, &prepared);
    api.patch(
        &prepared.reference.name,
        &apply_params(),
        &Patch::Apply(&prepared.object),
    )
    .await
    .map_err(|error| failure(&prepared, &error))?;
    Ok((prepared.reference, outcome))
}

/// Server-side apply as driftless: forced, because Git is the source of truth and a hand edit
/// must not block it; strict, so a misspelt field is an error rather than silently dropped.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict()
}

pub(super) fn api_for(client: &Client, prepared: &PreparedObject) -> Api<DynamicObject> {
    match &prepared.reference.namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &prepared.resource),
        None => Api::all_with(client.clone(), &prepared.resource),
    }
}

fn failure(prepared: &PreparedObject, error: &kube::Error) -> ObjectFailure {
    ObjectFailure {
        origin: prepared.origin.clone(),
        object: prepared.reference.clone(),
        reason: reason_of(error),
    }
}

/// Separates successes from failures, both in input order whatever order requests completed in.
pub(super) fn split<T>(
    mut results: Vec<(usize, Result<T, ObjectFailure>)>,
) -> (Vec<T>, Vec<ObjectFailure>) {
    results.sort_by_key(|(index, _)| *index);
    let mut successes = Vec::new();
    let mut failures = Vec::new();
    for (_, result) in results {
        match result {
            Ok(success) => successes.push(success),
            Err(failure) => failures.push(failure),
        }
    }
    (successes, failures)
}

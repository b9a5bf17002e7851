//! What an apply would do, without writing: each object's server-side dry run compared with
//! the live object, for `driftless diff`. It runs the same preparation (namespace defaulting,
//! owner labels, content hash) and the same dry run as an apply, so the preview is the apply.

use futures::{StreamExt, stream};
use kube::{Client, api::DynamicObject};

use super::{
    ApplyError, ObjectRef,
    compare::same_object,
    error::reason_of,
    object::PreparedObject,
    stage::{api_for, dry_run, split},
};

/// The outcome one object would have.
#[derive(Debug)]
pub enum Change {
    /// Would be created, as this.
    Create(Box<DynamicObject>),
    /// Would change from the first to the second.
    Update(Box<DynamicObject>, Box<DynamicObject>),
    /// Already as desired.
    Unchanged,
    /// Create-only (`driftless.dev/apply: if-not-present`) and present: never updated.
    CreateOnlyPresent,
    /// Cannot be dry-run before something else of the revision exists (a Namespace or CRD it
    /// creates); it would be created after that.
    CreateAfterItsPrerequisites(String),
}

/// One object of the revision and what applying it would do.
#[derive(Debug)]
pub struct Previewed {
    pub origin: String,
    pub reference: ObjectRef,
    pub change: Change,
}

pub(super) async fn preview_all(
    client: &Client,
    prepared: Vec<PreparedObject>,
    concurrency: usize,
) -> Result<Vec<Previewed>, ApplyError> {
    let results = stream::iter(prepared.into_iter().enumerate())
        .map(|(index, object)| async move { (index, preview_one(client, object).await) })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let (previewed, failures) = split(results);
    if failures.is_empty() {
        Ok(previewed)
    } else {
        Err(ApplyError::Validation(failures))
    }
}

async fn preview_one(
    client: &Client,
    prepared: PreparedObject,
) -> Result<Previewed, super::ObjectFailure> {
    let api = api_for(client, &prepared);
    let failure = |error: &kube::Error| super::ObjectFailure {
        origin: prepared.origin.clone(),
        object: prepared.reference.clone(),
        reason: reason_of(error),
    };
    let live = api
        .get_opt(&prepared.reference.name)
        .await
        .map_err(|e| failure(&e))?;
    let change = match (&live, prepared.create_only) {
        (Some(_), true) => Change::CreateOnlyPresent,
        _ => match dry_run(&api, &prepared).await {
            Ok(would_be) => match live {
                None => Change::Create(Box::new(would_be)),
                Some(live) if same_object(&live, &would_be) => Change::Unchanged,
                Some(live) => Change::Update(Box::new(live), Box::new(would_be)),
            },
            // A missing namespace or kind that the revision itself brings is created first by
            // the apply's first stage; the object cannot be validated before that.
            Err(kube::Error::Api(status)) if live.is_none() && status.code == 404 => {
                Change::CreateAfterItsPrerequisites(status.message)
            }
            Err(error) => return Err(failure(&error)),
        },
    };
    Ok(Previewed {
        origin: prepared.origin,
        reference: prepared.reference,
        change,
    })
}

//! Applying a revision wave by wave (`driftless.dev/apply-wave`, and Argo CD's
//! `argocd.argoproj.io/sync-wave` unless `--ignore-argocd-annotations`): the whole revision is
//! validated by a dry run first, then each wave is applied after every object of the lower
//! waves is healthy. A revision without waves is applied at once, as before.

use std::time::{Duration, Instant};

use super::{
    conditions::Reason,
    failure::{Failure, annotation_problem, apply_failure, refuse_annotations},
};
use crate::{
    api::InventoryEntry,
    apply::{Applier, ApplyOptions, ApplyReport, DesiredObject, ObjectRef, inventory_of},
    ordering::{split_waves, wave_of},
};

/// What an apply in waves needs besides the objects.
pub(super) struct WavePlan<'a> {
    pub(super) revision: &'a str,
    /// Read Argo CD's wave annotation as driftless's.
    pub(super) argocd: bool,
    /// When the revision's time (`spec.timeout`) runs out.
    pub(super) deadline: Instant,
    /// The inventory before this revision, kept (with what the waves applied) should a wave
    /// fail, so nothing applied is forgotten.
    pub(super) inventory: &'a [InventoryEntry],
}

/// Applies `objects` in their waves; see the module's documentation.
pub(super) async fn apply_in_waves(
    applier: &Applier,
    objects: Vec<DesiredObject>,
    options: &ApplyOptions,
    plan: &WavePlan<'_>,
) -> Result<ApplyReport, Failure> {
    let revision = plan.revision;
    let waves = waves_of(objects, plan)?;
    if waves.len() <= 1 {
        let objects = waves.into_iter().flat_map(|(_, objects)| objects).collect();
        return applier
            .apply(objects, options)
            .await
            .map_err(|error| apply_failure(revision, &error));
    }
    // Nothing of a later wave may turn out invalid after the first wave is written.
    let everything: Vec<DesiredObject> = waves.iter().flat_map(|(_, o)| o.clone()).collect();
    applier
        .preview(everything, options)
        .await
        .map_err(|error| apply_failure(revision, &error))?;
    let last = waves.last().map(|(wave, _)| *wave);
    let mut report = ApplyReport::default();
    for (wave, objects) in waves {
        let applied = applier.apply(objects, options).await.map_err(|error| {
            let failure = apply_failure(revision, &error);
            let message = format!("wave {wave}: {}", failure.message);
            Failure { message, ..failure }.keeping(kept(plan, &report))
        })?;
        let applied_refs: Vec<ObjectRef> = applied.objects().cloned().collect();
        report.merge(applied);
        if Some(wave) == last {
            break;
        }
        let left = plan.deadline.saturating_duration_since(Instant::now());
        applier
            .wait_healthy(&applied_refs, left.max(Duration::from_millis(1)))
            .await
            .map_err(|error| {
                Failure::new(
                    Reason::HealthCheckFailed,
                    format!(
                        "revision {revision}: wave {wave} is not healthy, so the waves after it \
                         were not applied: {error}"
                    ),
                )
                .at(revision)
                .keeping(kept(plan, &report))
            })?;
    }
    Ok(report)
}

/// The revision's objects by wave, or every object whose wave annotation is not an integer.
fn waves_of(
    objects: Vec<DesiredObject>,
    plan: &WavePlan<'_>,
) -> Result<Vec<(i64, Vec<DesiredObject>)>, Failure> {
    let mut invalid = Vec::new();
    let mut with_waves = Vec::new();
    for object in objects {
        match wave_of(object.object.metadata.annotations.as_ref(), plan.argocd) {
            Ok(wave) => with_waves.push((wave, object)),
            Err(error) => invalid.push(annotation_problem(&object, error)),
        }
    }
    refuse_annotations(plan.revision, &invalid)?;
    let waves = split_waves(with_waves, |(wave, _)| *wave);
    Ok(waves
        .into_iter()
        .map(|(wave, objects)| (wave, objects.into_iter().map(|(_, o)| o).collect()))
        .collect())
}

/// The inventory before the revision and everything the waves applied so far.
fn kept(plan: &WavePlan<'_>, report: &ApplyReport) -> Vec<InventoryEntry> {
    let mut inventory = plan.inventory.to_vec();
    for entry in inventory_of(report) {
        if !inventory.iter().any(|kept| kept.id == entry.id) {
            inventory.push(entry);
        }
    }
    inventory
}

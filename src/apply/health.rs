//! Health of applied objects, by the kstatus rules Flux uses (`kstatus.Compute`).
//!
//! Everything here is pure: it reads one live object as JSON and says whether it is healthy, still
//! getting there, or stuck. The caller decides how long to wait. The messages are meant for the
//! GitRepository's `Ready` condition, so they name the object and say what is missing in words a
//! user can act on (e.g. "Deployment web: 1 of 2 replicas available").
//!
//! The order follows kstatus: first the generic rules every kind obeys (being deleted, a spec
//! generation the controller has not seen yet, `Reconciling`/`Stalled` conditions), then the
//! rules of the built-in kind, then a `Ready` condition if there is one. An object with no status
//! at all (ConfigMap, Secret, RBAC, ...) is healthy as soon as it exists.

use kube::api::DynamicObject;
use serde_json::Value;

/// Health of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// The object is what its spec asks for.
    Healthy,
    /// Not there yet but still moving; the string says what is missing.
    InProgress(String),
    /// Will not get there without a change; the string says why.
    Failed(String),
}

impl Health {
    /// Whether the object needs no more waiting.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }

    /// The explanation, for anything but healthy.
    pub fn message(&self) -> Option<&str> {
        match self {
            Health::Healthy => None,
            Health::InProgress(why) | Health::Failed(why) => Some(why),
        }
    }
}

/// Health of a live object as the API returned it (JSON with `apiVersion`, `kind`, `metadata`,
/// `spec`, `status`).
pub fn health(object: &Value) -> Health {
    let object = Object::new(object);
    generic(&object)
        .or_else(|| by_kind(&object))
        .or_else(|| ready_condition(&object))
        .unwrap_or(Health::Healthy)
}

/// [`health`] for a [`DynamicObject`], the form the apply engine reads live objects in.
pub fn health_of(object: &DynamicObject) -> Health {
    match serde_json::to_value(object) {
        Ok(value) => health(&value),
        // Serializing a DynamicObject does not fail in practice; saying so beats panicking.
        Err(e) => Health::InProgress(format!("cannot read the object's status: {e}")),
    }
}

/// A read-only view of one object with the lookups the rules need.
struct Object<'a> {
    value: &'a Value,
    group: &'a str,
    kind: &'a str,
    /// "Kind name", the prefix of every message.
    label: String,
}

/// One entry of `status.conditions`; absent fields read as empty.
struct Condition<'a> {
    status: &'a str,
    reason: &'a str,
    message: &'a str,
}

impl Condition<'_> {
    fn is(&self, status: &str) -> bool {
        self.status == status
    }

    /// "Reason: message", or whichever of the two is set.
    fn explain(&self) -> String {
        match (self.reason.is_empty(), self.message.is_empty()) {
            (false, false) => format!("{}: {}", self.reason, self.message),
            (false, true) => self.reason.to_owned(),
            (true, false) => self.message.to_owned(),
            (true, true) => format!("status {}", self.status),
        }
    }
}

impl<'a> Object<'a> {
    fn new(value: &'a Value) -> Self {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        // "apps/v1" -> "apps"; the core group's "v1" has no slash.
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let kind = value["kind"].as_str().unwrap_or_default();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        Self {
            value,
            group,
            kind,
            label: format!("{kind} {name}"),
        }
    }

    fn at(&self, path: &[&str]) -> &'a Value {
        path.iter().fold(self.value, |value, key| &value[*key])
    }

    fn int(&self, path: &[&str]) -> Option<i64> {
        self.at(path).as_i64()
    }

    fn int_or(&self, path: &[&str], default: i64) -> i64 {
        self.int(path).unwrap_or(default)
    }

    fn str(&self, path: &[&str]) -> Option<&'a str> {
        self.at(path).as_str()
    }

    fn conditions(&self) -> &'a [Value] {
        self.at(&["status", "conditions"])
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    fn condition(&self, kind: &str) -> Option<Condition<'a>> {
        let found = self
            .conditions()
            .iter()
            .find(|c| c["type"].as_str() == Some(kind))?;
        let field = |name: &str| found[name].as_str().unwrap_or_default();
        Some(Condition {
            status: field("status"),
            reason: field("reason"),
            message: field("message"),
        })
    }

    fn condition_is(&self, kind: &str, status: &str) -> Option<Condition<'a>> {
        self.condition(kind).filter(|c| c.is(status))
    }

    fn in_progress(&self, why: impl std::fmt::Display) -> Option<Health> {
        Some(Health::InProgress(format!("{}: {why}", self.label)))
    }

    fn failed(&self, why: impl std::fmt::Display) -> Option<Health> {
        Some(Health::Failed(format!("{} {why}", self.label)))
    }
}

/// The rules every kind obeys. `None` means "no verdict yet, look further".
fn generic(object: &Object) -> Option<Health> {
    if !object.at(&["metadata", "deletionTimestamp"]).is_null() {
        return Some(Health::InProgress(format!(
            "{} is being deleted",
            object.label
        )));
    }
    if let Some(observed) = object.int(&["status", "observedGeneration"]) {
        let generation = object.int_or(&["metadata", "generation"], observed);
        // kstatus compares with `!=`; an observed generation ahead of the spec cannot be current
        // either.
        if generation != observed {
            return waiting_for_generation(object, generation);
        }
    }
    if let Some(stalled) = object.condition_is("Stalled", "True") {
        return object.failed(format_args!("is stalled: {}", stalled.explain()));
    }
    if let Some(reconciling) = object.condition_is("Reconciling", "True") {
        return object.in_progress(format_args!("reconciling: {}", reconciling.explain()));
    }
    None
}

fn waiting_for_generation(object: &Object, generation: i64) -> Option<Health> {
    object.in_progress(format_args!(
        "waiting for the controller to observe generation {generation}"
    ))
}

/// Workload controllers always write `status.observedGeneration` once they have acted, so its
/// absence means they have not yet, which the lenient generic check lets through.
fn generation_observed(object: &Object) -> Option<Health> {
    if object.int(&["status", "observedGeneration"]).is_some() {
        return None;
    }
    waiting_for_generation(object, object.int_or(&["metadata", "generation"], 1))
}

/// The rules of built-in kinds; `None` for kinds without special rules.
fn by_kind(object: &Object) -> Option<Health> {
    let rule: fn(&Object) -> Health = match (object.group, object.kind) {
        ("apps" | "extensions", "Deployment") => deployment,
        ("apps" | "extensions", "DaemonSet") => daemon_set,
        ("apps" | "extensions", "ReplicaSet") => replica_set,
        ("apps", "StatefulSet") => stateful_set,
        ("batch", "Job") => job,
        ("", "PersistentVolumeClaim") => persistent_volume_claim,
        ("", "Namespace") => namespace,
        ("", "Pod") => pod,
        ("", "Service") => service,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => custom_resource_definition,
        _ => return None,
    };
    Some(rule(object))
}

/// First verdict among the checks, in order; healthy when none objects.
fn first(checks: impl IntoIterator<Item = Option<Health>>) -> Health {
    checks
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(Health::Healthy)
}

/// "x of y <what>" when fewer than wanted.
fn at_least(object: &Object, have: i64, want: i64, what: &str) -> Option<Health> {
    if have >= want {
        return None;
    }
    object.in_progress(format_args!("{have} of {want} {what}"))
}

/// Pods of an older spec (or of a scale-down) that are still around.
fn no_surplus(object: &Object, have: i64, want: i64) -> Option<Health> {
    if have <= want {
        return None;
    }
    object.in_progress(format_args!(
        "{} old replicas pending termination",
        have - want
    ))
}

fn deployment(object: &Object) -> Health {
    let want = object.int_or(&["spec", "replicas"], 1);
    let status = |field| object.int_or(&["status", field], 0);
    first([
        generation_observed(object),
        deployment_deadline(object),
        at_least(object, status("updatedReplicas"), want, "replicas updated"),
        at_least(object, status("readyReplicas"), want, "replicas ready"),
        at_least(
            object,
            status("availableReplicas"),
            want,
            "replicas available",
        ),
        no_surplus(object, status("replicas"), want),
        deployment_conditions(object),
    ])
}

/// The Deployment controller gives up on a rollout after `progressDeadlineSeconds` and says so
/// on `Progressing`; nothing will change until the spec does.
fn deployment_deadline(object: &Object) -> Option<Health> {
    let progressing = object.condition("Progressing")?;
    if progressing.reason != "ProgressDeadlineExceeded" {
        return None;
    }
    object.failed(format_args!("failed: {}", progressing.explain()))
}

/// Replica counts can match for a moment mid-rollout; kstatus also wants the controller to have
/// declared the new ReplicaSet available and the Deployment `Available`.
fn deployment_conditions(object: &Object) -> Option<Health> {
    // With progressDeadlineSeconds at i32::MAX the controller never writes `Progressing`.
    let no_deadline = object.int(&["spec", "progressDeadlineSeconds"]) == Some(i32::MAX.into());
    let rolled_out = no_deadline
        || object
            .condition_is("Progressing", "True")
            .is_some_and(|c| c.reason == "NewReplicaSetAvailable");
    if !rolled_out {
        return object.in_progress("rollout of the new ReplicaSet not finished");
    }
    match object.condition("Available") {
        Some(available) if available.is("True") => None,
        Some(available) => {
            object.in_progress(format_args!("not Available: {}", available.explain()))
        }
        None => object.in_progress("not Available yet"),
    }
}

fn stateful_set(object: &Object) -> Health {
    let want = object.int_or(&["spec", "replicas"], 1);
    let status = |field| object.int_or(&["status", field], 0);
    first([
        generation_observed(object),
        at_least(object, status("replicas"), want, "replicas created"),
        at_least(object, status("readyReplicas"), want, "replicas ready"),
        no_surplus(object, status("replicas"), want),
        stateful_set_rollout(object, want),
    ])
}

/// Only a RollingUpdate is driven by the controller; with OnDelete, pods change when someone
/// deletes them, so waiting for the new revision would never end.
fn stateful_set_rollout(object: &Object, want: i64) -> Option<Health> {
    let strategy = object.str(&["spec", "updateStrategy", "type"]);
    if strategy.is_some_and(|s| s != "RollingUpdate") {
        return None;
    }
    let updated = object.int_or(&["status", "updatedReplicas"], 0);
    let partition = ["spec", "updateStrategy", "rollingUpdate", "partition"];
    match object.int(&partition).filter(|p| *p > 0) {
        // Pods below the partition stay on the old revision on purpose.
        Some(partition) => at_least(object, updated, want - partition, "replicas updated"),
        None => at_least(object, updated, want, "replicas updated")
            .or_else(|| stateful_set_revision(object)),
    }
}

fn stateful_set_revision(object: &Object) -> Option<Health> {
    let current = object
        .str(&["status", "currentRevision"])
        .unwrap_or_default();
    let update = object
        .str(&["status", "updateRevision"])
        .unwrap_or_default();
    if current == update {
        return None;
    }
    object.in_progress(format_args!(
        "waiting for revision {update} to become current"
    ))
}

fn daemon_set(object: &Object) -> Health {
    let Some(want) = object.int(&["status", "desiredNumberScheduled"]) else {
        return first([
            generation_observed(object),
            object.in_progress("the controller has not counted the nodes to run on yet"),
        ]);
    };
    let status = |field| object.int_or(&["status", field], 0);
    first([
        generation_observed(object),
        at_least(
            object,
            status("updatedNumberScheduled"),
            want,
            "pods updated",
        ),
        at_least(object, status("numberReady"), want, "pods ready"),
        at_least(object, status("numberAvailable"), want, "pods available"),
    ])
}

fn replica_set(object: &Object) -> Health {
    let want = object.int_or(&["spec", "replicas"], 1);
    let status = |field| object.int_or(&["status", field], 0);
    // ReplicaFailure (quota, admission) can clear by itself, so kstatus keeps waiting.
    let failure = object
        .condition_is("ReplicaFailure", "True")
        .and_then(|c| object.in_progress(format_args!("cannot create pods: {}", c.explain())));
    first([
        failure,
        at_least(
            object,
            status("availableReplicas"),
            want,
            "replicas available",
        ),
        no_surplus(object, status("replicas"), want),
    ])
}

fn job(object: &Object) -> Health {
    if object.condition_is("Complete", "True").is_some() {
        return Health::Healthy;
    }
    if let Some(failed) = object.condition_is("Failed", "True") {
        return Health::Failed(format!("{} failed: {}", object.label, failed.explain()));
    }
    let status = |field| object.int_or(&["status", field], 0);
    let why = if object.at(&["spec", "suspend"]).as_bool() == Some(true) {
        "suspended (spec.suspend is true)".to_owned()
    } else if object.str(&["status", "startTime"]).is_none() {
        "not started yet".to_owned()
    } else {
        format!(
            "running: {} active, {} succeeded, {} failed",
            status("active"),
            status("succeeded"),
            status("failed")
        )
    };
    Health::InProgress(format!("{}: {why}", object.label))
}

fn persistent_volume_claim(object: &Object) -> Health {
    match object.str(&["status", "phase"]) {
        Some("Bound") => Health::Healthy,
        // The volume behind the claim is gone; waiting will not bring it back.
        Some("Lost") => Health::Failed(format!("{} lost its volume", object.label)),
        phase => Health::InProgress(format!(
            "{}: phase {}, waiting to be bound to a volume",
            object.label,
            phase.unwrap_or("unknown")
        )),
    }
}

fn namespace(object: &Object) -> Health {
    match object.str(&["status", "phase"]) {
        Some("Terminating") => Health::InProgress(format!("{} is terminating", object.label)),
        _ => Health::Healthy,
    }
}

fn pod(object: &Object) -> Health {
    match object.str(&["status", "phase"]) {
        Some("Succeeded") => Health::Healthy,
        Some("Failed") => Health::Failed(format!(
            "{} failed: {}",
            object.label,
            object
                .str(&["status", "reason"])
                .unwrap_or("a container exited with an error")
        )),
        Some("Running") => running_pod(object),
        Some("Pending") => pending_pod(object),
        _ => Health::InProgress(format!("{}: phase not reported yet", object.label)),
    }
}

fn running_pod(object: &Object) -> Health {
    if object.condition_is("Ready", "True").is_some() {
        return Health::Healthy;
    }
    let crashing = crash_looping(object);
    if !crashing.is_empty() {
        return Health::Failed(format!(
            "{} has containers in CrashLoopBackOff: {}",
            object.label,
            crashing.join(", ")
        ));
    }
    Health::InProgress(format!("{}: running but not Ready", object.label))
}

/// Names of containers the kubelet keeps restarting; kstatus calls such a pod failed.
fn crash_looping<'a>(object: &Object<'a>) -> Vec<&'a str> {
    let statuses = object.at(&["status", "containerStatuses"]);
    statuses
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter(|s| s["state"]["waiting"]["reason"].as_str() == Some("CrashLoopBackOff"))
        .filter_map(|s| s["name"].as_str())
        .collect()
}

/// kstatus fails an unschedulable pod after a grace period; that needs a clock, so here it stays
/// in progress with the scheduler's reason and the caller's timeout decides.
fn pending_pod(object: &Object) -> Health {
    match object.condition_is("PodScheduled", "False") {
        Some(c) if c.reason == "Unschedulable" => Health::InProgress(format!(
            "{}: cannot be scheduled: {}",
            object.label, c.message
        )),
        _ => Health::InProgress(format!("{}: pending", object.label)),
    }
}

fn service(object: &Object) -> Health {
    let is_load_balancer = object.str(&["spec", "type"]) == Some("LoadBalancer");
    let ingress = object.at(&["status", "loadBalancer", "ingress"]).as_array();
    if is_load_balancer && ingress.is_none_or(Vec::is_empty) {
        return Health::InProgress(format!(
            "{}: waiting for the load balancer to get an address",
            object.label
        ));
    }
    Health::Healthy
}

fn custom_resource_definition(object: &Object) -> Health {
    if let Some(names) = object.condition_is("NamesAccepted", "False") {
        return Health::Failed(format!(
            "{} names not accepted: {}",
            object.label,
            names.explain()
        ));
    }
    match object.condition("Established") {
        Some(established) if established.is("True") => Health::Healthy,
        Some(established) => Health::InProgress(format!(
            "{}: not established yet: {}",
            object.label,
            established.explain()
        )),
        None => Health::InProgress(format!("{}: not established yet", object.label)),
    }
}

/// Kinds without rules of their own: a `Ready` condition is widespread enough to trust; without
/// one (and with no `Reconciling`/`Stalled`, checked earlier) the object counts as current.
fn ready_condition(object: &Object) -> Option<Health> {
    let ready = object.condition("Ready")?;
    if ready.is("True") {
        return Some(Health::Healthy);
    }
    object.in_progress(format_args!("not Ready: {}", ready.explain()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn in_progress(health: Health, expected: &str) {
        assert_eq!(health, Health::InProgress(expected.to_owned()));
    }

    fn failed(health: Health, expected: &str) {
        assert_eq!(health, Health::Failed(expected.to_owned()));
    }

    fn deployment(replicas: i64, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "generation": 2},
            "spec": {"replicas": replicas},
            "status": status,
        })
    }

    fn ready_deployment_status() -> Value {
        json!({
            "observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        })
    }

    #[test]
    fn deployment_fully_rolled_out_is_healthy() {
        assert_eq!(
            health(&deployment(2, ready_deployment_status())),
            Health::Healthy
        );
    }

    #[test]
    fn deployment_replicas_default_to_one() {
        let mut object = deployment(
            1,
            json!({
                "observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": 1, "availableReplicas": 1,
                "conditions": ready_deployment_status()["conditions"],
            }),
        );
        object["spec"].as_object_mut().unwrap().remove("replicas");
        assert_eq!(health(&object), Health::Healthy);
    }

    #[test]
    fn deployment_with_unseen_generation_waits() {
        let mut status = ready_deployment_status();
        status["observedGeneration"] = json!(1);
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: waiting for the controller to observe generation 2",
        );
    }

    #[test]
    fn deployment_without_observed_generation_waits() {
        let mut status = ready_deployment_status();
        status.as_object_mut().unwrap().remove("observedGeneration");
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: waiting for the controller to observe generation 2",
        );
    }

    #[test]
    fn deployment_reports_missing_replicas() {
        let mut status = ready_deployment_status();
        status["availableReplicas"] = json!(1);
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: 1 of 2 replicas available",
        );

        let mut status = ready_deployment_status();
        status["updatedReplicas"] = json!(1);
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: 1 of 2 replicas updated",
        );

        let mut status = ready_deployment_status();
        status.as_object_mut().unwrap().remove("readyReplicas");
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: 0 of 2 replicas ready",
        );
    }

    #[test]
    fn deployment_waits_for_old_replicas_to_go() {
        let mut status = ready_deployment_status();
        status["replicas"] = json!(3);
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: 1 old replicas pending termination",
        );
    }

    #[test]
    fn deployment_past_its_deadline_failed() {
        let mut status = ready_deployment_status();
        status["availableReplicas"] = json!(1);
        status["conditions"] = json!([{
            "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-5d9\" has timed out progressing.",
        }]);
        failed(
            health(&deployment(2, status)),
            "Deployment web failed: ProgressDeadlineExceeded: ReplicaSet \"web-5d9\" has timed out progressing.",
        );
    }

    #[test]
    fn deployment_needs_available_and_finished_rollout() {
        let mut status = ready_deployment_status();
        status["conditions"][0]["status"] = json!("False");
        status["conditions"][0]["reason"] = json!("MinimumReplicasUnavailable");
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: not Available: MinimumReplicasUnavailable",
        );

        let mut status = ready_deployment_status();
        status["conditions"][1]["reason"] = json!("ReplicaSetUpdated");
        in_progress(
            health(&deployment(2, status)),
            "Deployment web: rollout of the new ReplicaSet not finished",
        );
    }

    #[test]
    fn deployment_without_deadline_needs_no_progressing_condition() {
        let mut status = ready_deployment_status();
        status["conditions"] = json!([{"type": "Available", "status": "True"}]);
        let mut object = deployment(2, status);
        object["spec"]["progressDeadlineSeconds"] = json!(i32::MAX);
        assert_eq!(health(&object), Health::Healthy);
    }

    #[test]
    fn deleted_objects_are_in_progress() {
        let mut object = deployment(2, ready_deployment_status());
        object["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        in_progress(health(&object), "Deployment web is being deleted");
    }

    fn stateful_set(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 1},
            "spec": spec, "status": status,
        })
    }

    fn ready_stateful_set_status() -> Value {
        json!({
            "observedGeneration": 1, "replicas": 3, "readyReplicas": 3, "currentReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "db-1", "updateRevision": "db-1",
        })
    }

    #[test]
    fn stateful_set_rules() {
        let spec = json!({"replicas": 3});
        assert_eq!(
            health(&stateful_set(spec.clone(), ready_stateful_set_status())),
            Health::Healthy
        );

        let mut status = ready_stateful_set_status();
        status["readyReplicas"] = json!(2);
        in_progress(
            health(&stateful_set(spec.clone(), status)),
            "StatefulSet db: 2 of 3 replicas ready",
        );

        let mut status = ready_stateful_set_status();
        status["updatedReplicas"] = json!(1);
        status["updateRevision"] = json!("db-2");
        in_progress(
            health(&stateful_set(spec.clone(), status)),
            "StatefulSet db: 1 of 3 replicas updated",
        );

        let mut status = ready_stateful_set_status();
        status["updateRevision"] = json!("db-2");
        in_progress(
            health(&stateful_set(spec, status)),
            "StatefulSet db: waiting for revision db-2 to become current",
        );
    }

    #[test]
    fn stateful_set_partition_and_on_delete_skip_the_revision() {
        let mut status = ready_stateful_set_status();
        status["updatedReplicas"] = json!(1);
        status["updateRevision"] = json!("db-2");
        let partitioned = json!({"replicas": 3, "updateStrategy": {
            "type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
        assert_eq!(
            health(&stateful_set(partitioned, status.clone())),
            Health::Healthy
        );

        let on_delete = json!({"replicas": 3, "updateStrategy": {"type": "OnDelete"}});
        assert_eq!(health(&stateful_set(on_delete, status)), Health::Healthy);
    }

    fn daemon_set(status: Value) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "generation": 4}, "status": status,
        })
    }

    #[test]
    fn daemon_set_rules() {
        let ready = json!({
            "observedGeneration": 4, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
            "updatedNumberScheduled": 3, "numberReady": 3, "numberAvailable": 3,
        });
        assert_eq!(health(&daemon_set(ready.clone())), Health::Healthy);

        let mut status = ready.clone();
        status["numberAvailable"] = json!(2);
        in_progress(
            health(&daemon_set(status)),
            "DaemonSet agent: 2 of 3 pods available",
        );

        let mut status = ready.clone();
        status["updatedNumberScheduled"] = json!(0);
        in_progress(
            health(&daemon_set(status)),
            "DaemonSet agent: 0 of 3 pods updated",
        );

        in_progress(
            health(&daemon_set(json!({"observedGeneration": 4}))),
            "DaemonSet agent: the controller has not counted the nodes to run on yet",
        );
        in_progress(
            health(&daemon_set(json!({}))),
            "DaemonSet agent: waiting for the controller to observe generation 4",
        );
    }

    #[test]
    fn replica_set_rules() {
        let object = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "web-5d9"}, "spec": {"replicas": 2}, "status": status})
        };
        assert_eq!(
            health(&object(json!({"replicas": 2, "availableReplicas": 2}))),
            Health::Healthy
        );
        in_progress(
            health(&object(json!({"replicas": 2, "availableReplicas": 1}))),
            "ReplicaSet web-5d9: 1 of 2 replicas available",
        );
        in_progress(
            health(&object(
                json!({"conditions": [{"type": "ReplicaFailure", "status": "True",
                "reason": "FailedCreate", "message": "exceeded quota"}]}),
            )),
            "ReplicaSet web-5d9: cannot create pods: FailedCreate: exceeded quota",
        );
    }

    fn job(status: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": "migrate"}, "spec": {}, "status": status})
    }

    #[test]
    fn job_rules() {
        let complete = json!({"succeeded": 1, "startTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]});
        assert_eq!(health(&job(complete)), Health::Healthy);

        let failed_job = json!({"failed": 6, "conditions": [{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]});
        failed(
            health(&job(failed_job)),
            "Job migrate failed: BackoffLimitExceeded: Job has reached the specified backoff limit",
        );

        let running = json!({"active": 1, "failed": 1, "startTime": "2026-01-01T00:00:00Z"});
        in_progress(
            health(&job(running)),
            "Job migrate: running: 1 active, 0 succeeded, 1 failed",
        );
        in_progress(health(&job(json!({}))), "Job migrate: not started yet");

        let mut suspended = job(json!({}));
        suspended["spec"]["suspend"] = json!(true);
        in_progress(
            health(&suspended),
            "Job migrate: suspended (spec.suspend is true)",
        );
    }

    #[test]
    fn persistent_volume_claim_rules() {
        let pvc = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data"}, "status": {"phase": phase}})
        };
        assert_eq!(health(&pvc("Bound")), Health::Healthy);
        in_progress(
            health(&pvc("Pending")),
            "PersistentVolumeClaim data: phase Pending, waiting to be bound to a volume",
        );
        failed(
            health(&pvc("Lost")),
            "PersistentVolumeClaim data lost its volume",
        );
    }

    #[test]
    fn custom_resource_definition_rules() {
        let crd = |conditions: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"}, "status": {"conditions": conditions}})
        };
        let established = json!([{"type": "NamesAccepted", "status": "True"},
                                 {"type": "Established", "status": "True"}]);
        assert_eq!(health(&crd(established)), Health::Healthy);
        in_progress(
            health(&crd(json!([]))),
            "CustomResourceDefinition widgets.example.com: not established yet",
        );
        let conflict = json!([{"type": "NamesAccepted", "status": "False",
            "reason": "ListKindConflict", "message": "\"WidgetList\" is already in use"},
            {"type": "Established", "status": "False", "reason": "NotAccepted"}]);
        failed(
            health(&crd(conflict)),
            "CustomResourceDefinition widgets.example.com names not accepted: ListKindConflict: \"WidgetList\" is already in use",
        );
    }

    #[test]
    fn namespace_rules() {
        let ns = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "team-a"}, "status": {"phase": phase}})
        };
        assert_eq!(health(&ns("Active")), Health::Healthy);
        in_progress(
            health(&ns("Terminating")),
            "Namespace team-a is terminating",
        );
    }

    fn pod(status: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"}, "status": status})
    }

    #[test]
    fn pod_rules() {
        assert_eq!(health(&pod(json!({"phase": "Succeeded"}))), Health::Healthy);
        let ready = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(health(&pod(ready)), Health::Healthy);
        in_progress(
            health(&pod(json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": "False"}]}))),
            "Pod web-0: running but not Ready",
        );
        failed(
            health(&pod(json!({"phase": "Failed", "reason": "Evicted"}))),
            "Pod web-0 failed: Evicted",
        );
        let crashing = json!({"phase": "Running", "containerStatuses": [
            {"name": "app", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
            {"name": "sidecar", "state": {"running": {}}}]});
        failed(
            health(&pod(crashing)),
            "Pod web-0 has containers in CrashLoopBackOff: app",
        );
        let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}]});
        in_progress(
            health(&pod(unschedulable)),
            "Pod web-0: cannot be scheduled: 0/3 nodes are available",
        );
    }

    #[test]
    fn service_rules() {
        let service = |kind: &str, status: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"type": kind}, "status": status})
        };
        assert_eq!(health(&service("ClusterIP", json!({}))), Health::Healthy);
        in_progress(
            health(&service("LoadBalancer", json!({"loadBalancer": {}}))),
            "Service web: waiting for the load balancer to get an address",
        );
        let assigned = json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}});
        assert_eq!(health(&service("LoadBalancer", assigned)), Health::Healthy);
    }

    fn custom(status: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
               "metadata": {"name": "w", "generation": 3}, "status": status})
    }

    #[test]
    fn custom_resources_follow_ready_reconciling_and_stalled() {
        let ready = json!({"observedGeneration": 3,
            "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(health(&custom(ready)), Health::Healthy);

        let not_ready = json!({"conditions": [{"type": "Ready", "status": "False",
            "reason": "DependencyNotReady", "message": "waiting for the database"}]});
        in_progress(
            health(&custom(not_ready)),
            "Widget w: not Ready: DependencyNotReady: waiting for the database",
        );

        let stalled = json!({"conditions": [{"type": "Ready", "status": "False"},
            {"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": "bad size"}]});
        failed(
            health(&custom(stalled)),
            "Widget w is stalled: InvalidSpec: bad size",
        );

        let reconciling = json!({"conditions": [{"type": "Reconciling", "status": "True",
            "reason": "Progressing"}]});
        in_progress(
            health(&custom(reconciling)),
            "Widget w: reconciling: Progressing",
        );

        let other = json!({"conditions": [{"type": "Synced", "status": "True"}]});
        assert_eq!(health(&custom(other)), Health::Healthy);
    }

    #[test]
    fn custom_resource_with_unseen_generation_waits() {
        let stale = json!({"observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}]});
        in_progress(
            health(&custom(stale)),
            "Widget w: waiting for the controller to observe generation 3",
        );
    }

    #[test]
    fn objects_without_status_are_healthy() {
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"}, "data": {"a": "b"}});
        assert_eq!(health(&config_map), Health::Healthy);
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "reader"}, "rules": []});
        assert_eq!(health(&role), Health::Healthy);
    }

    #[test]
    fn dynamic_objects_are_read_like_json() {
        let value = deployment(2, ready_deployment_status());
        let object: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(health_of(&object), Health::Healthy);

        let mut value = value;
        value["status"]["availableReplicas"] = json!(1);
        let object: DynamicObject = serde_json::from_value(value).unwrap();
        let health = health_of(&object);
        assert_eq!(
            health.message(),
            Some("Deployment web: 1 of 2 replicas available")
        );
        assert!(!health.is_healthy());
    }
}

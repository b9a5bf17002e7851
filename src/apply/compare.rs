//! Deciding whether a server-side dry run would change the live object: if the object the server
//! would store equals the one it stores, writing it would only churn `managedFields`.

use kube::api::DynamicObject;
use serde_json::Value;

use crate::api::APPLIED_HASH_ANNOTATION;

/// Whether the dry-run result `would_be` equals `live` in everything a write would change.
///
/// Ignored: `metadata.managedFields` (timestamps differ even for a no-op),
/// `metadata.resourceVersion` and `status`, which controllers update between the GET and the
/// dry run without the desired state being any different.
pub fn same_object(live: &DynamicObject, would_be: &DynamicObject) -> bool {
    comparable(live) == comparable(would_be)
}

fn comparable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(root) = value.as_object_mut() {
        root.remove("status");
        if let Some(metadata) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
            metadata.remove("resourceVersion");
        }
    }
    value
}

/// Whether the live object already holds everything in `desired`, value for value.
///
/// Together with an unchanged [`applied_hash`] this proves an apply would change nothing: the
/// fields driftless owns are the ones it applied last time, and each still has the desired
/// value. It is deliberately strict (lists must match element by element, a defaulted or
/// normalized value counts as different): a "no" only costs a dry run, a wrong "yes" would hide
/// drift.
pub fn covers(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired.iter().all(|(key, wanted)| {
            live.get(key)
                .map_or(wanted.is_null(), |found| covers(found, wanted))
        }),
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len() && live.iter().zip(desired).all(|(l, d)| covers(l, d))
        }
        (live, desired) => live == desired,
    }
}

/// Whether `live` was last applied from exactly `prepared`'s content and still holds all of it.
pub fn unchanged_since_applied(live: &DynamicObject, desired: &DynamicObject, hash: &str) -> bool {
    applied_hash(live) == Some(hash)
        && match (serde_json::to_value(live), serde_json::to_value(desired)) {
            (Ok(live), Ok(desired)) => covers(&live, &desired),
            _ => false,
        }
}

/// The content hash driftless stored on the live object when it last applied it.
pub fn applied_hash(live: &DynamicObject) -> Option<&str> {
    live.metadata
        .annotations
        .as_ref()?
        .get(APPLIED_HASH_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn managed_fields_resource_version_and_status_do_not_count() {
        let live = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "1", "managedFields": [{"manager": "x"}]},
            "data": {"k": "v"}, "status": {"phase": "old"}}));
        let would_be = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "2", "managedFields": [{"manager": "y"}]},
            "data": {"k": "v"}, "status": {"phase": "new"}}));
        assert!(same_object(&live, &would_be));
    }

    #[test]
    fn covers_accepts_extra_live_fields_but_not_changed_or_missing_ones() {
        let live = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}});
        assert!(covers(
            &live,
            &json!({"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"ports": [{"port": 80}]}})
        ));
        assert!(!covers(&live, &json!({"metadata": {"labels": {"x": "2"}}})));
        assert!(!covers(&live, &json!({"metadata": {"labels": {"z": "1"}}})));
        assert!(!covers(
            &live,
            &json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}})
        ));
        assert!(!covers(&live, &json!({"spec": {"ports": []}})));
        assert!(covers(&live, &json!({"spec": {"missing": null}})));
    }

    #[test]
    fn unchanged_needs_the_same_hash() {
        let live = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "annotations": {APPLIED_HASH_ANNOTATION: "h1"}},
            "data": {"k": "v"}}));
        let desired = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "annotations": {APPLIED_HASH_ANNOTATION: "h1"}},
            "data": {"k": "v"}}));
        assert!(unchanged_since_applied(&live, &desired, "h1"));
        assert!(!unchanged_since_applied(&live, &desired, "h2"));
    }

    #[test]
    fn data_difference_counts() {
        let live = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "v"}}));
        let would_be = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "w"}}));
        assert!(!same_object(&live, &would_be));
    }
}

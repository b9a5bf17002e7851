//! Deciding whether a server-side dry run would change the live object: if the object the server
//! would store equals the one it stores, writing it would only churn `managedFields`.

use kube::api::DynamicObject;
use serde_json::Value;

use super::object::APPLIED_HASH_ANNOTATION;

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
    fn data_difference_counts() {
        let live = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "v"}}));
        let would_be = object(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a"}, "data": {"k": "w"}}));
        assert!(!same_object(&live, &would_be));
    }
}

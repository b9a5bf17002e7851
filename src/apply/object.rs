//! The objects the engine applies: what the caller hands in ([`DesiredObject`]), how an object is
//! named in reports and errors ([`ObjectRef`]), and the preparation every object goes through
//! before it reaches the apiserver (namespace defaulting, ownership labels, content hash).

use std::{collections::BTreeMap, fmt};

use kube::{
    api::DynamicObject,
    core::{GroupVersionKind, TypeMeta},
    discovery::{ApiResource, Scope},
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::{APPLIED_HASH_ANNOTATION, APPLY_ANNOTATION, IF_NOT_PRESENT};

/// An object to apply, with where it came from so errors can point at the manifest.
#[derive(Clone, Debug)]
pub struct DesiredObject {
    /// Where the object was read from, e.g. `deploy/app.yaml: document 2 (line 17)`.
    pub origin: String,
    /// The object as written in the manifest.
    pub object: DynamicObject,
    /// Rendered by kustomize, whose `namespace` transformer sets `metadata.namespace` without
    /// knowing whether a custom kind is namespaced: on a cluster-scoped kind that namespace is
    /// dropped instead of refused. Objects written by hand keep the strict rule.
    pub rendered: bool,
}

/// Digest of what applying `objects` asks of the cluster: equal for two revisions exactly
/// when they would apply the same objects, whatever files they came from.
pub fn digest_of(objects: &[DesiredObject]) -> String {
    let mut hasher = Sha256::new();
    for desired in objects {
        hasher.update([u8::from(desired.rendered)]);
        let json = serde_json::to_vec(&desired.object).unwrap_or_default();
        hasher.update(json.len().to_le_bytes());
        hasher.update(&json);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Identifies an object in reports and error messages: `apps/v1 Deployment ns/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    /// The reference of an object as written (before namespace defaulting).
    pub fn of(object: &DynamicObject) -> Self {
        let types = object.types.clone().unwrap_or(TypeMeta {
            api_version: String::new(),
            kind: String::new(),
        });
        Self {
            api_version: types.api_version,
            kind: types.kind,
            namespace: object.metadata.namespace.clone(),
            name: object.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        write!(f, "{} {} ", self.api_version, self.kind)?;
        match &self.namespace {
            Some(namespace) => write!(f, "{namespace}/{name}"),
            None => write!(f, "{name}"),
        }
    }
}

/// An object ready to be sent: its API resource is known, its namespace settled, and it carries
/// the ownership labels and the content hash.
#[derive(Clone, Debug)]
pub struct PreparedObject {
    pub origin: String,
    pub reference: ObjectRef,
    pub resource: ApiResource,
    pub object: DynamicObject,
    /// Hash of the desired content, also stored in [`APPLIED_HASH_ANNOTATION`].
    pub hash: String,
    /// Set by the `if-not-present` opt-out: never update an existing object.
    pub create_only: bool,
}

/// The group/version/kind an object declares, or why it declares none.
pub fn declared_gvk(object: &DynamicObject) -> Result<GroupVersionKind, String> {
    let types = object
        .types
        .as_ref()
        .filter(|t| !t.api_version.is_empty() && !t.kind.is_empty())
        .ok_or("the object has no apiVersion or kind")?;
    GroupVersionKind::try_from(types).map_err(|error| format!("invalid apiVersion: {error}"))
}

/// Settles the namespace, adds the ownership labels and the content hash; fails when the
/// object's namespace contradicts the scope of its kind or when it has no name.
pub fn prepare(
    desired: DesiredObject,
    resource: ApiResource,
    scope: &Scope,
    default_namespace: &str,
    owner_labels: &BTreeMap<String, String>,
) -> Result<PreparedObject, String> {
    let mut object = desired.object;
    if object.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err("the object has no metadata.name (generateName cannot be applied)".into());
    }
    settle_namespace(&mut object, scope, default_namespace, desired.rendered)?;
    strip_server_fields(&mut object);
    object
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .extend(owner_labels.clone());
    let hash = content_hash(&object);
    let annotations = object
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    annotations.insert(APPLIED_HASH_ANNOTATION.to_owned(), hash.clone());
    let create_only = annotations.get(APPLY_ANNOTATION).map(String::as_str) == Some(IF_NOT_PRESENT);
    Ok(PreparedObject {
        origin: desired.origin,
        reference: ObjectRef::of(&object),
        resource,
        object,
        hash,
        create_only,
    })
}

/// Namespaced objects without a namespace land in the default one; a namespace on a
/// cluster-scoped object is a mistake in a hand-written manifest, reported rather than silently
/// dropped, but only a renderer's guess in a rendered one.
fn settle_namespace(
    object: &mut DynamicObject,
    scope: &Scope,
    default_namespace: &str,
    rendered: bool,
) -> Result<(), String> {
    let namespace = object.metadata.namespace.as_deref().unwrap_or("");
    match scope {
        Scope::Cluster if !namespace.is_empty() && !rendered => Err(format!(
            "the kind is cluster-scoped but the object sets metadata.namespace {namespace:?}"
        )),
        Scope::Cluster => {
            object.metadata.namespace = None;
            Ok(())
        }
        Scope::Namespaced if namespace.is_empty() => {
            object.metadata.namespace = Some(default_namespace.to_owned());
            Ok(())
        }
        Scope::Namespaced => Ok(()),
    }
}

/// Fields the server owns: exported manifests often carry them, and a stale `resourceVersion`
/// would turn every apply into a conflict.
fn strip_server_fields(object: &mut DynamicObject) {
    let metadata = &mut object.metadata;
    metadata.resource_version = None;
    metadata.uid = None;
    metadata.managed_fields = None;
    metadata.creation_timestamp = None;
    metadata.generation = None;
    metadata.self_link = None;
}

/// A SHA-256 of the object's JSON with keys sorted, so the hash only changes with content.
fn content_hash(object: &DynamicObject) -> String {
    let value = serde_json::to_value(object).unwrap_or(Value::Null);
    let canonical = serde_json::to_vec(&sorted(value)).unwrap_or_default();
    let digest = Sha256::digest(&canonical);
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The value with every object's keys in sorted order, whatever map type serde_json uses.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    fn config_map_resource() -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"))
    }

    fn prepare_with(value: Value, scope: Scope) -> Result<PreparedObject, String> {
        prepare_as(value, scope, false)
    }

    fn prepare_as(value: Value, scope: Scope, rendered: bool) -> Result<PreparedObject, String> {
        let desired = DesiredObject {
            origin: "test.yaml".into(),
            object: object(value),
            rendered,
        };
        let labels = [(crate::api::OWNER_NAME_LABEL.to_owned(), "app".to_owned())].into();
        prepare(desired, config_map_resource(), &scope, "team", &labels)
    }

    #[test]
    fn a_rendered_cluster_scoped_object_loses_the_namespace_kustomize_guessed() {
        let value = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "global", "namespace": "team" },
        });
        let prepared = prepare_as(value.clone(), Scope::Cluster, true).unwrap();
        assert_eq!(prepared.object.metadata.namespace, None);
        assert_eq!(prepared.reference.namespace, None);
        assert!(
            prepare_as(value, Scope::Cluster, false).is_err(),
            "hand-written: refused"
        );
    }

    #[test]
    fn namespaced_object_gets_default_namespace_labels_and_hash() {
        let prepared = prepare_with(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            Scope::Namespaced,
        )
        .unwrap();
        assert_eq!(prepared.object.metadata.namespace.as_deref(), Some("team"));
        assert_eq!(prepared.reference.to_string(), "v1 ConfigMap team/a");
        let labels = prepared.object.metadata.labels.unwrap();
        assert_eq!(labels[crate::api::OWNER_NAME_LABEL], "app");
        let annotations = prepared.object.metadata.annotations.unwrap();
        assert_eq!(annotations[APPLIED_HASH_ANNOTATION], prepared.hash);
    }

    #[test]
    fn cluster_scoped_object_with_namespace_is_rejected() {
        let error = prepare_with(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a", "namespace": "x"}}),
            Scope::Cluster,
        )
        .unwrap_err();
        assert!(error.contains("cluster-scoped"), "{error}");
    }

    #[test]
    fn hash_ignores_key_order_but_not_content() {
        let a = object(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}}),
        );
        let b = object(
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}, "data": {"y": "2", "x": "1"}}),
        );
        let c = object(
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "a"}, "data": {"y": "2", "x": "3"}}),
        );
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn if_not_present_annotation_makes_object_create_only() {
        let prepared = prepare_with(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "a", "annotations": {APPLY_ANNOTATION: IF_NOT_PRESENT}}}),
            Scope::Namespaced,
        )
        .unwrap();
        assert!(prepared.create_only);
    }
}

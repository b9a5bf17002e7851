//! Turning parsed documents into Kubernetes objects: identity, `List` expansion, skipping.

use std::fmt;

use kube::api::DynamicObject;
use serde_json::{Map, Value};

use super::error::{ManifestError, Position, Problem};
use super::parse::RawDocument;

/// Which object a manifest declares, as the apply engine and the inventory identify it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    /// `""` for the core group (`apiVersion: v1`).
    pub group: String,
    pub version: String,
    pub kind: String,
    /// As written; `None` when absent, since only the cluster knows whether the kind is
    /// namespaced and the apply engine decides the default.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// `apiVersion` as Kubernetes writes it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// What makes two manifests the same object: the version is only a representation.
    pub(super) fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }
}

/// `apps/Deployment team-a/web`, `Namespace team-a`.
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        write!(f, "{} ", self.kind)?;
        if let Some(namespace) = &self.namespace {
            write!(f, "{namespace}/")?;
        }
        write!(f, "{}", self.name)
    }
}

/// One object to apply, with the place it came from for error messages and status.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    pub position: Position,
    pub id: ObjectId,
    pub object: DynamicObject,
}

/// Collects the manifests of one document into `manifests` and its problems into `errors`.
pub(super) fn collect_document(
    file: &str,
    document: RawDocument,
    manifests: &mut Vec<Manifest>,
    errors: &mut Vec<ManifestError>,
) {
    let RawDocument { position, value } = document;
    let result = match classify(&value) {
        Ok(Shape::Kustomization) => {
            tracing::debug!(
                file,
                document = position.document,
                "skipping a kustomization"
            );
            return;
        }
        Ok(Shape::List) => {
            collect_list(file, position, into_items(value), manifests, errors);
            return;
        }
        Ok(Shape::Object) => manifest(file, position, value),
        Err(problem) => Err(vec![problem]),
    };
    push_result(file, position, result, manifests, errors);
}

fn collect_list(
    file: &str,
    position: Position,
    items: Vec<Value>,
    manifests: &mut Vec<Manifest>,
    errors: &mut Vec<ManifestError>,
) {
    for (index, item) in items.into_iter().enumerate() {
        let position = position.list_item(index);
        let result = manifest(file, position, item);
        push_result(file, position, result, manifests, errors);
    }
}

fn push_result(
    file: &str,
    position: Position,
    result: Result<Manifest, Vec<Problem>>,
    manifests: &mut Vec<Manifest>,
    errors: &mut Vec<ManifestError>,
) {
    match result {
        Ok(manifest) => manifests.push(manifest),
        Err(problems) => errors.extend(
            problems
                .into_iter()
                .map(|problem| ManifestError::at(file, position, problem)),
        ),
    }
}

/// What a document is, before it is validated as one object.
enum Shape {
    Object,
    List,
    Kustomization,
}

/// A `kustomize.config.k8s.io` Kustomization is build input for kustomize, not an object
/// for the API server (unlike Flux's `kustomize.toolkit.fluxcd.io` Kustomization, which is
/// applied like any custom resource). `kind: List` and other `*List` kinds with `items`
/// are how `kubectl get -o yaml` writes several objects into one document.
fn classify(value: &Value) -> Result<Shape, Problem> {
    let Value::Object(fields) = value else {
        return Err(not_an_object(value));
    };
    let kind = fields.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = fields
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if kind == "Kustomization" && api_version.starts_with("kustomize.config.k8s.io/") {
        return Ok(Shape::Kustomization);
    }
    if !kind.ends_with("List") {
        return Ok(Shape::Object);
    }
    match fields.get("items") {
        Some(Value::Array(_)) => Ok(Shape::List),
        None | Some(Value::Null) if kind == "List" => Ok(Shape::List),
        Some(_) if kind == "List" => Err(Problem::ListItemsNotAList {
            kind: kind.to_owned(),
        }),
        _ => Ok(Shape::Object),
    }
}

/// The items of a document [`classify`] found to be a list.
fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Object(mut fields) => match fields.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

fn not_an_object(value: &Value) -> Problem {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    };
    Problem::NotAnObject { found }
}

fn manifest(file: &str, position: Position, value: Value) -> Result<Manifest, Vec<Problem>> {
    let Value::Object(fields) = &value else {
        return Err(vec![not_an_object(&value)]);
    };
    let id = object_id(fields)?;
    let object = serde_json::from_value::<DynamicObject>(value)
        .map_err(|error| vec![Problem::InvalidMetadata(error.to_string())])?;
    Ok(Manifest {
        file: file.to_owned(),
        position,
        id,
        object,
    })
}

/// The identity of an object, or every reason it has none, so one round of fixes suffices.
fn object_id(fields: &Map<String, Value>) -> Result<ObjectId, Vec<Problem>> {
    let metadata = fields.get("metadata");
    let group_version = required_string(fields.get("apiVersion"), "apiVersion")
        .and_then(|api_version| split_api_version(&api_version));
    let kind = required_string(fields.get("kind"), "kind");
    let name = required_string(metadata.and_then(|m| m.get("name")), "metadata.name");
    let namespace = optional_string(
        metadata.and_then(|m| m.get("namespace")),
        "metadata.namespace",
    );
    match (group_version, kind, name, namespace) {
        (Ok((group, version)), Ok(kind), Ok(name), Ok(namespace)) => Ok(ObjectId {
            group,
            version,
            kind,
            namespace,
            name,
        }),
        (group_version, kind, name, namespace) => {
            Err(
                [group_version.err(), kind.err(), name.err(), namespace.err()]
                    .into_iter()
                    .flatten()
                    .collect(),
            )
        }
    }
}

fn required_string(value: Option<&Value>, field: &'static str) -> Result<String, Problem> {
    match value {
        None | Some(Value::Null) => Err(Problem::Missing(field)),
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(_) => Err(Problem::NotAString(field)),
    }
}

/// An empty namespace means "not set", as it does to the API server.
fn optional_string(value: Option<&Value>, field: &'static str) -> Result<Option<String>, Problem> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(Problem::NotAString(field)),
    }
}

/// `v1` is the core group; `apps/v1` is group `apps`, version `v1`.
fn split_api_version(api_version: &str) -> Result<(String, String), Problem> {
    let parts = match api_version.split_once('/') {
        None => Some(("", api_version)),
        Some((group, version)) if !group.is_empty() && !version.contains('/') => {
            Some((group, version))
        }
        Some(_) => None,
    };
    match parts {
        Some((group, version)) if !version.is_empty() => Ok((group.to_owned(), version.to_owned())),
        _ => Err(Problem::InvalidApiVersion(api_version.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_splits_into_group_and_version() {
        let split = |text| split_api_version(text).ok();
        assert_eq!(split("v1"), Some((String::new(), "v1".to_owned())));
        assert_eq!(split("apps/v1"), Some(("apps".to_owned(), "v1".to_owned())));
        assert_eq!(split("/v1"), None);
        assert_eq!(split("apps/"), None);
        assert_eq!(split("a/b/c"), None);
    }

    #[test]
    fn object_id_displays_group_kind_namespace_and_name() {
        let id = |group: &str, kind: &str, namespace: Option<&str>, name: &str| ObjectId {
            group: group.to_owned(),
            version: "v1".to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        let deployment = id("apps", "Deployment", Some("team-a"), "web");
        assert_eq!(deployment.to_string(), "apps/Deployment team-a/web");
        assert_eq!(deployment.api_version(), "apps/v1");
        let namespace = id("", "Namespace", None, "team-a");
        assert_eq!(namespace.to_string(), "Namespace team-a");
        assert_eq!(namespace.api_version(), "v1");
    }
}

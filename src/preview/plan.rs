//! The plan of a revision: what applying it would create, change and prune, each change as a
//! unified diff of the live object against the server's dry run, Secret values masked. Built
//! from the apply's own preview ([`crate::apply::Previewed`]), without I/O, for the
//! controller's pull request comments and `driftless diff` alike.

use kube::api::DynamicObject;
use serde_json::Value;

use crate::{
    api::{APPLIED_HASH_ANNOTATION, GitRepository},
    apply::{
        Change, Previewed,
        inventory::{ObjectKey, stale},
    },
};

/// Kinds whose values are never shown.
const MASKED_KINDS: [&str; 1] = ["Secret"];

/// What applying would do to one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Create,
    /// Created once what it needs (a Namespace, a CRD of the revision) exists; why it could
    /// not be validated before.
    CreateLater(String),
    Change,
    Prune,
}

/// One object the plan touches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedObject {
    pub action: Action,
    /// `apiVersion Kind namespace/name`, or `Kind namespace/name` for a prune.
    pub object: String,
    /// The unified diff, live against after apply; `None` where there is nothing to show.
    pub diff: Option<String>,
}

/// The whole plan of a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the revision's order, the prunes last.
    pub objects: Vec<PlannedObject>,
    /// Objects already as the revision wants them.
    pub unchanged: usize,
}

impl Plan {
    /// The plan of the previewed objects and of the inventory entries they no longer contain.
    pub fn of(previewed: &[Previewed], pruned: &[ObjectKey]) -> Plan {
        let mut plan = Plan::default();
        for one in previewed {
            let kind = &one.reference.kind;
            let object = one.reference.to_string();
            let planned = match &one.change {
                Change::Unchanged | Change::CreateOnlyPresent => {
                    plan.unchanged += 1;
                    continue;
                }
                Change::Create(created) => {
                    let (_, shown) = masked_pair(Value::Null, comparable(created), kind);
                    PlannedObject {
                        diff: Some(unified(&Value::Null, &shown, &object)),
                        action: Action::Create,
                        object,
                    }
                }
                Change::CreateAfterItsPrerequisites(why) => PlannedObject {
                    action: Action::CreateLater(why.clone()),
                    object,
                    diff: None,
                },
                Change::Update(live, would_be) => {
                    let (before, after) = masked_pair(comparable(live), comparable(would_be), kind);
                    PlannedObject {
                        diff: Some(unified(&before, &after, &object)),
                        action: Action::Change,
                        object,
                    }
                }
            };
            plan.objects.push(planned);
        }
        plan.objects.extend(pruned.iter().map(|key| PlannedObject {
            action: Action::Prune,
            object: prune_name(key),
            diff: None,
        }));
        plan
    }

    /// How many objects get `action` (any `CreateLater` counts as a create).
    pub fn count(&self, action: &Action) -> usize {
        self.objects
            .iter()
            .filter(|planned| match (action, &planned.action) {
                (Action::Create, Action::CreateLater(_)) => true,
                (wanted, found) => wanted == found,
            })
            .count()
    }

    /// Whether applying would change anything.
    pub fn changes_anything(&self) -> bool {
        !self.objects.is_empty()
    }

    /// `2 to create, 1 to change, 0 to prune, 5 unchanged`.
    pub fn summary(&self) -> String {
        format!(
            "{} to create, {} to change, {} to prune, {} unchanged",
            self.count(&Action::Create),
            self.count(&Action::Change),
            self.count(&Action::Prune),
            self.unchanged
        )
    }
}

/// The inventory entries `previewed` leaves behind, which an apply would delete; none when the
/// object does not prune.
pub fn would_prune(repository: &GitRepository, previewed: &[Previewed]) -> Vec<ObjectKey> {
    if repository.spec.prune == Some(false) {
        return Vec::new();
    }
    let old = repository
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    let new: Vec<_> = previewed
        .iter()
        .map(|p| ObjectKey::from(&p.reference).to_entry())
        .collect();
    stale(&old, &new)
}

fn prune_name(key: &ObjectKey) -> String {
    let namespace = key
        .namespace
        .as_deref()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    format!("{} {namespace}{}", key.kind, key.name)
}

/// The object as a person compares it: no server bookkeeping, no status.
fn comparable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(root) = value.as_object_mut() {
        root.remove("status");
        if let Some(metadata) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "generation",
                "creationTimestamp",
            ] {
                metadata.remove(field);
            }
            // The content hash changes with any change: bookkeeping, not news.
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                annotations.remove(APPLIED_HASH_ANNOTATION);
                // kubectl's record of the last apply holds the whole object, Secret data too.
                annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
                if annotations.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
    }
    value
}

/// Secret values replaced by `***`, and by `*** (before)` / `*** (after)` where they differ, as
/// `kubectl diff` shows them: the diff says which keys change, never what they hold.
fn masked_pair(mut before: Value, mut after: Value, kind: &str) -> (Value, Value) {
    if !MASKED_KINDS.contains(&kind) {
        return (before, after);
    }
    for field in ["data", "stringData"] {
        let old = before
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let new = after
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mask = |map: &serde_json::Map<String, Value>,
                    other: &serde_json::Map<String, Value>,
                    tag: &str| {
            map.iter()
                .map(|(key, value)| {
                    let same = other.get(key) == Some(value);
                    let shown = if same {
                        "***".to_owned()
                    } else {
                        format!("*** ({tag})")
                    };
                    (key.clone(), Value::String(shown))
                })
                .collect::<serde_json::Map<_, _>>()
        };
        if let Some(slot) = before.get_mut(field) {
            *slot = Value::Object(mask(&old, &new, "before"));
        }
        if let Some(slot) = after.get_mut(field) {
            *slot = Value::Object(mask(&new, &old, "after"));
        }
    }
    (before, after)
}

fn unified(before: &Value, after: &Value, name: &str) -> String {
    let yaml = |value: &Value| match value {
        Value::Null => String::new(),
        value => serde_saphyr::to_string(value).unwrap_or_default(),
    };
    let (before, after) = (yaml(before), yaml(after));
    similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (live)"), &format!("{name} (after apply)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::ObjectRef;
    use serde_json::json;

    #[test]
    fn secret_values_never_show_but_changed_keys_do() {
        let before = json!({ "kind": "Secret", "data": { "same": "c2FtZQ==", "changed": "b2xk" } });
        let after = json!({ "kind": "Secret", "data": { "same": "c2FtZQ==", "changed": "bmV3", "added": "eA==" } });
        let (before, after) = masked_pair(before, after, "Secret");
        assert_eq!(
            before["data"],
            json!({ "same": "***", "changed": "*** (before)" })
        );
        assert_eq!(
            after["data"],
            json!({ "same": "***", "changed": "*** (after)", "added": "*** (after)" })
        );
        let text = unified(&before, &after, "v1 Secret ns/s");
        assert!(
            !text.contains("b2xk") && !text.contains("bmV3") && text.contains("*** (after)"),
            "{text}"
        );
    }

    #[test]
    fn other_kinds_are_shown_as_they_are() {
        let value = json!({ "kind": "ConfigMap", "data": { "a": "1" } });
        let (before, _) = masked_pair(value.clone(), value.clone(), "ConfigMap");
        assert_eq!(before, value);
    }

    fn object(kind: &str, name: &str, data: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": kind,
            "metadata": { "name": name, "namespace": "team-a", "resourceVersion": "7",
                          "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}" } },
            "data": data
        }))
        .unwrap()
    }

    fn previewed(kind: &str, name: &str, change: Change) -> Previewed {
        Previewed {
            origin: "app.yaml".into(),
            reference: ObjectRef {
                api_version: "v1".into(),
                kind: kind.into(),
                namespace: Some("team-a".into()),
                name: name.into(),
            },
            change,
        }
    }

    #[test]
    fn a_plan_counts_each_action_and_masks_secrets_in_its_diffs() {
        let secret_live = object("Secret", "db", json!({ "password": "aHVudGVyMg==" }));
        let secret_next = object("Secret", "db", json!({ "password": "czNjcjN0" }));
        let config = object("ConfigMap", "app", json!({ "a": "1" }));
        let previewed = vec![
            previewed("ConfigMap", "app", Change::Create(Box::new(config))),
            previewed(
                "Secret",
                "db",
                Change::Update(Box::new(secret_live), Box::new(secret_next)),
            ),
            previewed("ConfigMap", "same", Change::Unchanged),
        ];
        let pruned = vec![ObjectKey {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some("team-a".into()),
            name: "old".into(),
        }];
        let plan = Plan::of(&previewed, &pruned);
        assert_eq!(
            plan.summary(),
            "1 to create, 1 to change, 1 to prune, 1 unchanged"
        );
        assert_eq!(plan.objects[2].object, "Deployment team-a/old");
        let secret_diff = plan.objects[1].diff.as_deref().unwrap();
        assert!(secret_diff.contains("*** (after)"), "{secret_diff}");
        for value in [
            "aHVudGVyMg==",
            "czNjcjN0",
            "last-applied",
            "resourceVersion",
        ] {
            assert!(!secret_diff.contains(value), "{value} in {secret_diff}");
        }
        assert!(plan.objects[0].diff.as_deref().unwrap().contains("+data:"));
    }
}

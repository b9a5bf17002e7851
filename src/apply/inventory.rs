//! The inventory, the record of what a GitRepository applied, and the plan of what to prune.
//!
//! The inventory lives in the GitRepository's `status.inventory`, in Flux's format: one entry per
//! object with an id `<namespace>_<name>_<group>_<kind>` and the API version it was applied as.
//! Comparing the inventory of the last applied revision with the new one says which objects left
//! Git and should be deleted.
//!
//! Deleting is the one thing driftless does that cannot be undone by fixing Git, so the planner
//! here is deliberately conservative and pure: it refuses to empty a whole inventory unless asked
//! to, never deletes the namespace the GitRepository or the controller lives in, and leaves the
//! checks that need the live object (ownership labels, opt-out annotation) to [`may_delete`],
//! which the executor calls just before each delete.

use std::collections::{BTreeMap, HashSet};

pub use crate::api::InventoryEntry;
use crate::api::{
    OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL, PRUNE_ANNOTATION, PRUNE_DISABLED, PRUNE_ENABLED,
};

/// The longest label value Kubernetes accepts.
const MAX_LABEL_VALUE: usize = 63;
/// Hex digits of the name's hash that end a shortened [`OWNER_NAME_LABEL`] value.
const LABEL_HASH_DIGITS: usize = 10;

const SEPARATOR: char = '_';
const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_KIND: &str = "CustomResourceDefinition";

/// The [`OWNER_NAME_LABEL`] value for the GitRepository `name`: the name itself when it fits
/// a label value (63 characters), otherwise its first 52 characters, `-` and 10 hex digits of
/// the SHA-256 of the whole name. A GitRepository name is a DNS subdomain, so every character
/// is valid in a label value and the value ends alphanumeric either way; the hash keeps two
/// long names with a common prefix apart.
pub fn owner_label_value(name: &str) -> String {
    if name.len() <= MAX_LABEL_VALUE {
        return name.to_owned();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    let keep = MAX_LABEL_VALUE - 1 - LABEL_HASH_DIGITS;
    let prefix: String = name.chars().take(keep).collect();
    format!("{prefix}-{}", &hash[..LABEL_HASH_DIGITS])
}

/// The labels that mark an object as applied by the GitRepository `namespace/name`; prune and
/// the live-object LISTs select by exactly these.
pub fn owner_labels(name: &str, namespace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (OWNER_NAME_LABEL.to_owned(), owner_label_value(name)),
        (OWNER_NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
    ])
}

/// Why an inventory entry cannot be read back.
#[derive(thiserror::Error, Clone, Debug, PartialEq, Eq)]
pub enum InventoryError {
    #[error("inventory id {id:?} is not <namespace>_<name>_<group>_<kind>")]
    Malformed { id: String },
    #[error("inventory id {id:?} has no {field}")]
    Missing { id: String, field: &'static str },
    #[error("inventory entry {id:?} has no version")]
    NoVersion { id: String },
}

/// An object in the cluster, addressed the way the executor needs to delete it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// API group, empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectKey {
    /// The inventory entry recording this object.
    pub fn to_entry(&self) -> InventoryEntry {
        InventoryEntry {
            id: self.id(),
            version: self.version.clone(),
        }
    }

    /// The entry's id alone, which is what identifies an object across revisions: the same
    /// object applied under a newer API version must not look stale.
    pub fn id(&self) -> String {
        let namespace = self.namespace.as_deref().unwrap_or_default();
        [namespace, &self.name, &self.group, &self.kind].join("_")
    }

    /// Reads an entry back.
    ///
    /// Namespaces, groups and kinds cannot contain `_` (DNS labels, DNS subdomains and
    /// identifiers), but some names can: RBAC objects accept any path segment, e.g.
    /// `system:my_role`. So the namespace is split off the left, kind and group off the right,
    /// and the name is whatever remains.
    pub fn parse(entry: &InventoryEntry) -> Result<ObjectKey, InventoryError> {
        let id = &entry.id;
        let malformed = || InventoryError::Malformed { id: id.clone() };
        let (namespace, rest) = id.split_once(SEPARATOR).ok_or_else(malformed)?;
        let (rest, kind) = rest.rsplit_once(SEPARATOR).ok_or_else(malformed)?;
        let (name, group) = rest.rsplit_once(SEPARATOR).ok_or_else(malformed)?;
        let missing = |field| InventoryError::Missing {
            id: id.clone(),
            field,
        };
        if name.is_empty() {
            return Err(missing("name"));
        }
        if kind.is_empty() {
            return Err(missing("kind"));
        }
        if entry.version.is_empty() {
            return Err(InventoryError::NoVersion { id: id.clone() });
        }
        Ok(ObjectKey {
            group: group.to_owned(),
            version: entry.version.clone(),
            kind: kind.to_owned(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
            name: name.to_owned(),
        })
    }

    fn is_namespace(&self) -> bool {
        self.group.is_empty() && self.kind == "Namespace"
    }

    fn is_crd(&self) -> bool {
        self.group == CRD_GROUP && self.kind == CRD_KIND
    }

    /// Position in the deletion order. Objects inside a namespace go first, so that deleting
    /// the namespace later does not race their own deletion (and finalizers); CRDs go last
    /// because deleting one deletes every custom resource of its kind, which must only happen
    /// once those have been pruned on purpose.
    fn deletion_rank(&self) -> u8 {
        if self.namespace.is_some() {
            0
        } else if self.is_namespace() {
            2
        } else if self.is_crd() {
            3
        } else {
            1
        }
    }
}

/// Objects in `old` whose id is not in `new`, in deletion order: namespaced objects, then other
/// cluster-scoped objects, then Namespaces, then CustomResourceDefinitions; within a group,
/// inventory order. Versions are ignored: an object moved to a newer API version is the same
/// object. Entries that cannot be parsed are left out; [`plan_prune`] reports them.
pub fn stale(old: &[InventoryEntry], new: &[InventoryEntry]) -> Vec<ObjectKey> {
    let keys = stale_entries(old, new).filter_map(|entry| ObjectKey::parse(entry).ok());
    sorted_for_deletion(keys.collect())
}

/// Entries of `old` not in `new`, each once.
fn stale_entries<'a>(
    old: &'a [InventoryEntry],
    new: &[InventoryEntry],
) -> impl Iterator<Item = &'a InventoryEntry> {
    let current: HashSet<&str> = new.iter().map(|e| e.id.as_str()).collect();
    let mut seen = HashSet::new();
    old.iter()
        .filter(move |e| !current.contains(e.id.as_str()) && seen.insert(e.id.as_str()))
}

/// Stable, so inventory order survives within a rank.
fn sorted_for_deletion(mut keys: Vec<ObjectKey>) -> Vec<ObjectKey> {
    keys.sort_by_key(ObjectKey::deletion_rank);
    keys
}

/// What must never be pruned, whatever Git says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneGuards {
    /// The GitRepository opted in to deleting everything when a revision yields no objects.
    pub allow_empty_revision: bool,
    /// Namespaces never deleted: the GitRepository's own and the controller's, since deleting
    /// either would delete the very thing doing the pruning.
    pub protected_namespaces: Vec<String>,
}

/// The outcome of planning a prune, before any live object is looked at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrunePlan {
    /// Objects to delete, in this order (each still subject to [`may_delete`]).
    pub delete: Vec<ObjectKey>,
    /// Stale objects kept on purpose, with the reason.
    pub kept: Vec<(ObjectKey, String)>,
    /// Set when the whole prune is refused; then `delete` and `kept` are empty.
    pub refused: Option<String>,
    /// Stale entries that could not be read, hence cannot be deleted; worth a warning, since
    /// only a hand-edited status produces them.
    pub unreadable: Vec<(InventoryEntry, InventoryError)>,
}

/// Plans which stale objects to delete.
///
/// A revision with no objects at all while objects are applied is far more often a mistake (a
/// wrong `spec.path`, a branch emptied by accident) than a wish to delete everything, so it is
/// refused unless [`PruneGuards::allow_empty_revision`] is set.
pub fn plan_prune(
    old: &[InventoryEntry],
    new: &[InventoryEntry],
    guards: &PruneGuards,
) -> PrunePlan {
    if new.is_empty() && !old.is_empty() && !guards.allow_empty_revision {
        return PrunePlan {
            refused: Some(empty_revision_refusal(old.len())),
            ..PrunePlan::default()
        };
    }
    let mut plan = PrunePlan::default();
    let mut stale = Vec::new();
    for entry in stale_entries(old, new) {
        match ObjectKey::parse(entry) {
            Ok(key) => stale.push(key),
            Err(e) => plan.unreadable.push((entry.clone(), e)),
        }
    }
    for key in sorted_for_deletion(stale) {
        match protection(&key, guards) {
            Some(why) => plan.kept.push((key, why)),
            None => plan.delete.push(key),
        }
    }
    plan
}

fn empty_revision_refusal(applied: usize) -> String {
    let objects = if applied == 1 {
        "object is"
    } else {
        "objects are"
    };
    format!(
        "the revision yields no objects while {applied} {objects} applied; \
         set spec.pruneEmpty: true to allow deleting them all"
    )
}

/// Why a stale object must be kept regardless of the live object, if it must.
fn protection(key: &ObjectKey, guards: &PruneGuards) -> Option<String> {
    if key.is_namespace() && guards.protected_namespaces.contains(&key.name) {
        return Some(format!(
            "namespace {} holds the GitRepository or the controller and is never pruned",
            key.name
        ));
    }
    if key.is_crd() && key.name == own_crd_name() {
        return Some(format!(
            "CustomResourceDefinition {} defines every GitRepository and is never pruned",
            key.name
        ));
    }
    None
}

/// The CRD of driftless's own GitRepository: deleting it would delete every GitRepository of
/// the cluster, and with their finalizers everything they applied.
fn own_crd_name() -> &'static str {
    use kube::CustomResourceExt;
    crate::api::GitRepository::crd_name()
}

/// Whether the live object `key` may be deleted by the GitRepository
/// `owner_namespace/owner_name`; `Err` says why not.
///
/// The inventory only says what driftless applied once. The object may since have been taken
/// over by another GitRepository (or by hand, relabelled) or opted out with
/// `driftless.dev/prune: disabled`; deleting it then would destroy someone else's object.
/// A CustomResourceDefinition must opt in with `driftless.dev/prune: enabled`: deleting one
/// deletes every custom resource of its kind in the whole cluster, whoever made them.
pub fn may_delete(
    key: &ObjectKey,
    live_labels: &BTreeMap<String, String>,
    live_annotations: &BTreeMap<String, String>,
    owner_name: &str,
    owner_namespace: &str,
) -> Result<(), String> {
    if let Some(why) = protection(key, &PruneGuards::default()) {
        return Err(why);
    }
    owned_by(
        live_labels,
        OWNER_NAME_LABEL,
        &owner_label_value(owner_name),
    )?;
    owned_by(live_labels, OWNER_NAMESPACE_LABEL, owner_namespace)?;
    let prune = live_annotations.get(PRUNE_ANNOTATION).map(String::as_str);
    if prune == Some(PRUNE_DISABLED) {
        return Err(format!(
            "it is annotated {PRUNE_ANNOTATION}: {PRUNE_DISABLED}"
        ));
    }
    if key.is_crd() && prune != Some(PRUNE_ENABLED) {
        return Err(format!(
            "a CustomResourceDefinition is pruned only when annotated \
             {PRUNE_ANNOTATION}: {PRUNE_ENABLED}, since deleting it deletes every custom \
             resource of its kind in the cluster"
        ));
    }
    Ok(())
}

fn owned_by(labels: &BTreeMap<String, String>, label: &str, owner: &str) -> Result<(), String> {
    match labels.get(label) {
        Some(value) if value == owner => Ok(()),
        Some(value) => Err(format!(
            "its label {label} is {value:?}, not {owner:?}: another owner manages it"
        )),
        None => Err(format!(
            "it has no {label} label, so driftless does not own it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(
        group: &str,
        version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> ObjectKey {
        ObjectKey {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    fn entry(id: &str, version: &str) -> InventoryEntry {
        InventoryEntry {
            id: id.to_owned(),
            version: version.to_owned(),
        }
    }

    fn config_map(name: &str) -> ObjectKey {
        key("", "v1", "ConfigMap", Some("default"), name)
    }

    fn namespace(name: &str) -> ObjectKey {
        key("", "v1", "Namespace", None, name)
    }

    fn crd(name: &str) -> ObjectKey {
        key(CRD_GROUP, "v1", CRD_KIND, None, name)
    }

    fn cluster_role(name: &str) -> ObjectKey {
        key("rbac.authorization.k8s.io", "v1", "ClusterRole", None, name)
    }

    fn entries(keys: &[ObjectKey]) -> Vec<InventoryEntry> {
        keys.iter().map(ObjectKey::to_entry).collect()
    }

    #[test]
    fn ids_use_flux_layout() {
        assert_eq!(
            config_map("settings").to_entry(),
            entry("default_settings__ConfigMap", "v1")
        );
        assert_eq!(
            namespace("team-a").to_entry(),
            entry("_team-a__Namespace", "v1")
        );
        let deployment = key("apps", "v1", "Deployment", Some("web"), "api");
        assert_eq!(deployment.to_entry().id, "web_api_apps_Deployment");
    }

    #[test]
    fn ids_round_trip() {
        let keys = [
            config_map("settings"),
            namespace("team-a"),
            key("apps", "v1", "Deployment", Some("web"), "api"),
            crd("widgets.example.com"),
            key("example.com", "v1beta1", "Widget", Some("team-a"), "w.1"),
            key("networking.k8s.io", "v1", "Ingress", Some("default"), "web"),
            cluster_role("system:my_role"),
            cluster_role("_leading"),
        ];
        for key in keys {
            assert_eq!(ObjectKey::parse(&key.to_entry()), Ok(key));
        }
    }

    #[test]
    fn parse_rejects_malformed_entries() {
        let malformed = |id: &str| InventoryError::Malformed { id: id.to_owned() };
        assert_eq!(ObjectKey::parse(&entry("", "v1")), Err(malformed("")));
        assert_eq!(
            ObjectKey::parse(&entry("default_web", "v1")),
            Err(malformed("default_web"))
        );
        assert_eq!(
            ObjectKey::parse(&entry("default__apps_Deployment", "v1")),
            Err(InventoryError::Missing {
                id: "default__apps_Deployment".into(),
                field: "name"
            })
        );
        assert_eq!(
            ObjectKey::parse(&entry("default_web_apps_", "v1")),
            Err(InventoryError::Missing {
                id: "default_web_apps_".into(),
                field: "kind"
            })
        );
        assert_eq!(
            ObjectKey::parse(&entry("default_web_apps_Deployment", "")),
            Err(InventoryError::NoVersion {
                id: "default_web_apps_Deployment".into()
            })
        );
    }

    #[test]
    fn entries_serialize_as_camel_case_json() {
        let json = serde_json::to_value(config_map("a").to_entry()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "default_a__ConfigMap", "version": "v1"})
        );
    }

    #[test]
    fn stale_orders_for_deletion() {
        let old = entries(&[
            crd("widgets.example.com"),
            namespace("team-a"),
            cluster_role("reader"),
            config_map("kept"),
            config_map("gone"),
            key("apps", "v1", "Deployment", Some("team-a"), "api"),
        ]);
        let new = entries(&[config_map("kept")]);
        assert_eq!(
            stale(&old, &new),
            [
                config_map("gone"),
                key("apps", "v1", "Deployment", Some("team-a"), "api"),
                cluster_role("reader"),
                namespace("team-a"),
                crd("widgets.example.com"),
            ]
        );
    }

    #[test]
    fn stale_ignores_versions_and_duplicates() {
        let old = vec![
            entry("default_w_example.com_Widget", "v1beta1"),
            entry("default_gone__ConfigMap", "v1"),
            entry("default_gone__ConfigMap", "v1"),
        ];
        let new = vec![entry("default_w_example.com_Widget", "v1")];
        assert_eq!(stale(&old, &new), [config_map("gone")]);
        assert!(stale(&new, &new).is_empty());
    }

    #[test]
    fn empty_revision_is_refused_unless_allowed() {
        let old = entries(&[config_map("a"), config_map("b")]);
        let guards = PruneGuards::default();
        let plan = plan_prune(&old, &[], &guards);
        assert_eq!(
            plan,
            PrunePlan {
                refused: Some(
                    "the revision yields no objects while 2 objects are applied; \
                     set spec.pruneEmpty: true to allow deleting them all"
                        .to_owned()
                ),
                ..PrunePlan::default()
            }
        );

        let allowed = PruneGuards {
            allow_empty_revision: true,
            ..guards
        };
        let plan = plan_prune(&old, &[], &allowed);
        assert_eq!(plan.refused, None);
        assert_eq!(plan.delete, [config_map("a"), config_map("b")]);
    }

    #[test]
    fn empty_inventories_plan_nothing() {
        assert_eq!(
            plan_prune(&[], &[], &PruneGuards::default()),
            PrunePlan::default()
        );
    }

    #[test]
    fn protected_namespaces_are_kept() {
        let old = entries(&[namespace("flux-like"), namespace("team-a"), config_map("a")]);
        let new = entries(&[config_map("a")]);
        let guards = PruneGuards {
            allow_empty_revision: false,
            protected_namespaces: vec!["flux-like".to_owned(), "driftless-system".to_owned()],
        };
        let plan = plan_prune(&old, &new, &guards);
        assert_eq!(plan.delete, [namespace("team-a")]);
        assert_eq!(
            plan.kept,
            [(
                namespace("flux-like"),
                "namespace flux-like holds the GitRepository or the controller and is never pruned"
                    .to_owned()
            )]
        );
        assert_eq!(plan.refused, None);
    }

    #[test]
    fn only_namespaces_are_protected_by_name() {
        let guards = PruneGuards {
            protected_namespaces: vec!["apps".to_owned()],
            ..PruneGuards::default()
        };
        let old = entries(&[cluster_role("apps"), config_map("x")]);
        let plan = plan_prune(&old, &entries(&[config_map("x")]), &guards);
        assert_eq!(plan.delete, [cluster_role("apps")]);
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn unreadable_entries_are_reported_not_deleted() {
        let old = vec![entry("garbage", "v1"), config_map("a").to_entry()];
        let plan = plan_prune(&old, &entries(&[config_map("b")]), &PruneGuards::default());
        assert_eq!(plan.delete, [config_map("a")]);
        assert_eq!(
            plan.unreadable,
            [(
                entry("garbage", "v1"),
                InventoryError::Malformed {
                    id: "garbage".into()
                }
            )]
        );
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn owned() -> BTreeMap<String, String> {
        map(&[(OWNER_NAME_LABEL, "app"), (OWNER_NAMESPACE_LABEL, "team-a")])
    }

    #[test]
    fn may_delete_owned_objects() {
        let cm = config_map("a");
        assert_eq!(
            may_delete(&cm, &owned(), &BTreeMap::new(), "app", "team-a"),
            Ok(())
        );
        let other_annotation = map(&[(PRUNE_ANNOTATION, "enabled")]);
        assert_eq!(
            may_delete(&cm, &owned(), &other_annotation, "app", "team-a"),
            Ok(())
        );
    }

    #[test]
    fn crds_are_deleted_only_when_they_opt_in() {
        let widgets = crd("widgets.example.com");
        let refused = may_delete(&widgets, &owned(), &BTreeMap::new(), "app", "team-a");
        assert_eq!(
            refused,
            Err(
                "a CustomResourceDefinition is pruned only when annotated driftless.dev/prune: \
                 enabled, since deleting it deletes every custom resource of its kind in the \
                 cluster"
                    .to_owned()
            )
        );
        let enabled = map(&[(PRUNE_ANNOTATION, PRUNE_ENABLED)]);
        assert_eq!(
            may_delete(&widgets, &owned(), &enabled, "app", "team-a"),
            Ok(())
        );
        let disabled = map(&[(PRUNE_ANNOTATION, PRUNE_DISABLED)]);
        assert!(may_delete(&widgets, &owned(), &disabled, "app", "team-a").is_err());
        assert!(
            may_delete(&widgets, &BTreeMap::new(), &enabled, "app", "team-a").is_err(),
            "opting in does not lift the ownership check"
        );
    }

    #[test]
    fn the_git_repository_crd_is_never_planned_for_deletion() {
        let own = crd("gitrepositories.driftless.dev");
        let other = crd("widgets.example.com");
        let old = entries(&[own.clone(), other.clone(), config_map("a")]);
        let plan = plan_prune(&old, &entries(&[config_map("a")]), &PruneGuards::default());
        assert_eq!(plan.delete, std::slice::from_ref(&other));
        assert_eq!(
            plan.kept,
            [(
                own.clone(),
                "CustomResourceDefinition gitrepositories.driftless.dev defines every \
                 GitRepository and is never pruned"
                    .to_owned()
            )]
        );
        let enabled = map(&[(PRUNE_ANNOTATION, PRUNE_ENABLED)]);
        assert!(
            may_delete(&own, &owned(), &enabled, "app", "team-a").is_err(),
            "not even when it opts in"
        );
        // Deleting the GitRepository plans an empty revision: still kept.
        let allowed = PruneGuards {
            allow_empty_revision: true,
            ..PruneGuards::default()
        };
        let plan = plan_prune(&old, &[], &allowed);
        assert_eq!(plan.delete, [config_map("a"), other]);
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(plan.kept[0].0, own);
    }

    #[test]
    fn short_names_are_their_own_owner_label() {
        assert_eq!(owner_label_value("app"), "app");
        let longest = "a".repeat(63);
        assert_eq!(owner_label_value(&longest), longest);
    }

    #[test]
    fn long_names_get_a_bounded_distinct_owner_label() {
        let long = format!("{}.example.com", "team-a-".repeat(34));
        let other = format!("{}.example.org", "team-a-".repeat(34));
        let value = owner_label_value(&long);
        assert_eq!(value.len(), 63, "{value}");
        assert!(value.starts_with(&long[..52]), "{value}");
        assert!(value.ends_with(|c: char| c.is_ascii_alphanumeric()));
        assert_eq!(value, owner_label_value(&long), "stable across calls");
        assert_ne!(
            value,
            owner_label_value(&other),
            "a common prefix is not enough"
        );
        let labels = owner_labels(&long, "team-a");
        assert_eq!(labels[OWNER_NAME_LABEL], value);
        assert_eq!(labels[OWNER_NAMESPACE_LABEL], "team-a");
        let mut live = labels.clone();
        assert_eq!(
            may_delete(&config_map("a"), &live, &BTreeMap::new(), &long, "team-a"),
            Ok(())
        );
        live.insert(OWNER_NAME_LABEL.into(), owner_label_value(&other));
        assert!(may_delete(&config_map("a"), &live, &BTreeMap::new(), &long, "team-a").is_err());
    }

    #[test]
    fn may_not_delete_objects_opted_out() {
        let annotations = map(&[(PRUNE_ANNOTATION, PRUNE_DISABLED)]);
        assert_eq!(
            may_delete(&config_map("a"), &owned(), &annotations, "app", "team-a"),
            Err("it is annotated driftless.dev/prune: disabled".to_owned())
        );
    }

    #[test]
    fn may_not_delete_objects_of_other_owners() {
        let none = BTreeMap::new();
        let cm = config_map("a");
        assert_eq!(
            may_delete(&cm, &owned(), &none, "other", "team-a"),
            Err(
                "its label driftless.dev/name is \"app\", not \"other\": another owner manages it"
                    .to_owned()
            )
        );
        assert_eq!(
            may_delete(&cm, &owned(), &none, "app", "team-b"),
            Err("its label driftless.dev/namespace is \"team-a\", not \"team-b\": another owner manages it"
                .to_owned())
        );
        assert_eq!(
            may_delete(
                &cm,
                &map(&[(OWNER_NAME_LABEL, "app")]),
                &none,
                "app",
                "team-a"
            ),
            Err("it has no driftless.dev/namespace label, so driftless does not own it".to_owned())
        );
        assert_eq!(
            may_delete(&cm, &none, &none, "app", "team-a"),
            Err("it has no driftless.dev/name label, so driftless does not own it".to_owned())
        );
    }
}

//! Per-object receivers: `POST /hooks/<id>` where the id is derived from the object's own token,
//! so each GitRepository can have a hook (and secret) of its own, as with Flux Receivers.
//!
//! The id is `hex(HMAC-SHA256(token, "namespace/name"))`: it cannot be computed without the
//! token, does not reveal it, and changes when the token is rotated.

use std::collections::HashMap;
use std::fmt;

use super::verify::{encode_hex, hmac_sha256};

/// Length of a per-object hook id in hex characters (a SHA-256 output).
pub const OBJECT_HOOK_ID_LEN: usize = 64;

/// The id of an object's hook: hex HMAC-SHA256 of `namespace/name` under its token.
pub fn object_hook_id(token: &[u8], namespace: &str, name: &str) -> String {
    let object = format!("{namespace}/{name}");
    encode_hex(&hmac_sha256(token, &[object.as_bytes()]))
}

/// The path to give the Git host for an object's hook, and to report in its status.
pub fn object_hook_path(token: &[u8], namespace: &str, name: &str) -> String {
    format!("/hooks/{}", object_hook_id(token, namespace, name))
}

/// Whether a path segment has the shape of a per-object hook id (64 lowercase hex).
pub fn is_object_hook_id(segment: &str) -> bool {
    segment.len() == OBJECT_HOOK_ID_LEN
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// The object a per-object hook triggers, and the token its deliveries are signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectHook {
    /// Namespace of the GitRepository.
    pub namespace: String,
    /// Name of the GitRepository.
    pub name: String,
    /// The shared secret from the object's `spec.webhook.secretRef`.
    pub token: Vec<u8>,
}

/// Keeps the token out of logs.
impl fmt::Debug for ObjectHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectHook")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("token", &"***")
            .finish()
    }
}

/// Per-object hooks by id, with a reverse map so that the controller can update or drop an
/// object's hook by namespace/name when its spec or secret changes.
#[derive(Debug, Default, Clone)]
pub struct ObjectHooks {
    by_id: HashMap<String, ObjectHook>,
    id_of: HashMap<(String, String), String>,
}

impl ObjectHooks {
    /// No hooks.
    pub fn new() -> ObjectHooks {
        ObjectHooks::default()
    }

    /// Registers (or re-keys) an object's hook and returns its path.
    pub fn insert(&mut self, namespace: &str, name: &str, token: &[u8]) -> String {
        self.remove(namespace, name);
        let id = object_hook_id(token, namespace, name);
        let hook = ObjectHook {
            namespace: namespace.to_string(),
            name: name.to_string(),
            token: token.to_vec(),
        };
        self.id_of
            .insert((namespace.to_string(), name.to_string()), id.clone());
        self.by_id.insert(id.clone(), hook);
        format!("/hooks/{id}")
    }

    /// Drops an object's hook, e.g. when the object or its `spec.webhook` is removed.
    pub fn remove(&mut self, namespace: &str, name: &str) -> Option<ObjectHook> {
        let id = self
            .id_of
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.by_id.remove(&id)
    }

    /// The hook behind an id from a request path.
    pub fn get(&self, id: &str) -> Option<&ObjectHook> {
        self.by_id.get(id)
    }

    /// How many hooks are registered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no hook is registered.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_hex_hmac_of_namespace_and_name() {
        let id = object_hook_id(b"It's a Secret to Everybody", "Hello,", " World!");
        assert!(is_object_hook_id(&id));
        assert_eq!(
            id,
            object_hook_id(b"It's a Secret to Everybody", "Hello,", " World!")
        );
        assert_ne!(id, object_hook_id(b"other token", "Hello,", " World!"));
        assert_ne!(
            object_hook_id(b"t", "a", "b/c"),
            object_hook_id(b"t", "a/b", "cd")
        );
    }

    #[test]
    fn path_matches_known_value() {
        // Computed independently with Python's hmac: HMAC-SHA256(key "token", "apps/site").
        assert_eq!(
            object_hook_path(b"token", "apps", "site"),
            "/hooks/0cd46d8bf2e73bffd6bc5e36aeec9e6e18d4468c7a16037e70c73f2a2a88b520"
        );
    }

    #[test]
    fn id_shape_check() {
        assert!(is_object_hook_id(&"a".repeat(64)));
        assert!(!is_object_hook_id(&"A".repeat(64)));
        assert!(!is_object_hook_id(&"a".repeat(63)));
        assert!(!is_object_hook_id("github"));
    }

    #[test]
    fn insert_rekeys_and_remove_forgets() {
        let mut hooks = ObjectHooks::new();
        let first = hooks.insert("ns", "app", b"one");
        let second = hooks.insert("ns", "app", b"two");
        assert_ne!(first, second);
        assert_eq!(hooks.len(), 1);
        assert!(hooks.get(first.trim_start_matches("/hooks/")).is_none());
        let hook = hooks.get(second.trim_start_matches("/hooks/")).unwrap();
        assert_eq!(hook.token, b"two");
        assert!(!format!("{hook:?}").contains("two"));
        assert!(hooks.remove("ns", "app").is_some());
        assert!(hooks.is_empty());
    }
}

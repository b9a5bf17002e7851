//! Which API resource serves each kind, and whether it is namespaced: from a cached discovery of
//! the apiserver, or from CustomResourceDefinitions in the same apply (whose kinds the server
//! cannot know before they are written).

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Client,
    api::DynamicObject,
    core::GroupVersionKind,
    discovery::{ApiResource, Discovery, Scope},
};
use tokio::sync::RwLock;

/// A kind the engine knows how to address.
pub type ResolvedKind = (ApiResource, Scope);

/// Discovery results, kept between applies because discovering is many requests; refreshed
/// when a kind is unknown and after CRDs were applied.
pub struct KindCache {
    client: Client,
    discovery: RwLock<Option<Arc<Discovery>>>,
    /// The apiserver's `gitVersion`, forgotten with each refresh like the discovery.
    server_version: RwLock<Option<String>>,
}

impl KindCache {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            discovery: RwLock::new(None),
            server_version: RwLock::new(None),
        }
    }

    /// The cached discovery, running it the first time.
    pub async fn current(&self) -> Result<Arc<Discovery>, kube::Error> {
        if let Some(discovery) = self.discovery.read().await.as_ref() {
            return Ok(discovery.clone());
        }
        self.refresh().await
    }

    /// Discovers again, e.g. after new CRDs were established.
    pub async fn refresh(&self) -> Result<Arc<Discovery>, kube::Error> {
        let mut slot = self.discovery.write().await;
        let discovery = Arc::new(self.discover().await?);
        *slot = Some(discovery.clone());
        *self.server_version.write().await = None;
        Ok(discovery)
    }

    /// The apiserver's version, asked once and again after a refresh, so a resync that renders
    /// nothing new costs no request for it.
    pub async fn server_version(&self) -> Result<String, kube::Error> {
        if let Some(version) = self.server_version.read().await.as_ref() {
            return Ok(version.clone());
        }
        let version = self.client.apiserver_version().await?.git_version;
        *self.server_version.write().await = Some(version.clone());
        Ok(version)
    }

    /// Aggregated discovery is two requests; older servers only offer the per-group endpoints.
    async fn discover(&self) -> Result<Discovery, kube::Error> {
        match Discovery::new(self.client.clone()).run_aggregated().await {
            Ok(discovery) => Ok(discovery),
            Err(_) => Discovery::new(self.client.clone()).run().await,
        }
    }
}

/// The resource and scope discovery knows for `gvk`.
pub fn discovered(discovery: &Discovery, gvk: &GroupVersionKind) -> Option<ResolvedKind> {
    discovery
        .resolve_gvk(gvk)
        .map(|(resource, capabilities)| (resource, capabilities.scope))
}

/// Kinds served by the CustomResourceDefinitions among the objects of one apply.
#[derive(Default)]
pub struct DefinedKinds(Vec<ResolvedKind>);

impl DefinedKinds {
    /// Collects the kinds (one per served version) of every CRD in `objects`.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = &'a DynamicObject>) -> Self {
        let kinds = objects
            .into_iter()
            .filter(|object| is_crd(object))
            .filter_map(|object| object.clone().try_parse::<CustomResourceDefinition>().ok())
            .flat_map(|crd| kinds_of(&crd))
            .collect();
        Self(kinds)
    }

    /// The resource and scope a CRD of this apply defines for `gvk`.
    pub fn find(&self, gvk: &GroupVersionKind) -> Option<ResolvedKind> {
        self.0
            .iter()
            .find(|(resource, _)| {
                resource.group == gvk.group
                    && resource.version == gvk.version
                    && resource.kind == gvk.kind
            })
            .cloned()
    }
}

fn kinds_of(crd: &CustomResourceDefinition) -> Vec<ResolvedKind> {
    let spec = &crd.spec;
    let scope = if spec.scope == "Cluster" {
        Scope::Cluster
    } else {
        Scope::Namespaced
    };
    spec.versions
        .iter()
        .filter(|version| version.served)
        .map(|version| {
            let gvk = GroupVersionKind::gvk(&spec.group, &version.name, &spec.names.kind);
            let resource = ApiResource::from_gvk_with_plural(&gvk, &spec.names.plural);
            (resource, scope.clone())
        })
        .collect()
}

/// Whether the object is a CustomResourceDefinition (of any served version).
pub fn is_crd(object: &DynamicObject) -> bool {
    object.types.as_ref().is_some_and(|types| {
        types.kind == "CustomResourceDefinition"
            && types.api_version.starts_with("apiextensions.k8s.io/")
    })
}

/// Whether the object is a Namespace.
pub fn is_namespace(object: &DynamicObject) -> bool {
    object
        .types
        .as_ref()
        .is_some_and(|types| types.kind == "Namespace" && types.api_version == "v1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crds_in_the_revision_define_their_served_kinds_and_scope() {
        let crd: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "widgets.example.dev" },
            "spec": {
                "group": "example.dev", "scope": "Cluster",
                "names": { "plural": "widgets", "kind": "Widget" },
                "versions": [
                    { "name": "v1", "served": true, "storage": true },
                    { "name": "v0", "served": false, "storage": false }
                ]
            }
        }))
        .unwrap();
        let defined = DefinedKinds::from_objects([&crd]);
        let (resource, scope) = defined
            .find(&GroupVersionKind::gvk("example.dev", "v1", "Widget"))
            .expect("v1 is served");
        assert_eq!(resource.plural, "widgets");
        assert!(matches!(scope, Scope::Cluster));
        assert!(
            defined
                .find(&GroupVersionKind::gvk("example.dev", "v0", "Widget"))
                .is_none()
        );
        assert!(is_crd(&crd));
    }
}

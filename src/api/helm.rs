//! `spec.helm`: a chart of the repository rendered with `helm template`, its objects applied as
//! any revision's.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A Helm chart kept in the repository, with its values.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    /// The chart's directory in the repository. Default: `spec.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && !self.matches('(^|/)\\\\.\\\\.(/|$)')").message("chart must be a path inside the repository (no leading '/', no '..')"))]
    pub chart: Option<String>,

    /// The release name templates see as `.Release.Name`. Default: this object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 53))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("releaseName must be a DNS-1123 label of at most 53 characters, as Helm requires"))]
    pub release_name: Option<String>,

    /// The namespace templates see as `.Release.Namespace`. Default: the target namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("namespace must be a DNS-1123 label"))]
    pub namespace: Option<String>,

    /// Values files in the repository (paths from the repository root), merged in order over
    /// the chart's `values.yaml`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 1024)))]
    #[x_kube(validation = Rule::new("self.all(f, !f.startsWith('/') && !f.matches('(^|/)\\\\.\\\\.(/|$)'))").message("valuesFiles must be paths inside the repository (no leading '/', no '..')"))]
    pub values_files: Vec<String>,

    /// ConfigMap and Secret keys of this namespace holding values documents, merged in order
    /// after `valuesFiles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub values_from: Vec<ValuesReference>,

    /// Values merged last, over the files and `valuesFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_object")]
    pub values: Option<serde_json::Value>,

    /// Render the chart's `crds/` directory (applied first, like any CRD). Default true.
    #[serde(
        default,
        rename = "includeCRDs",
        skip_serializing_if = "Option::is_none"
    )]
    pub include_crds: Option<bool>,

    /// Leave out the chart's test templates. Default true (test hooks are never applied
    /// either way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_tests: Option<bool>,
}

impl HelmSpec {
    pub fn include_crds(&self) -> bool {
        self.include_crds != Some(false)
    }

    pub fn skip_tests(&self) -> bool {
        self.skip_tests != Some(false)
    }
}

/// A key of a ConfigMap or Secret whose value is a YAML values document.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValuesReference {
    /// `ConfigMap` or `Secret`.
    #[x_kube(validation = Rule::new("self == 'ConfigMap' || self == 'Secret'").message("kind must be ConfigMap or Secret"))]
    pub kind: String,
    #[schemars(length(max = 253))]
    pub name: String,
    /// The key holding the document. Default `values.yaml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub values_key: Option<String>,
    /// Tolerate a missing object or key (nothing is merged then). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

impl ValuesReference {
    pub fn key(&self) -> &str {
        self.values_key.as_deref().unwrap_or("values.yaml")
    }
}

/// An object of any fields, kept as written.
fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

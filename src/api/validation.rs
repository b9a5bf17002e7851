//! The admission rules of a `GitRepository`, in Rust: every `x-kubernetes-validations` CEL rule
//! and every OpenAPI bound (lengths, item counts, patterns) of the CRD, with the CRD's own
//! messages. The controller checks each object with them before any work (an object stored
//! before a rule existed keeps its old value), and `driftless build --spec-file` checks a spec
//! file with them, since no apiserver ever saw that file: a value that admission would refuse
//! (a release name such as `--post-renderer=/bin/sh`) must never reach a renderer's command
//! line from either side.
//!
//! The patterns are the CRD's regular expressions, unchanged: CEL's `matches()` is RE2 and
//! searches (unanchored unless `^`/`$` say otherwise), as [`regex::Regex::is_match`] does, and
//! both read `.` as any character but a newline. Lengths count Unicode code points, as the
//! apiserver counts `maxLength` and CEL's `size()`. A test submits a table of specs to a real
//! apiserver and to [`validate_spec`] and asserts that the verdicts agree.

use std::{fmt, sync::LazyLock, time::Duration};

use regex::Regex;

use super::{
    CommitStatusSpec, Dependency, GitRepository, GitRepositorySpec, HelmSpec,
    MAX_EXPRESSION_LENGTH, MAX_HEALTH_CHECK_EXPRS, MAX_HEALTH_CHECKS,
    duration::{MAX_INTERVAL, MAX_TIMEOUT, parse_duration},
};

/// One rule a field breaks: the field's path (`spec.helm.releaseName`) and the CRD's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every rule an object breaks, in field order, all reported at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", list(.0))]
pub struct InvalidSpec(pub Vec<FieldError>);

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The longest `helm.releaseName`: Helm's own limit.
pub const MAX_RELEASE_NAME: usize = 53;
/// The longest DNS-1123 label (a namespace).
pub const MAX_LABEL: usize = 63;
/// The longest DNS-1123 subdomain (an object's name).
pub const MAX_SUBDOMAIN: usize = 253;
/// The longest path of the repository a spec names (`helm.chart`, a `valuesFiles` entry).
pub const MAX_PATH: usize = 1024;
/// Most `helm.valuesFiles` and most `helm.valuesFrom` entries.
pub const MAX_VALUES_SOURCES: usize = 32;
/// Most `dependsOn` entries.
pub const MAX_DEPENDENCIES: usize = 64;

/// The scp-like URL form (`git@host:org/repo.git`).
const SCP_URL_PATTERN: &str = "^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$";
/// A Go-style duration as the CRD accepts it: whole or decimal numbers of ms, s, m or h.
const DURATION_PATTERN: &str = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$";
/// Seven digits in a row: more than CEL's `duration()` may read without overflow.
const DURATION_DIGITS_PATTERN: &str = "[0-9]{7}";
/// The longest duration text.
const MAX_DURATION_TEXT: usize = 16;
/// A DNS-1123 label (namespaces, Helm release names).
const LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A path climbing out of its directory.
const PARENT_PATTERN: &str = "(^|/)\\.\\.(/|$)";
/// A full lowercase commit SHA.
const COMMIT_PATTERN: &str = "^[0-9a-f]{40}$";
/// A DNS-1123 subdomain: what the apiserver accepts as a custom object's name.
const SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

fn compile(source: &str) -> Regex {
    Regex::new(source).expect("the CRD's patterns compile")
}

static SCP_URL: LazyLock<Regex> = LazyLock::new(|| compile(SCP_URL_PATTERN));
static DURATION: LazyLock<Regex> = LazyLock::new(|| compile(DURATION_PATTERN));
static DURATION_DIGITS: LazyLock<Regex> = LazyLock::new(|| compile(DURATION_DIGITS_PATTERN));
static LABEL: LazyLock<Regex> = LazyLock::new(|| compile(LABEL_PATTERN));
static SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| compile(SUBDOMAIN_PATTERN));
static PARENT: LazyLock<Regex> = LazyLock::new(|| compile(PARENT_PATTERN));
static CONTROL_CHARACTER: LazyLock<Regex> = LazyLock::new(|| compile("[\\x00-\\x1f]"));
static COMMIT: LazyLock<Regex> = LazyLock::new(|| compile(COMMIT_PATTERN));

/// Collects the rules broken, each under its field's path.
#[derive(Default)]
struct Report(Vec<FieldError>);

impl Report {
    fn refuse(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// `maxLength`, as the apiserver reports it.
    fn max_length(&mut self, field: &str, value: &str, max: usize) -> bool {
        let fits = value.chars().count() <= max;
        if !fits {
            self.refuse(field, format!("may not be longer than {max} characters"));
        }
        fits
    }

    /// `maxItems`, as the apiserver reports it.
    fn max_items(&mut self, field: &str, count: usize, max: usize) {
        if count > max {
            self.refuse(field, format!("must have at most {max} items"));
        }
    }

    fn finish(self) -> Result<(), InvalidSpec> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec(self.0))
        }
    }
}

/// Checks a spec against every admission rule of the CRD.
pub fn validate_spec(spec: &GitRepositorySpec) -> Result<(), InvalidSpec> {
    let mut report = Report::default();
    check_spec(spec, &mut report);
    report.finish()
}

/// Checks a whole object as the apiserver would admit it: its name and namespace (which reach
/// Helm as the default release name and namespace), then its spec.
pub fn validate(repository: &GitRepository) -> Result<(), InvalidSpec> {
    let mut report = Report::default();
    let metadata = &repository.metadata;
    if let Some(name) = &metadata.name {
        if !SUBDOMAIN.is_match(name) || name.chars().count() > MAX_SUBDOMAIN {
            report.refuse(
                "metadata.name",
                "a name must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', \
                 starting and ending with a letter or digit, at most 253 characters",
            );
        }
    }
    if let Some(namespace) = &metadata.namespace {
        if !LABEL.is_match(namespace) || namespace.chars().count() > MAX_LABEL {
            report.refuse(
                "metadata.namespace",
                "a namespace must be a DNS-1123 label: lowercase letters, digits and '-', \
                 starting and ending with a letter or digit, at most 63 characters",
            );
        }
    }
    check_spec(&repository.spec, &mut report);
    report.finish()
}

fn check_spec(spec: &GitRepositorySpec, report: &mut Report) {
    let kustomize_fields = spec.name_prefix.is_some()
        || spec.name_suffix.is_some()
        || !spec.images.is_empty()
        || !spec.patches.is_empty()
        || !spec.components.is_empty();
    if spec.helm.is_some() && kustomize_fields {
        report.refuse(
            "spec",
            "helm renders a chart; the Kustomize fields (namePrefix, nameSuffix, images, \
             patches, components) cannot be combined with it",
        );
    }
    let url = &spec.url;
    let url_forms = ["https://", "http://", "ssh://"];
    if !url_forms.iter().any(|form| url.starts_with(form)) && !SCP_URL.is_match(url) {
        report.refuse(
            "spec.url",
            "url must start with https://, http://, ssh:// or be scp-like user@host:path",
        );
    }
    if let Some(reference) = &spec.reference {
        let set = [
            reference.branch.is_some(),
            reference.tag.is_some(),
            reference.semver.is_some(),
            reference.commit.is_some(),
        ];
        let branch_and_commit = reference.branch.is_some()
            && reference.commit.is_some()
            && reference.tag.is_none()
            && reference.semver.is_none();
        if set.iter().filter(|set| **set).count() > 1 && !branch_and_commit {
            report.refuse(
                "spec.ref",
                "ref takes one of branch, tag, semver or commit (commit may be combined with \
                 branch)",
            );
        }
        if let Some(commit) = &reference.commit {
            if !COMMIT.is_match(commit) {
                report.refuse(
                    "spec.ref.commit",
                    "commit must be a full 40-character lowercase hex SHA",
                );
            }
        }
    }
    let durations = [
        (
            "interval",
            &spec.interval,
            MAX_INTERVAL,
            "such as 30s, 5m or 1h",
        ),
        (
            "retryInterval",
            &spec.retry_interval,
            MAX_INTERVAL,
            "such as 30s or 1m",
        ),
        ("timeout", &spec.timeout, MAX_TIMEOUT, "such as 60s"),
    ];
    for (field, value, maximum, examples) in durations {
        if let Some(text) = value {
            if !duration_admitted(text, maximum) {
                report.refuse(
                    &format!("spec.{field}"),
                    duration_message(field, examples, maximum),
                );
            }
        }
    }
    if let Some(commit_status) = &spec.commit_status {
        check_commit_status(commit_status, report);
    }
    report.max_items("spec.alerts", spec.alerts.len(), MAX_ALERTS);
    for (index, alert) in spec.alerts.iter().enumerate() {
        report.max_items(
            &format!("spec.alerts[{index}].events"),
            alert.events.len(),
            5,
        );
    }
    if let Some(helm) = &spec.helm {
        check_helm(helm, report);
    }
    if let Some(post_build) = &spec.post_build {
        for (index, source) in post_build.substitute_from.iter().enumerate() {
            check_kind(
                &format!("spec.postBuild.substituteFrom[{index}].kind"),
                &source.kind,
                report,
            );
        }
    }
    check_dependencies(&spec.depends_on, report);
    check_health_checks(spec, report);
}

fn check_dependencies(dependencies: &[Dependency], report: &mut Report) {
    report.max_items("spec.dependsOn", dependencies.len(), MAX_DEPENDENCIES);
    for (index, dependency) in dependencies.iter().enumerate() {
        let field = format!("spec.dependsOn[{index}]");
        if dependency.api_version.is_some() != dependency.kind.is_some() {
            report.refuse(
                &field,
                "apiVersion and kind are set together (both unset name a GitRepository)",
            );
        }
        let name = format!("{field}.name");
        if dependency.name.is_empty() {
            report.refuse(&name, "should be at least 1 chars long");
        }
        report.max_length(&name, &dependency.name, MAX_SUBDOMAIN);
        if let Some(namespace) = &dependency.namespace {
            let field = format!("{field}.namespace");
            if report.max_length(&field, namespace, MAX_LABEL) && !LABEL.is_match(namespace) {
                report.refuse(&field, "namespace must be a DNS-1123 label");
            }
        }
        if let Some(api_version) = &dependency.api_version {
            report.max_length(&format!("{field}.apiVersion"), api_version, MAX_SUBDOMAIN);
        }
        if let Some(kind) = &dependency.kind {
            report.max_length(&format!("{field}.kind"), kind, MAX_LABEL);
        }
        if let Some(ready_expr) = &dependency.ready_expr {
            expression(report, &format!("{field}.readyExpr"), ready_expr);
        }
    }
}

/// `spec.healthChecks` and `spec.healthCheckExprs`: their item counts and lengths (whether an
/// expression compiles is the controller's check, which names the parser's message).
fn check_health_checks(spec: &GitRepositorySpec, report: &mut Report) {
    let checks = &spec.health_checks;
    report.max_items("spec.healthChecks", checks.len(), MAX_HEALTH_CHECKS);
    for (index, check) in checks.iter().enumerate() {
        let field = format!("spec.healthChecks[{index}]");
        bounded(
            report,
            &format!("{field}.apiVersion"),
            &check.api_version,
            MAX_SUBDOMAIN,
        );
        bounded(report, &format!("{field}.kind"), &check.kind, MAX_LABEL);
        bounded(report, &format!("{field}.name"), &check.name, MAX_SUBDOMAIN);
        if let Some(namespace) = &check.namespace {
            report.max_length(&format!("{field}.namespace"), namespace, MAX_LABEL);
        }
    }
    let exprs = &spec.health_check_exprs;
    report.max_items("spec.healthCheckExprs", exprs.len(), MAX_HEALTH_CHECK_EXPRS);
    for (index, entry) in exprs.iter().enumerate() {
        let field = format!("spec.healthCheckExprs[{index}]");
        bounded(
            report,
            &format!("{field}.apiVersion"),
            &entry.api_version,
            MAX_SUBDOMAIN,
        );
        bounded(report, &format!("{field}.kind"), &entry.kind, MAX_LABEL);
        expression(report, &format!("{field}.current"), &entry.current);
        if let Some(in_progress) = &entry.in_progress {
            expression(report, &format!("{field}.inProgress"), in_progress);
        }
        if let Some(failed) = &entry.failed {
            expression(report, &format!("{field}.failed"), failed);
        }
    }
}

/// `minLength: 1` and `maxLength: max`.
fn bounded(report: &mut Report, field: &str, value: &str, max: usize) {
    if value.is_empty() {
        report.refuse(field, "should be at least 1 chars long");
    }
    report.max_length(field, value, max);
}

/// A CEL expression's bounds: `minLength: 1`, `maxLength: MAX_EXPRESSION_LENGTH`.
fn expression(report: &mut Report, field: &str, value: &str) {
    bounded(report, field, value, MAX_EXPRESSION_LENGTH);
}

/// The longest `commitStatus.address` and `commitStatus.targetURL`.
pub const MAX_URL: usize = 2048;
/// Most `spec.alerts` entries.
pub const MAX_ALERTS: usize = 8;
/// The longest `commitStatus.context`.
pub const MAX_CONTEXT: usize = 255;

fn check_commit_status(status: &CommitStatusSpec, report: &mut Report) {
    let web_url = |url: &str| {
        url.chars().count() <= MAX_URL
            && (url.starts_with("https://") || url.starts_with("http://"))
    };
    if let Some(address) = &status.address {
        if !web_url(address) {
            report.refuse(
                "spec.commitStatus.address",
                "address must be an http:// or https:// URL of at most 2048 characters",
            );
        }
    }
    if let Some(context) = &status.context {
        let length = context.chars().count();
        if !(1..=MAX_CONTEXT).contains(&length) || CONTROL_CHARACTER.is_match(context) {
            report.refuse(
                "spec.commitStatus.context",
                "context must be 1 to 255 characters without control characters",
            );
        }
    }
    if let Some(target_url) = &status.target_url {
        if !web_url(target_url) {
            report.refuse(
                "spec.commitStatus.targetURL",
                "targetURL must be an http:// or https:// URL of at most 2048 characters",
            );
        }
    }
}

fn check_helm(helm: &HelmSpec, report: &mut Report) {
    if let Some(chart) = &helm.chart {
        let field = "spec.helm.chart";
        if report.max_length(field, chart, MAX_PATH) && !inside_repository(chart) {
            report.refuse(
                field,
                "chart must be a path inside the repository (no leading '/', no '..')",
            );
        }
    }
    if let Some(release_name) = &helm.release_name {
        let field = "spec.helm.releaseName";
        if report.max_length(field, release_name, MAX_RELEASE_NAME) && !LABEL.is_match(release_name)
        {
            report.refuse(
                field,
                "releaseName must be a DNS-1123 label of at most 53 characters, as Helm requires",
            );
        }
    }
    if let Some(namespace) = &helm.namespace {
        let field = "spec.helm.namespace";
        if report.max_length(field, namespace, MAX_LABEL) && !LABEL.is_match(namespace) {
            report.refuse(field, "namespace must be a DNS-1123 label");
        }
    }
    let field = "spec.helm.valuesFiles";
    report.max_items(field, helm.values_files.len(), MAX_VALUES_SOURCES);
    let mut lengths_fit = true;
    for (index, file) in helm.values_files.iter().enumerate() {
        lengths_fit &= report.max_length(&format!("{field}[{index}]"), file, MAX_PATH);
    }
    if lengths_fit && !helm.values_files.iter().all(|f| inside_repository(f)) {
        report.refuse(
            field,
            "valuesFiles must be paths inside the repository (no leading '/', no '..')",
        );
    }
    report.max_items(
        "spec.helm.valuesFrom",
        helm.values_from.len(),
        MAX_VALUES_SOURCES,
    );
    for (index, source) in helm.values_from.iter().enumerate() {
        let field = format!("spec.helm.valuesFrom[{index}]");
        check_kind(&format!("{field}.kind"), &source.kind, report);
        report.max_length(&format!("{field}.name"), &source.name, MAX_SUBDOMAIN);
        if let Some(key) = &source.values_key {
            report.max_length(&format!("{field}.valuesKey"), key, MAX_SUBDOMAIN);
        }
    }
}

/// `!self.startsWith('/') && !self.matches('(^|/)\.\.(/|$)')`.
fn inside_repository(path: &str) -> bool {
    !path.starts_with('/') && !PARENT.is_match(path)
}

fn check_kind(field: &str, kind: &str, report: &mut Report) {
    if kind != "ConfigMap" && kind != "Secret" {
        report.refuse(field, "kind must be ConfigMap or Secret");
    }
}

/// The CRD's duration rule: at most 16 characters, no run of 7 digits (so CEL's `duration()`
/// cannot overflow), the Go-style pattern, greater than zero and at most `maximum`.
fn duration_admitted(text: &str, maximum: Duration) -> bool {
    text.chars().count() <= MAX_DURATION_TEXT
        && !DURATION_DIGITS.is_match(text)
        && DURATION.is_match(text)
        && parse_duration(text).is_ok_and(|duration| duration <= maximum)
}

/// The message of the CRD's duration rule of `field`.
fn duration_message(field: &str, examples: &str, maximum: Duration) -> String {
    format!(
        "{field} must be a positive Go-style duration {examples}, at most {} (16 characters, \
         6 digits per number)",
        super::format_duration(maximum)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(value: serde_json::Value) -> GitRepositorySpec {
        serde_json::from_value(value).expect("a spec literal")
    }

    fn refused_fields(value: serde_json::Value) -> Vec<String> {
        match validate_spec(&spec(value)) {
            Ok(()) => Vec::new(),
            Err(InvalidSpec(errors)) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn a_release_name_that_looks_like_a_flag_is_refused_with_the_crd_message() {
        let error = validate_spec(&spec(json!({
            "url": "https://example.com/r.git",
            "helm": { "releaseName": "--post-renderer=/bin/sh" },
        })))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "spec.helm.releaseName: releaseName must be a DNS-1123 label of at most 53 \
             characters, as Helm requires"
        );
    }

    #[test]
    fn every_broken_rule_is_reported_at_once_in_field_order() {
        let fields = refused_fields(json!({
            "url": "file:///etc",
            "ref": { "tag": "v1", "semver": ">=1" },
            "timeout": "0s",
            "helm": {
                "chart": "../x",
                "namespace": "-a",
                "valuesFiles": ["/etc/passwd"],
                "valuesFrom": [{ "kind": "Pod", "name": "x" }],
            },
            "namePrefix": "p-",
        }));
        assert_eq!(
            fields,
            [
                "spec",
                "spec.url",
                "spec.ref",
                "spec.timeout",
                "spec.helm.chart",
                "spec.helm.namespace",
                "spec.helm.valuesFiles",
                "spec.helm.valuesFrom[0].kind",
            ]
        );
    }

    #[test]
    fn durations_follow_the_crd_pattern_not_only_the_parser() {
        let url = "https://example.com/r.git";
        for accepted in ["5m", "1.5h", "720h", "719h60m", "250ms"] {
            assert!(
                refused_fields(json!({ "url": url, "interval": accepted })).is_empty(),
                "{accepted}"
            );
        }
        // The parser reads `.5s` and `1.s`; the CRD's pattern does not.
        for refused in [".5s", "1.s", "0s", "721h", "1234567s", "1h1h1h1h1h1h1h1h1h"] {
            assert_eq!(
                refused_fields(json!({ "url": url, "interval": refused })),
                ["spec.interval"],
                "{refused}"
            );
        }
    }

    #[test]
    fn metadata_reaching_helm_must_be_a_kubernetes_name() {
        let repository = |name: &str, namespace: &str| -> GitRepository {
            serde_json::from_value(json!({
                "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
                "metadata": { "name": name, "namespace": namespace },
                "spec": { "url": "https://example.com/r.git", "helm": {} },
            }))
            .unwrap()
        };
        assert_eq!(validate(&repository("web.prod", "team-a")), Ok(()));
        let error = validate(&repository("--post-renderer=/bin/sh", "--kubeconfig=x")).unwrap_err();
        let fields: Vec<_> = error.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "metadata.namespace"]);
    }
}

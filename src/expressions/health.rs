//! `spec.healthCheckExprs`: the health of a custom resource by the tenant's expressions, with
//! Flux's semantics.

use super::expression::{CompileError, EvaluationError, Expression};
use crate::api::{HealthCheckExpr, MAX_HEALTH_CHECK_EXPRS};

/// The health of one object by its kind's expressions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Current,
    /// Still getting there; the text says what, naming the object.
    InProgress(String),
    /// Failed; the text names the object and the expression that said so.
    Failed(String),
}

/// The compiled `spec.healthCheckExprs` of one GitRepository spec.
#[derive(Clone, Debug, Default)]
pub struct HealthRules {
    rules: Vec<Rule>,
}

/// The expressions of one kind, in evaluation order.
#[derive(Clone, Debug)]
struct Rule {
    api_version: String,
    kind: String,
    /// `inProgress`, `failed` (each if set) and `current`.
    expressions: Vec<(&'static str, Expression)>,
}

impl HealthRules {
    /// Compiles every entry, or names the first field that does not compile (its path in the
    /// spec and the parser's message).
    pub fn compile(entries: &[HealthCheckExpr]) -> Result<Self, CompileError> {
        if entries.len() > MAX_HEALTH_CHECK_EXPRS {
            return Err(CompileError {
                field: "spec.healthCheckExprs".into(),
                reason: format!(
                    "{} entries; at most {MAX_HEALTH_CHECK_EXPRS} are allowed",
                    entries.len()
                ),
            });
        }
        let rules = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                let expressions = entry
                    .expressions()
                    .into_iter()
                    .map(|(name, source)| {
                        let field = format!("spec.healthCheckExprs[{index}].{name}");
                        Expression::compile(field, source).map(|compiled| (name, compiled))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Rule {
                    api_version: entry.api_version.clone(),
                    kind: entry.kind.clone(),
                    expressions,
                })
            })
            .collect::<Result<Vec<_>, CompileError>>()?;
        Ok(Self { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The verdict on `object` (as the API returned it) when an entry names its apiVersion
    /// and kind; `None` leaves it to the kstatus rules.
    pub async fn verdict(&self, object: &serde_json::Value) -> Option<Verdict> {
        let api_version = object["apiVersion"].as_str()?;
        let kind = object["kind"].as_str()?;
        let rule = self
            .rules
            .iter()
            .find(|rule| rule.api_version == api_version && rule.kind == kind)?;
        let label = format!(
            "{kind} {}",
            object["metadata"]["name"].as_str().unwrap_or_default()
        );
        if let Some(why) = generic(object) {
            return Some(Verdict::InProgress(format!("{label}: {why}")));
        }
        let variables = variables_of(object);
        for (name, expression) in &rule.expressions {
            let said = expression.evaluate(variables.clone()).await;
            match (said, *name) {
                (Ok(true), "inProgress") => {
                    return Some(Verdict::InProgress(format!(
                        "{label}: inProgress `{}` is true",
                        expression.source()
                    )));
                }
                (Ok(true), "failed") => {
                    return Some(Verdict::Failed(format!(
                        "{label}: failed `{}` is true",
                        expression.source()
                    )));
                }
                (Ok(true), _) => return Some(Verdict::Current),
                (Ok(false), _) => {}
                (Err(error), _) => return Some(unevaluated(&label, expression, &error)),
            }
        }
        let current = rule.expressions.last().map(|(_, e)| e.source());
        Some(Verdict::InProgress(format!(
            "{label}: current `{}` is not true yet",
            current.unwrap_or_default()
        )))
    }
}

/// An expression that could not be evaluated keeps the object unhealthy, with the reason: the
/// wait goes on (a field the object's controller has not written yet is the usual cause) and
/// fails with this message at its timeout.
fn unevaluated(label: &str, expression: &Expression, error: &EvaluationError) -> Verdict {
    Verdict::InProgress(format!(
        "{label}: {} `{}` cannot be evaluated: {error}",
        expression.field(),
        expression.source()
    ))
}

/// What kstatus checks before any kind's own rules, as Flux does before the expressions: an
/// object being deleted, or whose controller has not observed its spec yet, is in progress.
fn generic(object: &serde_json::Value) -> Option<String> {
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return Some("is being deleted".into());
    }
    let observed = object["status"]["observedGeneration"].as_i64()?;
    let generation = object["metadata"]["generation"].as_i64()?;
    (observed != generation).then(|| {
        format!(
            "waiting for the controller to observe generation {generation} (it observed {observed})"
        )
    })
}

/// The object's top-level fields as variables (`metadata`, `spec`, `status`, ...), as Flux
/// binds them; `metadata`, `spec` and `status` are empty maps when absent, so `has(status.x)`
/// works on an object whose controller has not written a status yet.
fn variables_of(object: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut variables: Vec<(String, serde_json::Value)> = object
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    for always in ["metadata", "spec", "status"] {
        if !variables.iter().any(|(name, _)| name == always) {
            variables.push((always.into(), serde_json::json!({})));
        }
    }
    variables
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Flux's CEL cheatsheet entry for cert-manager's Certificate.
    fn certificate_rules() -> HealthRules {
        HealthRules::compile(&[HealthCheckExpr {
            api_version: "cert-manager.io/v1".into(),
            kind: "Certificate".into(),
            current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')"
                .into(),
            in_progress: None,
            failed: Some(
                "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')".into(),
            ),
        }])
        .unwrap()
    }

    /// Flux's cheatsheet entry for a Cluster API Cluster.
    fn cluster_rules() -> HealthRules {
        HealthRules::compile(&[HealthCheckExpr {
            api_version: "cluster.x-k8s.io/v1beta1".into(),
            kind: "Cluster".into(),
            current: "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')"
                .into(),
            in_progress: Some(
                "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'Unknown') \
                 || status.phase == 'Provisioning'"
                    .into(),
            ),
            failed: Some(
                "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False') \
                 || status.phase == 'Failed'"
                    .into(),
            ),
        }])
        .unwrap()
    }

    fn certificate(ready: &str) -> serde_json::Value {
        json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": { "name": "web", "namespace": "app", "generation": 2 },
            "spec": { "secretName": "web-tls" },
            "status": { "observedGeneration": 2, "conditions": [
                { "type": "Issuing", "status": "True" },
                { "type": "Ready", "status": ready, "reason": "x" } ] },
        })
    }

    fn verdict(rules: &HealthRules, object: serde_json::Value) -> Option<Verdict> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(rules.verdict(&object))
    }

    #[test]
    fn flux_s_certificate_expressions_decide_a_certificate() {
        let rules = certificate_rules();
        assert_eq!(verdict(&rules, certificate("True")), Some(Verdict::Current));
        assert!(matches!(
            verdict(&rules, certificate("False")),
            Some(Verdict::Failed(why)) if why.starts_with("Certificate web: failed `status")
        ));
        assert!(matches!(
            verdict(&rules, certificate("Unknown")),
            Some(Verdict::InProgress(why)) if why.contains("current `status")
        ));
    }

    #[test]
    fn flux_s_cluster_api_expressions_decide_a_cluster() {
        let rules = cluster_rules();
        let cluster = |phase: &str, ready: &str| {
            json!({
                "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
                "metadata": { "name": "c1", "generation": 1 },
                "status": { "phase": phase, "conditions": [{ "type": "Ready", "status": ready }] },
            })
        };
        assert_eq!(
            verdict(&rules, cluster("Provisioned", "True")),
            Some(Verdict::Current)
        );
        assert!(matches!(
            verdict(&rules, cluster("Provisioning", "False")),
            Some(Verdict::InProgress(why)) if why.contains("inProgress")
        ));
        assert!(matches!(
            verdict(&rules, cluster("Failed", "False")),
            Some(Verdict::Failed(_))
        ));
    }

    #[test]
    fn other_kinds_are_left_to_kstatus() {
        let rules = certificate_rules();
        let mut other = certificate("True");
        other["apiVersion"] = json!("cert-manager.io/v1alpha2");
        assert_eq!(verdict(&rules, other), None);
    }

    #[test]
    fn a_missing_field_keeps_the_object_in_progress_with_the_reason() {
        let rules = certificate_rules();
        let fresh = json!({
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": { "name": "web", "generation": 1 },
        });
        assert!(matches!(
            verdict(&rules, fresh),
            Some(Verdict::InProgress(why))
                if why.contains("spec.healthCheckExprs[0].failed") && why.contains("cannot be evaluated")
        ));
    }

    #[test]
    fn an_unobserved_generation_is_in_progress_before_any_expression() {
        let rules = certificate_rules();
        let mut object = certificate("True");
        object["metadata"]["generation"] = json!(3);
        assert!(matches!(
            verdict(&rules, object),
            Some(Verdict::InProgress(why)) if why.contains("observe generation 3")
        ));
    }

    #[test]
    fn the_optional_syntax_and_integers_work_as_in_flux() {
        let rules = HealthRules::compile(&[HealthCheckExpr {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            current: "status.?conditions.orValue([]).exists(e, e.type == 'Ready') && \
                      status.replicas == 3"
                .into(),
            ..Default::default()
        }])
        .unwrap();
        let widget = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" },
            "status": { "replicas": 3, "conditions": [{ "type": "Ready", "status": "True" }] },
        });
        assert_eq!(verdict(&rules, widget), Some(Verdict::Current));
    }

    #[test]
    fn a_non_bool_result_is_an_evaluation_error() {
        let rules = HealthRules::compile(&[HealthCheckExpr {
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            current: "status.phase".into(),
            ..Default::default()
        }])
        .unwrap();
        let widget = json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" },
            "status": { "phase": "Ready" },
        });
        assert!(matches!(
            verdict(&rules, widget),
            Some(Verdict::InProgress(why)) if why.contains("not a bool")
        ));
    }

    #[test]
    fn a_bad_expression_is_refused_with_its_field_and_the_parser_s_message() {
        let refused = HealthRules::compile(&[
            HealthCheckExpr {
                api_version: "a/v1".into(),
                kind: "A".into(),
                current: "true".into(),
                ..Default::default()
            },
            HealthCheckExpr {
                api_version: "b/v1".into(),
                kind: "B".into(),
                current: "true".into(),
                failed: Some("status.phase == ".into()),
                ..Default::default()
            },
        ])
        .unwrap_err();
        assert_eq!(refused.field, "spec.healthCheckExprs[1].failed");
        assert!(refused.reason.contains("does not compile"), "{refused}");
    }

    #[test]
    fn the_bounds_are_checked_in_code_too() {
        let long = HealthCheckExpr {
            api_version: "a/v1".into(),
            kind: "A".into(),
            current: format!("true{}", " && true".repeat(200)),
            ..Default::default()
        };
        let refused = HealthRules::compile(std::slice::from_ref(&long)).unwrap_err();
        assert!(refused.reason.contains("at most 1024"), "{refused}");
        let short = HealthCheckExpr {
            current: "true".into(),
            ..long
        };
        let too_many = vec![short; MAX_HEALTH_CHECK_EXPRS + 1];
        let refused = HealthRules::compile(&too_many).unwrap_err();
        assert_eq!(refused.field, "spec.healthCheckExprs");
    }
}

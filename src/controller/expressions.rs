//! The spec's CEL expressions in a reconcile: compiled once per reconcile of a revision (and
//! kept with its health wait), refused as Stalled with the field and the parser's message, and
//! the health rules handed to the apply engine as its health override.

use std::sync::Arc;

use futures::{FutureExt, future::BoxFuture};

use super::{conditions::Reason, failure::Failure};
use crate::{
    api::{GitRepository, MAX_HEALTH_CHECKS},
    apply::{Applier, HealthOverride, health::Health},
    expressions::{CompileError, HealthRules, ReadyExpr, Verdict},
};

/// The compiled expressions of one spec.
pub(super) struct SpecExpressions {
    /// `spec.healthCheckExprs`.
    pub(super) health: Arc<HealthRules>,
    /// `spec.dependsOn[i].readyExpr`, by the index of the dependency.
    pub(super) ready: Vec<Option<ReadyExpr>>,
}

impl SpecExpressions {
    /// Compiles every expression of `repository`'s spec, or refuses the spec (Stalled: only
    /// a change of the spec helps).
    pub(super) fn compile(repository: &GitRepository) -> Result<Self, Failure> {
        let spec = &repository.spec;
        let refuse = |error: CompileError| Failure::new(Reason::InvalidSpec, error).stalled();
        if spec.health_checks.len() > MAX_HEALTH_CHECKS {
            return Err(refuse(CompileError {
                field: "spec.healthChecks".into(),
                reason: format!(
                    "{} entries; at most {MAX_HEALTH_CHECKS} are allowed",
                    spec.health_checks.len()
                ),
            }));
        }
        let health = HealthRules::compile(&spec.health_check_exprs).map_err(refuse)?;
        let ready = spec
            .depends_on
            .iter()
            .enumerate()
            .map(|(index, dependency)| {
                dependency
                    .ready_expr
                    .as_deref()
                    .map(|source| ReadyExpr::compile(index, source))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(refuse)?;
        Ok(Self {
            health: Arc::new(health),
            ready,
        })
    }
}

/// `applier`, judging health by `rules` where they cover an object.
pub(super) fn judging_by(applier: Applier, rules: &Arc<HealthRules>) -> Applier {
    if rules.is_empty() {
        return applier;
    }
    applier.with_health_override(Arc::new(ByExpressions(rules.clone())))
}

/// The health rules as the apply engine asks for them.
struct ByExpressions(Arc<HealthRules>);

impl HealthOverride for ByExpressions {
    fn health<'a>(&'a self, object: &'a serde_json::Value) -> BoxFuture<'a, Option<Health>> {
        async move {
            self.0.verdict(object).await.map(|verdict| match verdict {
                Verdict::Current => Health::Healthy,
                Verdict::InProgress(why) => Health::InProgress(why),
                Verdict::Failed(why) => Health::Failed(why),
            })
        }
        .boxed()
    }
}

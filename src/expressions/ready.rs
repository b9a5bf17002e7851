//! `spec.dependsOn[].readyExpr`: whether a dependency is ready, by the tenant's expression
//! over `dep` and `self`, in place of the built-in check (Flux's semantics).

use super::expression::{CompileError, EvaluationError, Expression};

/// One dependency's compiled `readyExpr`.
#[derive(Clone, Debug)]
pub struct ReadyExpr(Expression);

impl ReadyExpr {
    /// Compiles the `readyExpr` of `spec.dependsOn[index]`.
    pub fn compile(index: usize, source: &str) -> Result<Self, CompileError> {
        Expression::compile(format!("spec.dependsOn[{index}].readyExpr"), source).map(Self)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        self.0.source()
    }

    /// Whether `dependency` is ready for `dependent`, both as the API returned them.
    pub async fn is_ready(
        &self,
        dependency: serde_json::Value,
        dependent: serde_json::Value,
    ) -> Result<bool, EvaluationError> {
        let variables = vec![("dep".into(), dependency), ("self".into(), dependent)];
        self.0.evaluate(variables).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn dep_and_self_are_bound() {
        let expression = ReadyExpr::compile(
            0,
            "dep.status.lastAppliedRevision == self.status.lastAppliedRevision && \
             dep.metadata.generation == dep.status.observedGeneration",
        )
        .unwrap();
        let dependency = json!({ "metadata": { "generation": 2 },
            "status": { "observedGeneration": 2, "lastAppliedRevision": "main@sha1:1" } });
        let dependent = json!({ "status": { "lastAppliedRevision": "main@sha1:1" } });
        assert_eq!(
            expression.is_ready(dependency.clone(), dependent).await,
            Ok(true)
        );
        let behind = json!({ "status": { "lastAppliedRevision": "main@sha1:0" } });
        assert_eq!(expression.is_ready(dependency, behind).await, Ok(false));
    }

    #[test]
    fn a_bad_expression_names_its_dependency() {
        let refused = ReadyExpr::compile(2, "dep.status.(").unwrap_err();
        assert_eq!(refused.field, "spec.dependsOn[2].readyExpr");
    }
}

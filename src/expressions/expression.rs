//! One compiled expression and its bounded evaluation.

use std::sync::{Arc, LazyLock};

use cel::{Context, Env, Program, Value};
use tokio::sync::Semaphore;

use super::{
    bounds::{CONCURRENT_EVALUATIONS, EVALUATION_TIME_LIMIT, check_shape},
    values::to_cel,
};
use crate::api::MAX_EXPRESSION_LENGTH;

/// CEL's standard library with the optional syntax (`status.?conditions.orValue([])`), as
/// Flux's expressions use it. No extension libraries: each would be more to bound.
static ENVIRONMENT: LazyLock<Arc<Env>> = LazyLock::new(|| Arc::new(Env::stdlib()));

/// Evaluations running at once (see [`CONCURRENT_EVALUATIONS`]).
static EVALUATIONS: Semaphore = Semaphore::const_new(CONCURRENT_EVALUATIONS);

/// An expression the controller will not run, naming its field (e.g.
/// `spec.healthCheckExprs[0].current`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct CompileError {
    pub field: String,
    pub reason: String,
}

/// Why an evaluation gave no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvaluationError {
    /// CEL's own error, e.g. `No such key: conditions` for a field the object lacks yet.
    #[error("{0}")]
    Failed(String),
    #[error("it evaluated to {0}, not a bool")]
    NotABool(String),
    #[error("it did not finish within {0:?}")]
    TooSlow(std::time::Duration),
}

/// A compiled expression with its source and the field it came from.
#[derive(Clone, Debug)]
pub struct Expression {
    field: String,
    source: String,
    program: Arc<Program>,
}

impl Expression {
    /// Compiles `source`, read from `field`, or says why not: too long, the parser's message,
    /// or a shape [`super::bounds`] refuses.
    pub fn compile(field: impl Into<String>, source: &str) -> Result<Self, CompileError> {
        let field = field.into();
        let refuse = |reason: String| CompileError {
            field: field.clone(),
            reason,
        };
        // Code points, as the apiserver counts the CRD's maxLength.
        let length = source.chars().count();
        if length > MAX_EXPRESSION_LENGTH {
            return Err(refuse(format!(
                "the expression is {length} characters long; at most {MAX_EXPRESSION_LENGTH} are allowed"
            )));
        }
        let program = ENVIRONMENT
            .compile(source)
            .map_err(|errors| refuse(format!("the expression does not compile: {errors}")))?;
        check_shape(program.expression()).map_err(refuse)?;
        Ok(Self {
            field,
            source: source.to_owned(),
            program: Arc::new(program),
        })
    }

    /// The field it came from.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates to a bool with `variables` bound, on a blocking thread and within
    /// [`EVALUATION_TIME_LIMIT`] (waiting for a free slot included).
    pub async fn evaluate(
        &self,
        variables: Vec<(String, serde_json::Value)>,
    ) -> Result<bool, EvaluationError> {
        let program = self.program.clone();
        let bounded = async {
            let permit = EVALUATIONS
                .acquire()
                .await
                .map_err(|_| EvaluationError::Failed("the evaluator is shut down".into()))?;
            let running = tokio::task::spawn_blocking(move || {
                // Held until the evaluation really ends, even after its caller gave up on it.
                let _permit = permit;
                evaluate_now(&program, &variables)
            });
            running.await.map_err(|error| {
                EvaluationError::Failed(format!("the evaluation failed: {error}"))
            })?
        };
        tokio::time::timeout(EVALUATION_TIME_LIMIT, bounded)
            .await
            .unwrap_or(Err(EvaluationError::TooSlow(EVALUATION_TIME_LIMIT)))
    }

    /// [`Expression::evaluate`] on the calling thread, without a time limit: for tests and
    /// tools only.
    pub fn evaluate_blocking(
        &self,
        variables: &[(String, serde_json::Value)],
    ) -> Result<bool, EvaluationError> {
        evaluate_now(&self.program, variables)
    }
}

fn evaluate_now(
    program: &Program,
    variables: &[(String, serde_json::Value)],
) -> Result<bool, EvaluationError> {
    let mut context = Context::with_env(ENVIRONMENT.clone());
    for (name, value) in variables {
        context.add_variable_from_value(name.clone(), to_cel(value));
    }
    match program.execute(&context) {
        Ok(Value::Bool(verdict)) => Ok(verdict),
        Ok(other) => Err(EvaluationError::NotABool(format!("{other:?}"))),
        Err(error) => Err(EvaluationError::Failed(error.to_string())),
    }
}

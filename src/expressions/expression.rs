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
        let program = parse_and_check(source).map_err(refuse)?;
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
        self.evaluate_within(variables, EVALUATION_TIME_LIMIT).await
    }

    async fn evaluate_within(
        &self,
        variables: Vec<(String, serde_json::Value)>,
        limit: std::time::Duration,
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
        tokio::time::timeout(limit, bounded)
            .await
            .unwrap_or(Err(EvaluationError::TooSlow(limit)))
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

/// The stack of the thread that parses: cel-rust's ANTLR parser recurses once per nesting
/// level, and 400 nested parentheses (well within the length bound) overflow a 2 MiB stack,
/// which aborts the whole process. Only the pages a parse touches are ever committed.
const PARSER_STACK_BYTES: usize = 256 << 20;

/// Parses `source` and checks its shape on a thread of its own with [`PARSER_STACK_BYTES`]; a
/// tree refused for its depth is dropped there too (dropping recurses as deep as the tree).
/// It blocks the caller for the parse (a millisecond or so for 1024 characters), once per
/// reconcile of a revision.
fn parse_and_check(source: &str) -> Result<Program, String> {
    let source = source.to_owned();
    let parsing = std::thread::Builder::new()
        .name("cel-parse".into())
        .stack_size(PARSER_STACK_BYTES)
        .spawn(move || {
            let program = ENVIRONMENT
                .compile(&source)
                .map_err(|errors| format!("the expression does not compile: {errors}"))?;
            check_shape(program.expression())?;
            Ok(program)
        })
        .map_err(|error| format!("cannot start the parser: {error}"))?;
    parsing
        .join()
        .unwrap_or_else(|_| Err("the parser failed on this expression".into()))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn an_evaluation_past_its_time_limit_gives_no_verdict() {
        let expression = Expression::compile(
            "spec.healthCheckExprs[0].current",
            "spec.items.map(e, e * 2).exists(e, e < 0)",
        )
        .unwrap();
        let items: Vec<i64> = (0..200_000).collect();
        let variables = vec![("spec".to_owned(), json!({ "items": items }))];
        let slow = expression
            .evaluate_within(variables.clone(), Duration::from_micros(1))
            .await;
        assert_eq!(
            slow,
            Err(EvaluationError::TooSlow(Duration::from_micros(1)))
        );
        // Given its time, the same evaluation answers.
        assert_eq!(
            expression
                .evaluate_within(variables, Duration::from_secs(30))
                .await,
            Ok(false)
        );
    }

    /// Deep nesting within the length bound neither overflows a stack (which would abort the
    /// controller) nor slips through: refused, or compiled and evaluated as usual.
    #[tokio::test]
    async fn deep_nesting_within_the_length_bound_is_safe_to_compile_and_evaluate() {
        let deep = [
            format!("{}true{}", "(".repeat(511), ")".repeat(511)),
            format!("{}true", "!".repeat(1020)),
            format!("{}1 == 1", "-".repeat(1000)),
            format!("1{} == 1", " + 1".repeat(250)),
            format!("{}1{}", "[".repeat(511), "]".repeat(511)),
            format!("true{}", " ? true : true".repeat(70)),
            format!("spec{}", ".a".repeat(500)),
        ];
        for source in deep {
            let variables = vec![("spec".to_owned(), json!({}))];
            match Expression::compile("spec.dependsOn[0].readyExpr", &source) {
                Err(refused) => assert!(!refused.reason.is_empty()),
                Ok(expression) => {
                    let _ = expression.evaluate(variables).await;
                }
            }
        }
    }
}

//! Tenant-written CEL expressions (`spec.healthCheckExprs`, `spec.dependsOn[].readyExpr`):
//! compiled once per spec with cel-rust, checked against the bounds that keep one expression
//! from hanging or exhausting the controller, and evaluated off the async workers with a time
//! limit. Knows nothing of the controller; the API types are its only input.

mod bounds;
mod expression;
mod health;
mod ready;
mod values;

pub use bounds::EVALUATION_TIME_LIMIT;
pub use expression::{CompileError, EvaluationError, Expression};
pub use health::{HealthRules, Verdict};
pub use ready::ReadyExpr;

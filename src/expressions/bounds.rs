//! What a tenant's expression may ask of the controller.
//!
//! cel-rust has no cost limit, so the cost is bounded by the shape of the expression, checked
//! once when it is compiled, and by a time limit on each evaluation:
//! - its length ([`crate::api::MAX_EXPRESSION_LENGTH`]): without variables of its own
//!   (`cel.bind` is not offered), an expression can only grow values as far as its text
//!   spells out, so top-level work is linear in the object's size times the length;
//! - a macro (`all`, `exists`, `exists_one`, `map`, `filter`) may not hold another macro in
//!   its body: nesting multiplies the work (`a.all(x, a.all(y, ...))` is quadratic, three
//!   levels cubic). Chaining is fine: `filter(...).all(...)` is a sum, not a product;
//! - inside a macro's body, only calls that make no value larger than their operands: the
//!   comparisons, the logic, `in`, indexing and field tests, `size`, and the string tests.
//!   `+` (which copies lists and strings) and every other function are refused there, so no
//!   step can copy the whole object once per element (`a.map(e, data + data)`).
//!
//! - its depth ([`MAX_DEPTH`]), parsed on a thread with a large stack: the parser, the
//!   evaluator and dropping the tree all recurse once per level.
//!
//! Every evaluation still runs on a blocking thread with [`EVALUATION_TIME_LIMIT`], at most
//! [`CONCURRENT_EVALUATIONS`] at a time, as a backstop for what the shape rules do not foresee.

use std::time::Duration;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};

/// How long one evaluation may take before the object counts as unhealthy (or the dependency
/// as not ready) with that reason.
pub const EVALUATION_TIME_LIMIT: Duration = Duration::from_millis(500);

/// Evaluations running at once, so expressions that overrun their limit (a blocking thread
/// cannot be stopped) hold at most this many threads.
pub(super) const CONCURRENT_EVALUATIONS: usize = 4;

/// The calls allowed inside a macro's body.
const CALLS_IN_MACRO_BODIES: &[&str] = &[
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::SUBSTRACT,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::INDEX,
    operators::OPT_INDEX,
    operators::OPT_SELECT,
    operators::IN,
    operators::NOT_STRICTLY_FALSE,
    "size",
    "has",
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "int",
    "uint",
    "double",
    "bool",
    "timestamp",
    "duration",
    "hasValue",
    "orValue",
    "value",
];

/// The deepest expression tree accepted. The evaluator (and dropping the tree) recurses once
/// per level on a thread with an ordinary stack; 1024 characters can spell a thousand levels
/// (`!!!!…true`). Real health expressions are about ten deep.
pub const MAX_DEPTH: usize = 48;

/// Why an expression's shape is refused, in words for the status.
pub(super) fn check_shape(expression: &IdedExpr) -> Result<(), String> {
    walk(expression, false, 0)
}

/// Walks `expression`, `depth` levels down; `in_body` is true inside a macro's body.
fn walk(expression: &IdedExpr, in_body: bool, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the expression is nested more than {MAX_DEPTH} levels deep"
        ));
    }
    let depth = depth + 1;
    let walk = |expression: &IdedExpr, in_body: bool| walk(expression, in_body, depth);
    match &expression.expr {
        Expr::Comprehension(comprehension) => {
            if in_body {
                return Err(
                    "a macro (all, exists, exists_one, map, filter) inside another \
                            macro's body is not allowed: nested macros multiply the work"
                        .into(),
                );
            }
            walk(&comprehension.iter_range, false)?;
            walk(&comprehension.accu_init, false)?;
            walk(&comprehension.loop_cond, true)?;
            walk(&comprehension.loop_step, true)?;
            walk(&comprehension.result, true)
        }
        Expr::Call(call) => {
            let accumulates = call.func_name == operators::ADD && is_accumulator_step(call);
            if in_body && !accumulates && !CALLS_IN_MACRO_BODIES.contains(&call.func_name.as_str())
            {
                return Err(format!(
                    "`{}` is not allowed inside a macro's body, where it could copy the \
                     object once per element; use it outside the macro",
                    display_name(&call.func_name)
                ));
            }
            if let Some(target) = &call.target {
                walk(target, in_body)?;
            }
            call.args.iter().try_for_each(|arg| walk(arg, in_body))
        }
        Expr::Select(select) => walk(&select.operand, in_body),
        Expr::List(list) => list.elements.iter().try_for_each(|e| walk(e, in_body)),
        Expr::Map(map) => map.entries.iter().try_for_each(|entry| match &entry.expr {
            EntryExpr::MapEntry(entry) => {
                walk(&entry.key, in_body)?;
                walk(&entry.value, in_body)
            }
            EntryExpr::StructField(field) => walk(&field.value, in_body),
        }),
        Expr::Struct(strct) => strct
            .entries
            .iter()
            .try_for_each(|entry| match &entry.expr {
                EntryExpr::MapEntry(entry) => {
                    walk(&entry.key, in_body)?;
                    walk(&entry.value, in_body)
                }
                EntryExpr::StructField(field) => walk(&field.value, in_body),
            }),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}

/// `map` and `filter` expand to `@result + [element]` (or a conditional around it): the
/// macro's own accumulation, which cel-rust builds in place, not a copy per step.
fn is_accumulator_step(call: &cel::common::ast::CallExpr) -> bool {
    matches!(
        call.args.first().map(|first| &first.expr),
        Some(Expr::Ident(name)) if name.starts_with('@')
    )
}

/// `_+_` → `+`, `startsWith` stays.
fn display_name(function: &str) -> &str {
    function.trim_matches('_').trim_start_matches('@')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(source: &str) -> Result<(), String> {
        let program = cel::Env::stdlib().compile(source).expect("compiles");
        check_shape(program.expression())
    }

    #[test]
    fn flux_style_chains_of_macros_are_allowed() {
        shape("status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')").unwrap();
        shape("status.conditions.exists(e, e.type == 'Ready' && e.observedGeneration == metadata.generation)").unwrap();
        shape("status.conditions.map(e, e.type).exists(t, t.startsWith('Ready'))").unwrap();
        shape("size(status.?conditions.orValue([])) > 0").unwrap();
        shape("status.phase + '' == 'Ready'").unwrap();
    }

    #[test]
    fn a_macro_inside_a_macro_s_body_is_refused() {
        let refused = shape("spec.a.all(x, spec.a.all(y, x == y))").unwrap_err();
        assert!(refused.contains("inside another macro"), "{refused}");
        let refused = shape("spec.a.map(x, spec.a.filter(y, y == x))").unwrap_err();
        assert!(refused.contains("inside another macro"), "{refused}");
    }

    #[test]
    fn copying_calls_inside_a_macro_s_body_are_refused() {
        let refused = shape("spec.a.map(x, spec.a + spec.a)").unwrap_err();
        assert!(refused.contains("`+`"), "{refused}");
        let refused = shape("spec.a.all(x, string(x) != '')").unwrap_err();
        assert!(refused.contains("`string`"), "{refused}");
    }
}

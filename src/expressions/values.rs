//! JSON (as the API returns objects) to CEL values.

use std::{collections::HashMap, sync::Arc};

use cel::{Value, objects::Key};

/// `value` as CEL sees it. Integers become `int` whenever they fit, as the Kubernetes API's
/// own CEL does, so `status.replicas == 3` compares like with like.
pub(super) fn to_cel(value: &serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(number) => number
            .as_i64()
            .map(Value::Int)
            .or_else(|| number.as_u64().map(Value::UInt))
            .unwrap_or_else(|| Value::Float(number.as_f64().unwrap_or_default())),
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(to_cel).collect()))
        }
        serde_json::Value::Object(fields) => {
            let map: HashMap<Key, Value> = fields
                .iter()
                .map(|(name, value)| (Key::String(Arc::new(name.clone())), to_cel(value)))
                .collect();
            Value::Map(cel::objects::Map { map: Arc::new(map) })
        }
    }
}

//! Parses a policy document into a `serde_json::Value`, noting every object key that appears more
//! than once. `serde_json` keeps the last value of a repeated key without a word; in a policy
//! document a repeated key (two `allow_origins` lists) is almost always a mistake that would
//! silently drop half of what the user wrote, so the walker reports each one as an error.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The parsed document and the JSON paths of repeated keys, in document order.
pub struct Parsed {
    pub value: Value,
    pub repeated_keys: Vec<String>,
}

/// Parses `text` like `serde_json::from_str::<Value>` (same errors, same nesting limit).
pub fn parse(text: &str) -> Result<Parsed, serde_json::Error> {
    let mut repeated_keys = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Node {
        at: &Step::Root,
        repeated_keys: &mut repeated_keys,
    }
    .deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Parsed {
        value,
        repeated_keys,
    })
}

/// A key written after a `.` in a path (`[A-Za-z0-9_-]+`); others are quoted in brackets.
pub fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `prefix.field`, or `field` at the top level.
pub fn field_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// Where a value sits in the document, as a chain back to the root. Only written out as a path
/// when a repeated key is found, so a document without one formats no paths at all.
enum Step<'a> {
    Root,
    Key(&'a Step<'a>, &'a str),
    Index(&'a Step<'a>, usize),
}

impl Step<'_> {
    /// The path as the walker writes paths (`policies.partner.allow_origins[2]`,
    /// `policies["a b"]`).
    fn path(&self) -> String {
        match self {
            Step::Root => String::new(),
            Step::Key(parent, key) if is_plain_key(key) => field_path(&parent.path(), key),
            Step::Key(parent, key) => {
                format!("{}[{}]", parent.path(), Value::String((*key).to_owned()))
            }
            Step::Index(parent, index) => format!("{}[{index}]", parent.path()),
        }
    }
}

/// One value of the document, at `at`.
struct Node<'a> {
    at: &'a Step<'a>,
    repeated_keys: &'a mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let step = Step::Index(self.at, items.len());
            let item = Node {
                at: &step,
                repeated_keys: &mut *self.repeated_keys,
            };
            match seq.next_element_seed(item)? {
                Some(value) => items.push(value),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let step = Step::Key(self.at, &key);
            let value = map.next_value_seed(Node {
                at: &step,
                repeated_keys: &mut *self.repeated_keys,
            })?;
            if object.contains_key(&key) {
                self.repeated_keys.push(step.path());
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json_and_repeated_keys_with_paths() {
        let text = r#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "a b": {"c": 1, "c": 2},
            "a": {"d": [{"e": 1, "e": 2}]}}"#;
        let parsed = parse(text).unwrap();
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parsed.value, expected);
        assert_eq!(parsed.repeated_keys, [r#"["a b"].c"#, "a.d[0].e", "a"]);
    }

    #[test]
    fn errors_are_serde_json_errors() {
        for text in ["", "{", "[1,]", "{} x", "1e400", &"[".repeat(200)] {
            let ours = parse(text).err().map(|e| e.to_string());
            let theirs = serde_json::from_str::<Value>(text)
                .err()
                .map(|e| e.to_string());
            assert_eq!(ours, theirs, "{text:?}");
        }
    }
}

//! Properties of the line parser and the flattener over generated input.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use auditspan::attr::AttrValue;
use auditspan::event::flatten::flatten;
use auditspan::event::{ParseLimits, parse_line};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(8, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-c.]{0,3}|.{0,6}", inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn any_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(("[a-c.]{0,3}|.{0,6}", any_json()), 0..8)
        .prop_map(|members| members.into_iter().collect())
}

fn any_limits() -> impl Strategy<Value = ParseLimits> {
    // Numbers and bools are never cut, so the value limit must hold one number.
    (1usize..12, 0usize..40, 8usize..64).prop_map(|(max_depth, max_attributes, max_value_bytes)| {
        ParseLimits {
            max_depth,
            max_attributes,
            max_value_bytes,
        }
    })
}

/// A non-null scalar leaf whose flattened form is known exactly.
fn typed_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
    ]
}

fn dotless_tree() -> impl Strategy<Value = Value> {
    typed_leaf().prop_recursive(5, 48, 5, |inner| {
        prop::collection::btree_map("[a-z_ /]{0,5}", inner, 0..5)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn expected_leaves(prefix: Option<&str>, value: &Value, out: &mut Vec<(String, AttrValue)>) {
    let key = |k: &str| match prefix {
        None => k.to_owned(),
        Some(p) => format!("{p}.{k}"),
    };
    if let Value::Object(m) = value {
        for (k, v) in m {
            match v {
                Value::Object(_) => expected_leaves(Some(&key(k)), v, out),
                Value::Bool(b) => out.push((key(k), AttrValue::Bool(*b))),
                Value::String(s) => out.push((key(k), AttrValue::Str(s.clone()))),
                Value::Number(n) => {
                    let expected = if let Some(i) = n.as_i64() {
                        AttrValue::Int(i)
                    } else if let Some(u) = n.as_u64() {
                        AttrValue::Str(u.to_string())
                    } else {
                        AttrValue::Float(n.as_f64().unwrap())
                    };
                    out.push((key(k), expected));
                }
                _ => unreachable!("the generator makes no nulls or arrays"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any object flattens, with unique keys and every limit respected.
    #[test]
    fn any_object_flattens_within_limits(obj in any_object(), limits in any_limits()) {
        let text = serde_json::to_string(&Value::Object(obj)).unwrap();
        let flat = flatten(&text, &limits).unwrap();
        let mut keys = HashSet::new();
        for (k, v) in &flat.attributes {
            prop_assert!(keys.insert(k), "duplicate key {:?}", k);
            prop_assert!(v.byte_len() <= limits.max_value_bytes, "{:?} too long", k);
        }
        prop_assert!(flat.attributes.len() <= limits.max_attributes);
    }

    /// The same object with default limits and pretty-printed whitespace gives the same
    /// attributes: whitespace is insignificant.
    #[test]
    fn whitespace_does_not_matter(obj in any_object()) {
        let value = Value::Object(obj);
        let compact = serde_json::to_string(&value).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let limits = ParseLimits::default();
        prop_assert_eq!(flatten(&compact, &limits).unwrap(), flatten(&pretty, &limits).unwrap());
    }

    /// Scalar leaves under dot-free keys come back with their exact typed value, in order.
    #[test]
    fn scalar_leaves_round_trip(tree in dotless_tree()) {
        let Value::Object(_) = &tree else { return Ok(()) };
        let text = serde_json::to_string(&tree).unwrap();
        let limits = ParseLimits { max_depth: 32, max_attributes: 10_000, max_value_bytes: 1 << 20 };
        let flat = flatten(&text, &limits).unwrap();
        let mut expected = Vec::new();
        expected_leaves(None, &tree, &mut expected);
        prop_assert_eq!(flat.attributes.len(), expected.len());
        for ((k, v), (ek, ev)) in flat.attributes.iter().zip(&expected) {
            prop_assert_eq!(k, ek);
            match (v.to_value(), ev) {
                (AttrValue::Float(a), AttrValue::Float(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                (v, ev) => prop_assert_eq!(&v, ev),
            }
        }
        prop_assert_eq!(flat.truncations, Default::default());
    }

    /// Arbitrary bytes never panic the parser.
    #[test]
    fn arbitrary_bytes_never_panic(line in prop::collection::vec(any::<u8>(), 0..256)) {
        parse_line(&line, "", &ParseLimits::default()).ok();
        parse_line(&line, "{", &ParseLimits::default()).ok();
    }

    /// Arbitrary text behind an arbitrary prefix never panics, with or without the prefix
    /// configured.
    #[test]
    fn prefixed_text_never_panics(prefix in ".{0,8}", body in ".{0,64}", obj in any_object()) {
        let json = serde_json::to_string(&Value::Object(obj)).unwrap();
        for text in [format!("{prefix}{body}"), format!("{prefix}{json}")] {
            parse_line(text.as_bytes(), &prefix, &ParseLimits::default()).ok();
            parse_line(text.as_bytes(), "", &ParseLimits::default()).ok();
        }
    }

    /// A valid event behind its prefix parses whatever the other members hold.
    #[test]
    fn valid_events_parse(obj in any_object(), prefix in "[^{]{0,6}") {
        let mut event = Map::new();
        event.insert("type".into(), Value::from("request"));
        event.insert("time".into(), Value::from("2025-03-11T16:00:00.5Z"));
        event.insert("request".into(), serde_json::json!({"id": "r-1", "path": "kv/x"}));
        for (k, v) in obj {
            event.entry(k).or_insert(v);
        }
        let line = format!("{prefix}{}", serde_json::to_string(&Value::Object(event)).unwrap());
        let parsed = parse_line(line.as_bytes(), &prefix, &ParseLimits::default());
        prop_assert!(parsed.is_ok(), "{:?}", parsed);
    }
}

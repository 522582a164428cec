//! Span attributes: flattened audit-event fields with their JSON types kept.
//!
//! An attribute list is a `Vec` in document order with unique keys; the flattener
//! guarantees uniqueness, span assembly keeps it.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// One attribute value. Integers outside `i64` never reach here: the flattener turns them
/// into decimal strings so that no digit is lost.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    StrArray(Vec<String>),
    BoolArray(Vec<bool>),
    IntArray(Vec<i64>),
    FloatArray(Vec<f64>),
}

/// Attributes in document order, keys unique.
pub type Attributes = Vec<(String, AttrValue)>;

impl AttrValue {
    /// Bytes this value occupies for the span size limits: string bytes, 8 per number,
    /// 1 per bool; arrays add up their elements.
    pub fn byte_len(&self) -> usize {
        match self {
            AttrValue::Str(s) => s.len(),
            AttrValue::Bool(_) => 1,
            AttrValue::Int(_) | AttrValue::Float(_) => 8,
            AttrValue::StrArray(v) => v.iter().map(String::len).sum(),
            AttrValue::BoolArray(v) => v.len(),
            AttrValue::IntArray(v) => v.len() * 8,
            AttrValue::FloatArray(v) => v.len() * 8,
        }
    }

    /// Shrinks `value` to at most `max_bytes` (strings at a char boundary, arrays by dropping
    /// trailing elements). Numbers and bools are left as they are.
    pub fn truncate(&mut self, max_bytes: usize) {
        fn cut_str(s: &mut String, max: usize) {
            if s.len() > max {
                let mut end = max;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        }
        match self {
            AttrValue::Str(s) => cut_str(s, max_bytes),
            AttrValue::StrArray(v) => {
                let mut used = 0;
                let mut keep = 0;
                for s in v.iter_mut() {
                    if used + s.len() > max_bytes {
                        if keep == 0 {
                            cut_str(s, max_bytes);
                            keep = 1;
                        }
                        break;
                    }
                    used += s.len();
                    keep += 1;
                }
                v.truncate(keep);
            }
            AttrValue::BoolArray(v) => v.truncate(max_bytes),
            AttrValue::IntArray(v) => v.truncate(max_bytes / 8),
            AttrValue::FloatArray(v) => v.truncate(max_bytes / 8),
            AttrValue::Bool(_) | AttrValue::Int(_) | AttrValue::Float(_) => {}
        }
    }
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        fn seq<S: Serializer, T: Serialize>(s: S, items: &[T]) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in items {
                seq.serialize_element(item)?;
            }
            seq.end()
        }
        match self {
            AttrValue::Str(v) => s.serialize_str(v),
            AttrValue::Bool(v) => s.serialize_bool(*v),
            AttrValue::Int(v) => s.serialize_i64(*v),
            AttrValue::Float(v) => s.serialize_f64(*v),
            AttrValue::StrArray(v) => seq(s, v),
            AttrValue::BoolArray(v) => seq(s, v),
            AttrValue::IntArray(v) => seq(s, v),
            AttrValue::FloatArray(v) => seq(s, v),
        }
    }
}

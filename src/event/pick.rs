//! The fields the correlator needs, picked out of an audit event while it is flattened.
//!
//! This is the Vault-specific part of the walk: which paths are watched lives here only.
//! The flattener walks any JSON object; at each value it tells [`Picked`] where it is (a
//! `Slot`, derived member by member with `Slot::child`) and what it found there.
//!
//! Watched paths: `type`, `time`, `error`, `request.id`, `request.operation`,
//! `request.path`, `request.mount_point`, `request.namespace.path` and the first element
//! of `request.headers.traceparent`.
//!
//! # Invariants
//! - Picks ignore the limits: whatever `max_depth`, `max_attributes` or
//!   `max_value_bytes` cut from the attributes, the picked values are complete. A parent
//!   of a watched path that lies below the depth limit is walked again, for the picks
//!   alone (`Picked::captured`); that walk follows `Slot`, at most four levels deep.
//! - The first occurrence of a watched path wins, as for duplicate members and key
//!   collisions in the attributes.
//! - A watched path holding something other than a string records that value's JSON type
//!   ([`Pick::Other`]), so that a rejection can say "request.id is a number" without
//!   quoting the line.
//! - `traceparent` is picked only as the first element of an array (Vault writes every
//!   audited header as an array of strings); a bare string there is `Other("string")`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::flatten::{KeySeed, Walk, raw_str};

/// What the walk found at one watched path.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Pick<'de> {
    #[default]
    Absent,
    Str(Cow<'de, str>),
    /// Present but not a string: the JSON type's name (`"number"`, `"object"`, …).
    Other(&'static str),
}

impl<'de> Pick<'de> {
    /// The string, if present and a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Pick::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn into_string(self) -> Option<String> {
        match self {
            Pick::Str(s) => Some(s.into_owned()),
            _ => None,
        }
    }
}

/// The fields the correlator needs, first occurrence of each.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Picked<'de> {
    /// Top-level `type`.
    pub event_type: Pick<'de>,
    /// Top-level `time`.
    pub time: Pick<'de>,
    /// Top-level `error`.
    pub error: Pick<'de>,
    pub request_id: Pick<'de>,
    pub operation: Pick<'de>,
    pub path: Pick<'de>,
    pub mount_point: Pick<'de>,
    /// `request.namespace.path`.
    pub namespace_path: Pick<'de>,
    /// First element of `request.headers.traceparent`, when the value is an array.
    pub traceparent: Pick<'de>,
}

/// Where a value sits relative to the picked paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// Not on the way to a picked path.
    None,
    /// The event itself, the top-level object.
    Root,
    Request,
    Namespace,
    Headers,
    Type,
    Time,
    Error,
    Id,
    Operation,
    Path,
    MountPoint,
    NamespacePath,
    Traceparent,
}

impl Slot {
    /// The slot of the member `name` of an object at `self`.
    pub(super) fn child(self, name: &str) -> Slot {
        match self {
            Slot::None => Slot::None,
            Slot::Root => match name {
                "type" => Slot::Type,
                "time" => Slot::Time,
                "error" => Slot::Error,
                "request" => Slot::Request,
                _ => Slot::None,
            },
            Slot::Request => match name {
                "id" => Slot::Id,
                "operation" => Slot::Operation,
                "path" => Slot::Path,
                "mount_point" => Slot::MountPoint,
                "namespace" => Slot::Namespace,
                "headers" => Slot::Headers,
                _ => Slot::None,
            },
            Slot::Namespace if name == "path" => Slot::NamespacePath,
            Slot::Headers if name == "traceparent" => Slot::Traceparent,
            _ => Slot::None,
        }
    }

    /// An object on the way to a picked field.
    fn is_parent(self) -> bool {
        matches!(
            self,
            Slot::Root | Slot::Request | Slot::Namespace | Slot::Headers
        )
    }

    fn is_leaf(self) -> bool {
        !matches!(self, Slot::None) && !self.is_parent()
    }
}

impl<'de> Picked<'de> {
    /// Records `value` for the field at `slot`, unless the field has one already; a slot
    /// that is no picked field records nothing.
    fn set(&mut self, slot: Slot, value: Pick<'de>) {
        let field = match slot {
            Slot::Type => &mut self.event_type,
            Slot::Time => &mut self.time,
            Slot::Error => &mut self.error,
            Slot::Id => &mut self.request_id,
            Slot::Operation => &mut self.operation,
            Slot::Path => &mut self.path,
            Slot::MountPoint => &mut self.mount_point,
            Slot::NamespacePath => &mut self.namespace_path,
            Slot::Traceparent => &mut self.traceparent,
            _ => return,
        };
        if *field == Pick::Absent {
            *field = value;
        }
    }

    /// A value at `slot` that is no string: the name of its JSON type.
    pub(super) fn other(&mut self, slot: Slot, type_name: &'static str) {
        self.set(slot, Pick::Other(type_name));
    }

    /// A string value at `slot` (`traceparent` is picked only from an array).
    pub(super) fn string(&mut self, slot: Slot, value: impl FnOnce() -> Cow<'de, str>) {
        match slot {
            Slot::Traceparent => self.set(slot, Pick::Other("string")),
            _ if slot.is_leaf() => self.set(slot, Pick::Str(value())),
            _ => {}
        }
    }

    /// An array at `slot`, given its first element: `traceparent` takes that element when
    /// it is a string. Fails only on a string that does not decode (a lone surrogate).
    pub(super) fn array(
        &mut self,
        slot: Slot,
        first: Option<&'de RawValue>,
    ) -> Result<(), serde_json::Error> {
        match first {
            Some(e) if slot == Slot::Traceparent && e.get().starts_with('"') => {
                let s = raw_str(e.get())?;
                self.set(slot, Pick::Str(s));
            }
            _ => self.other(slot, "array"),
        }
        Ok(())
    }

    /// An object or array at `slot` that lies below the depth limit and is kept as its
    /// `text`: walked again for the picked fields below it, or recorded as what it is.
    pub(super) fn captured(
        &mut self,
        walk: &mut Walk,
        slot: Slot,
        text: &'de str,
    ) -> Result<(), serde_json::Error> {
        if slot.is_parent() || slot == Slot::Traceparent {
            let mut de = serde_json::Deserializer::from_str(text);
            de.disable_recursion_limit();
            PickSeed {
                picked: self,
                walk,
                slot,
            }
            .deserialize(&mut de)
        } else {
            self.other(
                slot,
                if text.starts_with('{') {
                    "object"
                } else {
                    "array"
                },
            );
            Ok(())
        }
    }
}

/// Walks captured text only for the picked fields (used when a parent of a picked field
/// lies below the depth limit). Its recursion follows [`Slot`], at most four levels.
struct PickSeed<'a, 'de> {
    picked: &'a mut Picked<'de>,
    walk: &'a mut Walk,
    slot: Slot,
}

impl<'de> DeserializeSeed<'de> for PickSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PickSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.picked.other(self.slot, "bool");
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.picked.other(self.slot, "number");
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.picked.other(self.slot, "number");
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.picked.other(self.slot, "number");
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.picked.other(self.slot, "null");
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.picked.string(self.slot, || Cow::Borrowed(v));
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.picked.string(self.slot, || Cow::Owned(v.to_owned()));
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let first = if self.slot == Slot::Traceparent {
            seq.next_element::<&'de RawValue>()?
        } else {
            None
        };
        self.picked
            .array(self.slot, first)
            .map_err(|e| self.walk.nested(e))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let PickSeed { picked, walk, slot } = self;
        let mut first = true;
        let mut seen: Vec<Slot> = Vec::new();
        while let Some(name) = map.next_key_seed(KeySeed)? {
            if std::mem::take(&mut first) && walk.is_number_marker(&name) {
                map.next_value::<IgnoredAny>()?;
                picked.other(slot, "number");
                return Ok(());
            }
            let child = if slot.is_parent() {
                slot.child(&name)
            } else {
                Slot::None
            };
            if child == Slot::None || seen.contains(&child) {
                map.next_value::<IgnoredAny>()?;
            } else {
                seen.push(child);
                map.next_value_seed(PickSeed {
                    picked: &mut *picked,
                    walk: &mut *walk,
                    slot: child,
                })?;
            }
        }
        picked.other(slot, "object");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ParseLimits;
    use crate::event::flatten::flatten;

    #[test]
    fn picks_ignore_limits_and_order() {
        let lim = ParseLimits {
            max_depth: 1,
            max_attributes: 0,
            max_value_bytes: 1,
        };
        let json = r#"{"auth":{},"request":{"headers":{"traceparent":["00-ab","x"]},"id":"r1","namespace":{"path":"ns/"},
            "mount_point":"kv/","operation":"read","path":"kv/x"},"time":"t","type":"request","error":"e"}"#;
        let f = flatten(json, &lim).unwrap();
        let p = &f.picked;
        assert_eq!(p.event_type.as_str(), Some("request"));
        assert_eq!(p.time.as_str(), Some("t"));
        assert_eq!(p.error.as_str(), Some("e"));
        assert_eq!(p.request_id.as_str(), Some("r1"));
        assert_eq!(p.operation.as_str(), Some("read"));
        assert_eq!(p.path.as_str(), Some("kv/x"));
        assert_eq!(p.mount_point.as_str(), Some("kv/"));
        assert_eq!(p.namespace_path.as_str(), Some("ns/"));
        assert_eq!(p.traceparent.as_str(), Some("00-ab"));
        assert!(f.attributes.is_empty());
        // The same at full depth.
        let f = flatten(json, &ParseLimits::default()).unwrap();
        assert_eq!(f.picked, *p);
    }

    #[test]
    fn picks_report_wrong_types() {
        let f = flatten(
            r#"{"type":5,"request":{"id":{"a":1},"path":["x"],"headers":{"traceparent":"x"}}}"#,
            &ParseLimits::default(),
        )
        .unwrap();
        assert_eq!(f.picked.event_type, Pick::Other("number"));
        assert_eq!(f.picked.request_id, Pick::Other("object"));
        assert_eq!(f.picked.path, Pick::Other("array"));
        assert_eq!(f.picked.traceparent, Pick::Other("string"));
        assert_eq!(f.picked.time, Pick::Absent);
    }
}

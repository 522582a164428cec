//! One JSON object → span attributes, in a single streaming pass.
//!
//! Implements DESIGN "Span contract → Flattening". The text is walked once with serde
//! visitors on `serde_json::Deserializer`; no `serde_json::Value` tree is built. The walk
//! knows nothing of Vault: at each value it tells [`Picked`] where it is and what it
//! found, and `pick` keeps the fields the correlator needs, whatever the limits cut from the
//! attributes.
//!
//! # Invariants
//! - Keys in the output are unique and in document order. A key produced twice (a literal
//!   `"a.b"` beside nested `a.b`) keeps the first value. A member name repeated in one object
//!   (`{"type":"request","type":"response"}`) keeps the FIRST member: later ones are skipped
//!   whole, for attributes and picks alike. (serde_json's own `Value` keeps the last; Go
//!   never writes duplicates, and first-wins matches the collision rule.)
//! - Stack use is bounded by `max_depth` (capped at [`DEPTH_CAP`]), not by the input: an
//!   object or array nested deeper is captured as `&RawValue` (serde_json skips values
//!   iteratively) and kept as one JSON-string attribute, counted in [`Truncations::depth`].
//! - Limits truncate and count, they never fail: past `max_attributes` attributes are
//!   dropped and counted; string values (also the digits of a big integer and JSON-string
//!   attributes) are cut to `max_value_bytes` at a char boundary; arrays lose trailing
//!   elements until they fit (a single too-long first string is cut). Numbers and bools are
//!   never cut, so `max_value_bytes` should be at least 8.
//!
//! # Values
//! - string → `Str`, bool → `Bool`, integer within `i64` → `Int`, other numbers → `Float`.
//!   Integers outside `i64` → `Str` holding the digits as written. `-0` → `Float(-0.0)`
//!   (only a float can be negative zero; Go writes `-0` for the float). A float that
//!   overflows `f64` (`1e400`) → `Str` with its text, since `Float(inf)` has no JSON form.
//! - `null`, `{}`, `[]` → no attribute.
//! - Arrays of strings / bools / `i64` integers / floats → one typed array attribute (an
//!   integer outside `i64` counts as a string). Arrays of objects → index keys
//!   (`a.0.name`). Any other array (mixed types, nulls, nested arrays) → one JSON-string
//!   attribute.
//! - JSON-string attributes are the source text with insignificant whitespace removed;
//!   escapes and number spellings are kept as written. Inside a subtree kept this way
//!   escapes are only syntax-checked (serde_json does not decode what it skips).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::BuildHasher;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::pick::{Picked, Slot};
use super::{ParseLimits, Truncations};
use crate::attr::{Attributes, TextFull};

/// Upper bound on the effective `max_depth`, whatever the configuration says: each level
/// costs a few stack frames of our own recursion, and 128 levels fit comfortably in a 2 MiB
/// thread stack (serde_json's own default limit is 128).
pub const DEPTH_CAP: usize = 128;

/// The map key serde_json (feature `arbitrary_precision`) uses to hand over a number that
/// fits neither `u64` nor `i64`, as a one-entry map whose value is the number's text.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Objects with more members than this check duplicate names with a hash set instead of
/// a linear scan, so that a huge object costs O(n), not O(n²).
const LINEAR_SIBLINGS: usize = 16;

/// The object could not be flattened: it is not JSON or not an object. `detail` never
/// quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct FlattenError {
    pub detail: String,
}

/// A flattened object.
#[derive(Debug, Clone, PartialEq)]
pub struct Flattened<'de> {
    pub attributes: Attributes,
    pub truncations: Truncations,
    pub picked: Picked<'de>,
}

/// Flattens the JSON object `json` (surrounding whitespace allowed, nothing else).
pub fn flatten<'de>(json: &'de str, limits: &ParseLimits) -> Result<Flattened<'de>, FlattenError> {
    let mut fl = Flattener::new(json, limits);
    let mut de = serde_json::Deserializer::from_str(json);
    // Our own recursion stops at max_depth; below it serde_json only skips, iteratively.
    de.disable_recursion_limit();
    let walked = ValueSeed {
        fl: &mut fl,
        depth: 0,
        slot: Slot::Root,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match walked {
        Ok(()) => Ok(Flattened {
            attributes: fl.attrs,
            truncations: fl.trunc,
            picked: fl.picked,
        }),
        Err(e) => Err(FlattenError {
            detail: fl.walk.failure.take().unwrap_or_else(|| describe(&e)),
        }),
    }
}

/// serde_json's syntax messages are fixed texts plus a position; data errors may quote the
/// offending value (`invalid type: string "…"`), so they get a generic text.
fn describe(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Data => {
            format!(
                "unexpected JSON value at line {} column {}",
                e.line(),
                e.column()
            )
        }
        _ => e.to_string(),
    }
}

/// What every walk over one input shares, the flattener's and the picker's.
pub(super) struct Walk {
    /// Address range of the input, to tell serde_json's number marker (a static string)
    /// from a real member of that name (borrowed from the input or unescaped).
    input: std::ops::Range<usize>,
    /// Our own error text, when we stopped the walk.
    failure: Option<String>,
}

impl Walk {
    fn new(json: &str) -> Walk {
        let start = json.as_ptr() as usize;
        Walk {
            input: start..start + json.len(),
            failure: None,
        }
    }

    fn fail<E: de::Error>(&mut self, msg: &str) -> E {
        if self.failure.is_none() {
            self.failure = Some(msg.to_owned());
        }
        E::custom(msg)
    }

    /// A serde_json error from a nested walk over captured text.
    pub(super) fn nested<E: de::Error>(&mut self, e: serde_json::Error) -> E {
        if self.failure.is_none() {
            self.failure = Some(describe(&e));
        }
        E::custom("invalid JSON in a captured value")
    }

    #[expect(
        clippy::ptr_arg,
        reason = "borrowed vs owned is what tells the marker apart"
    )]
    pub(super) fn is_number_marker(&self, name: &Cow<'_, str>) -> bool {
        match name {
            Cow::Borrowed(s) => *s == NUMBER_TOKEN && !self.input.contains(&(s.as_ptr() as usize)),
            Cow::Owned(_) => false,
        }
    }
}

struct Flattener<'de> {
    walk: Walk,
    max_depth: usize,
    max_attributes: usize,
    max_value_bytes: usize,
    attrs: Attributes,
    trunc: Truncations,
    picked: Picked<'de>,
    /// The current key path; members push `.name`, and truncate back when done.
    key: String,
    /// Hashes of the emitted keys, built only once a member name contains a dot: without
    /// dots, distinct paths join to distinct keys, and duplicate members are skipped, so
    /// no check is needed on the common path.
    seen: Option<(HashSet<u64>, std::collections::hash_map::RandomState)>,
    /// Member names of the objects being walked, a stack of per-object runs.
    siblings: Vec<Cow<'de, str>>,
    /// Array elements being classified, a stack of per-array runs.
    elems: Vec<&'de RawValue>,
    /// A JSON-string attribute being assembled (compacted subtrees, mixed arrays) before
    /// it is cut and copied into `attrs`; empty until the first one.
    scratch: String,
}

impl<'de> Flattener<'de> {
    fn new(json: &'de str, limits: &ParseLimits) -> Self {
        Flattener {
            walk: Walk::new(json),
            max_depth: limits.max_depth.clamp(1, DEPTH_CAP),
            max_attributes: limits.max_attributes,
            max_value_bytes: limits.max_value_bytes,
            // The text is the input's strings plus the key paths: about the input's length
            // (Vault events: 0.95–1.25×). A quarter more is rarely regrown, and leaves the
            // correlator room for the request-only attributes and its own.
            attrs: Attributes::with_capacity(
                limits.max_attributes.min(96),
                json.len() + json.len() / 4 + 64,
            ),
            trunc: Truncations::default(),
            picked: Picked::default(),
            key: String::with_capacity(128),
            seen: None,
            siblings: Vec::with_capacity(32),
            elems: Vec::with_capacity(32),
            scratch: String::new(),
        }
    }

    /// Registers `name` as a member of the object whose names start at `start`; false when
    /// the object already had a member of that name.
    #[expect(clippy::ptr_arg, reason = "the name is stored as the Cow it is")]
    fn first_member(
        &mut self,
        start: usize,
        name: &Cow<'de, str>,
        big: &mut Option<HashSet<Cow<'de, str>>>,
    ) -> bool {
        if let Some(set) = big {
            return set.insert(name.clone());
        }
        let run = &self.siblings[start..];
        if run.iter().any(|s| s == name) {
            return false;
        }
        if run.len() >= LINEAR_SIBLINGS {
            let mut set: HashSet<Cow<'de, str>> = self.siblings.drain(start..).collect();
            set.insert(name.clone());
            *big = Some(set);
        } else {
            self.siblings.push(name.clone());
        }
        true
    }

    fn start_checking_keys(&mut self) {
        if self.seen.is_none() {
            let state = std::collections::hash_map::RandomState::new();
            let set = self.attrs.keys().map(|k| state.hash_one(k)).collect();
            self.seen = Some((set, state));
        }
    }

    /// Whether an attribute under the current key may be added; counts what the
    /// attribute limit drops.
    fn admit(&mut self) -> bool {
        if let Some((set, state)) = &mut self.seen {
            let hash = state.hash_one(self.key.as_str());
            if set.contains(&hash) && self.attrs.contains_key(&self.key) {
                return false;
            }
            if self.attrs.len() >= self.max_attributes {
                self.trunc.attributes += 1;
                return false;
            }
            set.insert(hash);
            return true;
        }
        if self.attrs.len() >= self.max_attributes {
            self.trunc.attributes += 1;
            return false;
        }
        true
    }

    /// Accounts for a push into `attrs`: one the text cap refused counts as dropped, like
    /// one past `max_attributes`.
    fn stored(&mut self, pushed: Result<(), TextFull>) {
        if pushed.is_err() {
            self.trunc.attributes += 1;
        }
    }

    fn push_str(&mut self, value: &str) {
        let pushed = self.attrs.push_str(&self.key, value);
        self.stored(pushed);
    }

    fn push_bool(&mut self, value: bool) {
        let pushed = self.attrs.push_bool(&self.key, value);
        self.stored(pushed);
    }

    fn push_int(&mut self, value: i64) {
        let pushed = self.attrs.push_int(&self.key, value);
        self.stored(pushed);
    }

    fn push_float(&mut self, value: f64) {
        let pushed = self.attrs.push_float(&self.key, value);
        self.stored(pushed);
    }

    /// Pushes `scratch`, cut to `max_value_bytes`, as a string attribute.
    fn push_scratch(&mut self) {
        let mut end = self.scratch.len();
        if end > self.max_value_bytes {
            self.trunc.value_bytes += 1;
            end = self.scratch.floor_char_boundary(self.max_value_bytes);
        }
        let pushed = self.attrs.push_str(&self.key, &self.scratch[..end]);
        self.stored(pushed);
    }

    fn cut<'s>(&mut self, s: &'s str) -> &'s str {
        if s.len() <= self.max_value_bytes {
            return s;
        }
        self.trunc.value_bytes += 1;
        &s[..s.floor_char_boundary(self.max_value_bytes)]
    }

    fn emit_str(&mut self, s: &str) {
        if self.admit() {
            let s = self.cut(s);
            self.push_str(s);
        }
    }

    fn emit_number_text(&mut self, text: &str) {
        if !self.admit() {
            return;
        }
        match classify_number(text) {
            Num::Int(v) => self.push_int(v),
            Num::Float(v) => self.push_float(v),
            Num::Text => {
                let s = self.cut(text);
                self.push_str(s);
            }
        }
    }

    /// A value below the depth limit, captured as text.
    fn emit_raw(
        &mut self,
        raw: &'de RawValue,
        depth: usize,
        slot: Slot,
    ) -> Result<(), serde_json::Error> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{' | b'[') => {
                self.picked.captured(&mut self.walk, slot, text)?;
                if text[1..text.len() - 1].trim_ascii().is_empty() {
                    return Ok(());
                }
                if self.admit() {
                    self.trunc.depth += 1;
                    self.scratch.clear();
                    compact_into(&mut self.scratch, text);
                    self.push_scratch();
                }
                Ok(())
            }
            _ => {
                let mut de = serde_json::Deserializer::from_str(text);
                de.disable_recursion_limit();
                ValueSeed {
                    fl: self,
                    depth,
                    slot,
                }
                .deserialize(&mut de)
            }
        }
    }

    /// The elements `self.elems[start..]` of an array whose elements sit at `depth`.
    fn emit_array(
        &mut self,
        start: usize,
        depth: usize,
        slot: Slot,
    ) -> Result<(), serde_json::Error> {
        let end = self.elems.len();
        self.picked.array(slot, self.elems.get(start).copied())?;
        if start == end {
            return Ok(());
        }
        let mut kind = Kind::of(self.elems[start].get());
        for e in &self.elems[start + 1..end] {
            if Kind::of(e.get()) != kind {
                kind = Kind::Mixed;
                break;
            }
        }
        // Objects that would sit below max_depth: keep the array whole.
        let depth_cut = kind == Kind::Object && depth >= self.max_depth;
        if depth_cut {
            kind = Kind::Mixed;
        }
        match kind {
            Kind::Object => {
                let base = self.key.len();
                for (i, index) in (start..end).enumerate() {
                    let text = self.elems[index].get();
                    self.key.push('.');
                    push_index(&mut self.key, i);
                    let mut de = serde_json::Deserializer::from_str(text);
                    de.disable_recursion_limit();
                    ValueSeed {
                        fl: self,
                        depth,
                        slot: Slot::None,
                    }
                    .deserialize(&mut de)?;
                    self.key.truncate(base);
                }
            }
            Kind::Mixed => {
                if self.admit() {
                    if depth_cut {
                        self.trunc.depth += 1;
                    }
                    let s = &mut self.scratch;
                    s.clear();
                    s.push('[');
                    for (i, e) in self.elems[start..end].iter().enumerate() {
                        if i > 0 {
                            s.push(',');
                        }
                        compact_into(s, e.get());
                    }
                    s.push(']');
                    self.push_scratch();
                }
            }
            Kind::Str => {
                if self.admit() {
                    let max = self.max_value_bytes;
                    let mut out = match self.attrs.push_str_array(&self.key) {
                        Ok(out) => out,
                        Err(TextFull) => {
                            self.trunc.attributes += 1;
                            return Ok(());
                        }
                    };
                    let mut total = 0usize;
                    for (i, e) in self.elems[start..end].iter().enumerate() {
                        let text = e.get();
                        let s: Cow<'_, str> = if text.starts_with('"') {
                            raw_str(text)?
                        } else {
                            Cow::Borrowed(text)
                        };
                        if total + s.len() > max {
                            self.trunc.value_bytes += 1;
                            if i == 0 {
                                // Only the text cap can refuse this; the array then stays
                                // empty, a cut already counted.
                                out.push(&s[..s.floor_char_boundary(max)]).ok();
                            }
                            break;
                        }
                        if out.push(&s).is_err() {
                            // Past the text cap the rest is left out, like a cut.
                            self.trunc.value_bytes += 1;
                            break;
                        }
                        total += s.len();
                    }
                }
            }
            Kind::Bool => self.emit_fixed_array::<bool>(start, end),
            Kind::Int => self.emit_fixed_array::<i64>(start, end),
            Kind::Float => self.emit_fixed_array::<f64>(start, end),
            Kind::Null => {
                // All nulls: a JSON-string like any array holding nulls.
                if self.admit() {
                    let s = &mut self.scratch;
                    s.clear();
                    s.push_str("[null");
                    for _ in start + 1..end {
                        s.push_str(",null");
                    }
                    s.push(']');
                    self.push_scratch();
                }
            }
        }
        Ok(())
    }

    /// The elements `self.elems[start..end]`, all of type `T`, as one typed array
    /// attribute: as many as fit in `max_value_bytes` at `T::SIZE` bytes each, a cut
    /// counted.
    fn emit_fixed_array<T: FixedElem>(&mut self, start: usize, end: usize) {
        if !self.admit() {
            return;
        }
        let fit = self.max_value_bytes / T::SIZE;
        if end - start > fit {
            self.trunc.value_bytes += 1;
        }
        let n = (end - start).min(fit);
        if n > 0 {
            let values = self.elems[start..start + n]
                .iter()
                .map(|e| T::from_json(e.get()));
            let pushed = T::push_array(&mut self.attrs, &self.key, values);
            self.stored(pushed);
        }
    }
}

/// An array element type with a fixed size, kept as a typed array attribute: bool,
/// `i64`, `f64`. (Strings differ: their size is their length, and a too-long first one is
/// cut rather than dropped.)
trait FixedElem: Sized {
    /// What one element counts against `max_value_bytes`.
    const SIZE: usize;

    /// The value of an element whose text [`Kind::of`] classified as this type.
    fn from_json(text: &str) -> Self;

    fn push_array(
        attrs: &mut Attributes,
        key: &str,
        values: impl IntoIterator<Item = Self>,
    ) -> Result<(), TextFull>;
}

impl FixedElem for bool {
    const SIZE: usize = 1;

    fn from_json(text: &str) -> bool {
        text == "true"
    }

    fn push_array(
        attrs: &mut Attributes,
        key: &str,
        values: impl IntoIterator<Item = bool>,
    ) -> Result<(), TextFull> {
        attrs.push_bool_array(key, values)
    }
}

impl FixedElem for i64 {
    const SIZE: usize = 8;

    fn from_json(text: &str) -> i64 {
        match classify_number(text) {
            Num::Int(v) => v,
            _ => 0,
        }
    }

    fn push_array(
        attrs: &mut Attributes,
        key: &str,
        values: impl IntoIterator<Item = i64>,
    ) -> Result<(), TextFull> {
        attrs.push_int_array(key, values)
    }
}

impl FixedElem for f64 {
    const SIZE: usize = 8;

    fn from_json(text: &str) -> f64 {
        match classify_number(text) {
            Num::Float(v) => v,
            _ => 0.0,
        }
    }

    fn push_array(
        attrs: &mut Attributes,
        key: &str,
        values: impl IntoIterator<Item = f64>,
    ) -> Result<(), TextFull> {
        attrs.push_float_array(key, values)
    }
}

/// The type of one array element, from its first byte (and its text for numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Int,
    Float,
    Null,
    Object,
    Mixed,
}

impl Kind {
    fn of(text: &str) -> Kind {
        match text.as_bytes().first() {
            Some(b'"') => Kind::Str,
            Some(b't' | b'f') => Kind::Bool,
            Some(b'n') => Kind::Null,
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Mixed,
            _ => match classify_number(text) {
                Num::Int(_) => Kind::Int,
                Num::Float(_) => Kind::Float,
                Num::Text => Kind::Str,
            },
        }
    }
}

enum Num {
    Int(i64),
    Float(f64),
    /// An integer outside `i64`, or a float outside `f64`: kept as text.
    Text,
}

fn classify_number(text: &str) -> Num {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        if text == "-0" {
            return Num::Float(-0.0);
        }
        return match text.parse() {
            Ok(v) => Num::Int(v),
            Err(_) => Num::Text,
        };
    }
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Num::Float(v),
        _ => Num::Text,
    }
}

/// The content of a JSON string literal, borrowed when it has no escapes.
pub(super) fn raw_str(text: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    let inner = &text[1..text.len() - 1];
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).map(Cow::Owned)
    } else {
        Ok(Cow::Borrowed(inner))
    }
}

fn push_index(key: &mut String, i: usize) {
    use fmt::Write;
    if i < 10 {
        key.push(char::from(b'0' + i as u8));
    } else {
        // Writing to a String cannot fail.
        write!(key, "{i}").ok();
    }
}

/// Appends JSON text without the whitespace outside strings.
fn compact_into(out: &mut String, text: &str) {
    let bytes = text.as_bytes();
    if !bytes
        .iter()
        .any(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        out.push_str(text);
        return;
    }
    let (mut in_str, mut escaped, mut from) = (false, false, 0);
    for (i, &b) in bytes.iter().enumerate() {
        if in_str {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_str = false;
            }
        } else if b == b'"' {
            in_str = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push_str(&text[from..i]);
            from = i + 1;
        }
    }
    out.push_str(&text[from..]);
}

/// Deserializes a map key, borrowed when it has no escapes.
pub(super) struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Flattens one value under the current key.
struct ValueSeed<'a, 'de> {
    fl: &'a mut Flattener<'de>,
    /// The containers around the value: 0 for the event itself, which must be an object.
    depth: usize,
    /// Where the value sits relative to the picked fields.
    slot: Slot,
}

impl<'de> ValueSeed<'_, 'de> {
    fn scalar<E: de::Error>(&mut self, type_name: &'static str) -> Result<(), E> {
        if self.depth == 0 {
            return Err(self.fl.walk.fail("not a JSON object"));
        }
        self.fl.picked.other(self.slot, type_name);
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<(), E> {
        self.scalar("bool")?;
        if self.fl.admit() {
            self.fl.push_bool(v);
        }
        Ok(())
    }

    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<(), E> {
        self.scalar("number")?;
        if self.fl.admit() {
            self.fl.push_int(v);
        }
        Ok(())
    }

    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<(), E> {
        self.scalar("number")?;
        if self.fl.admit() {
            match i64::try_from(v) {
                Ok(v) => self.fl.push_int(v),
                Err(_) => {
                    let text = v.to_string();
                    let s = self.fl.cut(&text);
                    self.fl.push_str(s);
                }
            }
        }
        Ok(())
    }

    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<(), E> {
        self.scalar("number")?;
        if self.fl.admit() {
            self.fl.push_float(v);
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(mut self) -> Result<(), E> {
        self.scalar("null")
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        if self.depth == 0 {
            return Err(self.fl.walk.fail("not a JSON object"));
        }
        self.fl.picked.string(self.slot, || Cow::Borrowed(v));
        self.fl.emit_str(v);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if self.depth == 0 {
            return Err(self.fl.walk.fail("not a JSON object"));
        }
        self.fl
            .picked
            .string(self.slot, || Cow::Owned(v.to_owned()));
        self.fl.emit_str(v);
        Ok(())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<(), E> {
        self.visit_str(&v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ValueSeed { fl, depth, slot } = self;
        if depth == 0 {
            return Err(fl.walk.fail("not a JSON object"));
        }
        let start = fl.elems.len();
        while let Some(e) = seq.next_element::<&'de RawValue>()? {
            fl.elems.push(e);
        }
        let done = fl.emit_array(start, depth + 1, slot);
        fl.elems.truncate(start);
        done.map_err(|e| fl.walk.nested(e))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ValueSeed { fl, depth, slot } = self;
        let level = depth + 1;
        let base = fl.key.len();
        let sib_start = fl.siblings.len();
        let mut big = None;
        let mut first = true;
        while let Some(name) = map.next_key_seed(KeySeed)? {
            if std::mem::take(&mut first) && fl.walk.is_number_marker(&name) {
                let text: String = map.next_value()?;
                if depth == 0 {
                    return Err(fl.walk.fail("not a JSON object"));
                }
                fl.picked.other(slot, "number");
                fl.emit_number_text(&text);
                return Ok(());
            }
            if !fl.first_member(sib_start, &name, &mut big) {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if name.contains('.') {
                fl.start_checking_keys();
            }
            if level > 1 {
                fl.key.push('.');
            }
            fl.key.push_str(&name);
            let child = slot.child(&name);
            if level >= fl.max_depth {
                let raw: &'de RawValue = map.next_value()?;
                fl.emit_raw(raw, level, child)
                    .map_err(|e| fl.walk.nested(e))?;
            } else {
                map.next_value_seed(ValueSeed {
                    fl: &mut *fl,
                    depth: level,
                    slot: child,
                })?;
            }
            fl.key.truncate(base);
        }
        fl.siblings.truncate(sib_start);
        fl.picked.other(slot, "object");
        Ok(())
    }
}

#[cfg(test)]
mod tests;

//! Span attributes: flattened audit-event fields with their JSON types kept.
//!
//! [`Attributes`] holds one event's (later one span's) attributes in a handful of
//! allocations, whatever their number: every key and every string lives in one `String`,
//! each attribute is a small fixed-size entry of ranges into it (numbers and bools
//! inline), and array elements sit in one side `Vec` per element type. An event is built
//! on a reader thread and freed on the sink thread, and with one allocation per key and
//! per value those cross-thread frees were a third of the daemon's CPU time.
//!
//! [`AttrRef`] is the borrowed view of one value (what iteration yields and what the
//! sinks serialize); [`AttrValue`] is the owned form, for building lists in tests and
//! comparing against them.
//!
//! # Invariants
//! - Entries are in document order with unique keys. `Attributes` does not check this
//!   (pushing only appends): the flattener guarantees it, span assembly keeps it.
//! - Every range lies inside its buffer, and ranges into `text` start and end on char
//!   boundaries, so slicing never panics.
//! - Text is never removed: a value cut by [`Attributes::truncate_value`] or an entry
//!   dropped by [`Attributes::remove`] / [`Attributes::truncate`] leaves its bytes in
//!   `text` until the list is dropped. The bytes counted by the span limits are the live
//!   ones ([`AttrRef::byte_len`]), not the buffer's size.
//! - `text` holds at most [`MAX_TEXT_BYTES`] (ranges are `u32`, to keep an entry at 24
//!   bytes). A push that would pass it fails with [`TextFull`] and changes nothing;
//!   callers count the attribute as dropped. It takes a configuration far beyond the
//!   defaults to get there (256 attributes of a 4 MiB line reach 1 GiB at most).

use std::fmt;
use std::ops::Range;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// Most bytes of keys and strings one attribute list holds.
pub const MAX_TEXT_BYTES: usize = u32::MAX as usize;

/// The list's text would pass [`MAX_TEXT_BYTES`]; nothing was added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("attribute text would pass {MAX_TEXT_BYTES} bytes")]
pub struct TextFull;

/// One attribute value, owned. Integers outside `i64` never reach here: the flattener
/// turns them into decimal strings so that no digit is lost.
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

impl AttrValue {
    /// Bytes this value occupies for the span size limits (see [`AttrRef::byte_len`]).
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
}

impl Serialize for AttrValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttrValue::Str(v) => s.serialize_str(v),
            AttrValue::Bool(v) => s.serialize_bool(*v),
            AttrValue::Int(v) => s.serialize_i64(*v),
            AttrValue::Float(v) => s.serialize_f64(*v),
            AttrValue::StrArray(v) => seq(s, v.iter()),
            AttrValue::BoolArray(v) => seq(s, v.iter()),
            AttrValue::IntArray(v) => seq(s, v.iter()),
            AttrValue::FloatArray(v) => seq(s, v.iter()),
        }
    }
}

fn seq<S: Serializer, T: Serialize>(
    s: S,
    items: impl ExactSizeIterator<Item = T>,
) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(items.len()))?;
    for item in items {
        seq.serialize_element(&item)?;
    }
    seq.end()
}

/// One attribute value, borrowed from an [`Attributes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrRef<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Float(f64),
    StrArray(StrArray<'a>),
    BoolArray(&'a [bool]),
    IntArray(&'a [i64]),
    FloatArray(&'a [f64]),
}

impl AttrRef<'_> {
    /// Bytes this value occupies for the span size limits: string bytes, 8 per number,
    /// 1 per bool; arrays add up their elements.
    pub fn byte_len(&self) -> usize {
        match self {
            AttrRef::Str(s) => s.len(),
            AttrRef::Bool(_) => 1,
            AttrRef::Int(_) | AttrRef::Float(_) => 8,
            AttrRef::StrArray(v) => v.byte_len(),
            AttrRef::BoolArray(v) => v.len(),
            AttrRef::IntArray(v) => v.len() * 8,
            AttrRef::FloatArray(v) => v.len() * 8,
        }
    }

    /// The owned copy.
    pub fn to_value(&self) -> AttrValue {
        match *self {
            AttrRef::Str(s) => AttrValue::Str(s.to_owned()),
            AttrRef::Bool(v) => AttrValue::Bool(v),
            AttrRef::Int(v) => AttrValue::Int(v),
            AttrRef::Float(v) => AttrValue::Float(v),
            AttrRef::StrArray(v) => AttrValue::StrArray(v.iter().map(str::to_owned).collect()),
            AttrRef::BoolArray(v) => AttrValue::BoolArray(v.to_vec()),
            AttrRef::IntArray(v) => AttrValue::IntArray(v.to_vec()),
            AttrRef::FloatArray(v) => AttrValue::FloatArray(v.to_vec()),
        }
    }
}

impl PartialEq<AttrValue> for AttrRef<'_> {
    fn eq(&self, other: &AttrValue) -> bool {
        match (self, other) {
            (AttrRef::Str(a), AttrValue::Str(b)) => a == b,
            (AttrRef::Bool(a), AttrValue::Bool(b)) => a == b,
            (AttrRef::Int(a), AttrValue::Int(b)) => a == b,
            (AttrRef::Float(a), AttrValue::Float(b)) => a == b,
            (AttrRef::StrArray(a), AttrValue::StrArray(b)) => {
                a.iter().eq(b.iter().map(String::as_str))
            }
            (AttrRef::BoolArray(a), AttrValue::BoolArray(b)) => a == b,
            (AttrRef::IntArray(a), AttrValue::IntArray(b)) => a == b,
            (AttrRef::FloatArray(a), AttrValue::FloatArray(b)) => a == b,
            _ => false,
        }
    }
}

/// The same JSON as [`AttrValue`]'s.
impl Serialize for AttrRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            AttrRef::Str(v) => s.serialize_str(v),
            AttrRef::Bool(v) => s.serialize_bool(v),
            AttrRef::Int(v) => s.serialize_i64(v),
            AttrRef::Float(v) => s.serialize_f64(v),
            AttrRef::StrArray(v) => seq(s, v.iter()),
            AttrRef::BoolArray(v) => seq(s, v.iter()),
            AttrRef::IntArray(v) => seq(s, v.iter()),
            AttrRef::FloatArray(v) => seq(s, v.iter()),
        }
    }
}

/// The elements of a string array, borrowed from an [`Attributes`].
#[derive(Clone, Copy)]
pub struct StrArray<'a> {
    text: &'a str,
    ranges: &'a [Span32],
}

impl<'a> StrArray<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a str> + use<'a> {
        let text = self.text;
        self.ranges.iter().map(move |r| &text[r.range()])
    }

    fn byte_len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }
}

impl PartialEq for StrArray<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for StrArray<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A byte range into one of the buffers; `u32` keeps [`Entry`] small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span32 {
    start: u32,
    end: u32,
}

impl Span32 {
    fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A value as stored: strings are ranges into `text`, arrays ranges into their side
/// vector.
#[derive(Debug, Clone, Copy)]
enum Stored {
    Str(Span32),
    Bool(bool),
    Int(i64),
    Float(f64),
    StrArray(Span32),
    BoolArray(Span32),
    IntArray(Span32),
    FloatArray(Span32),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Span32,
    value: Stored,
}

/// Attributes in document order, keys unique; see the module doc for the layout.
#[derive(Clone, Default)]
pub struct Attributes {
    /// Keys and strings, back to back.
    text: String,
    entries: Vec<Entry>,
    /// String-array elements, as ranges into `text`.
    strs: Vec<Span32>,
    bools: Vec<bool>,
    ints: Vec<i64>,
    floats: Vec<f64>,
}

/// Converts a side-vector length to a range bound. Side vectors grow by at most one
/// element per text byte or per number pushed, and a list holding more than 4 G elements
/// is far past any limit, so this saturates rather than carrying an error everywhere.
fn bound(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Attributes {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `entries` attributes and `text_bytes` of keys and
    /// strings.
    pub fn with_capacity(entries: usize, text_bytes: usize) -> Self {
        Attributes {
            text: String::with_capacity(text_bytes.min(MAX_TEXT_BYTES)),
            entries: Vec::with_capacity(entries),
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Reserves room for `entries` more attributes and `text_bytes` more text.
    pub fn reserve(&mut self, entries: usize, text_bytes: usize) {
        self.entries.reserve(entries);
        self.text.reserve(text_bytes);
    }

    /// `(key, value)` pairs in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            attrs: self,
            entries: self.entries.iter(),
        }
    }

    /// The keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|e| &self.text[e.key.range()])
    }

    /// The value of `key` (a linear scan: for tests and the rare lookup).
    pub fn get(&self, key: &str) -> Option<AttrRef<'_>> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.keys().any(|k| k == key)
    }

    /// The key of the attribute at `index`. Panics when `index` is out of bounds.
    pub fn key(&self, index: usize) -> &str {
        &self.text[self.entries[index].key.range()]
    }

    /// The value of the attribute at `index`. Panics when `index` is out of bounds.
    pub fn value(&self, index: usize) -> AttrRef<'_> {
        self.view(self.entries[index].value)
    }

    fn view(&self, value: Stored) -> AttrRef<'_> {
        match value {
            Stored::Str(r) => AttrRef::Str(&self.text[r.range()]),
            Stored::Bool(v) => AttrRef::Bool(v),
            Stored::Int(v) => AttrRef::Int(v),
            Stored::Float(v) => AttrRef::Float(v),
            Stored::StrArray(r) => AttrRef::StrArray(StrArray {
                text: &self.text,
                ranges: &self.strs[r.range()],
            }),
            Stored::BoolArray(r) => AttrRef::BoolArray(&self.bools[r.range()]),
            Stored::IntArray(r) => AttrRef::IntArray(&self.ints[r.range()]),
            Stored::FloatArray(r) => AttrRef::FloatArray(&self.floats[r.range()]),
        }
    }

    /// Appends `s` to the text; `Err` (text unchanged) when it would pass the cap.
    fn push_text(&mut self, s: &str) -> Result<Span32, TextFull> {
        let start = self.text.len();
        let end = start + s.len();
        if end > MAX_TEXT_BYTES {
            return Err(TextFull);
        }
        self.text.push_str(s);
        // Both fit: checked against MAX_TEXT_BYTES above.
        Ok(Span32 {
            start: start as u32,
            end: end as u32,
        })
    }

    fn room_for(&self, bytes: usize) -> Result<(), TextFull> {
        if self.text.len() + bytes > MAX_TEXT_BYTES {
            Err(TextFull)
        } else {
            Ok(())
        }
    }

    /// Appends a string attribute.
    pub fn push_str(&mut self, key: &str, value: &str) -> Result<(), TextFull> {
        self.room_for(key.len() + value.len())?;
        let key = self.push_text(key)?;
        let value = Stored::Str(self.push_text(value)?);
        self.entries.push(Entry { key, value });
        Ok(())
    }

    fn push_inline(&mut self, key: &str, value: Stored) -> Result<(), TextFull> {
        let key = self.push_text(key)?;
        self.entries.push(Entry { key, value });
        Ok(())
    }

    pub fn push_bool(&mut self, key: &str, value: bool) -> Result<(), TextFull> {
        self.push_inline(key, Stored::Bool(value))
    }

    pub fn push_int(&mut self, key: &str, value: i64) -> Result<(), TextFull> {
        self.push_inline(key, Stored::Int(value))
    }

    pub fn push_float(&mut self, key: &str, value: f64) -> Result<(), TextFull> {
        self.push_inline(key, Stored::Float(value))
    }

    pub fn push_bool_array(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = bool>,
    ) -> Result<(), TextFull> {
        let key = self.push_text(key)?;
        let start = bound(self.bools.len());
        self.bools.extend(values);
        let end = bound(self.bools.len());
        let value = Stored::BoolArray(Span32 { start, end });
        self.entries.push(Entry { key, value });
        Ok(())
    }

    pub fn push_int_array(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = i64>,
    ) -> Result<(), TextFull> {
        let key = self.push_text(key)?;
        let start = bound(self.ints.len());
        self.ints.extend(values);
        let end = bound(self.ints.len());
        let value = Stored::IntArray(Span32 { start, end });
        self.entries.push(Entry { key, value });
        Ok(())
    }

    pub fn push_float_array(
        &mut self,
        key: &str,
        values: impl IntoIterator<Item = f64>,
    ) -> Result<(), TextFull> {
        let key = self.push_text(key)?;
        let start = bound(self.floats.len());
        self.floats.extend(values);
        let end = bound(self.floats.len());
        let value = Stored::FloatArray(Span32 { start, end });
        self.entries.push(Entry { key, value });
        Ok(())
    }

    /// Starts a string-array attribute (with no elements yet) whose elements are then
    /// appended one by one with [`StrArrayWriter::push`].
    pub fn push_str_array(&mut self, key: &str) -> Result<StrArrayWriter<'_>, TextFull> {
        let key = self.push_text(key)?;
        if self.strs.capacity() == 0 {
            // Lists with string arrays tend to have several (Vault: policies).
            self.strs.reserve(16);
        }
        let at = bound(self.strs.len());
        self.entries.push(Entry {
            key,
            value: Stored::StrArray(Span32 { start: at, end: at }),
        });
        Ok(StrArrayWriter { attrs: self })
    }

    /// Appends a copy of `value`, which may be borrowed from another list.
    pub fn push(&mut self, key: &str, value: AttrRef<'_>) -> Result<(), TextFull> {
        match value {
            AttrRef::Str(s) => self.push_str(key, s),
            AttrRef::Bool(v) => self.push_bool(key, v),
            AttrRef::Int(v) => self.push_int(key, v),
            AttrRef::Float(v) => self.push_float(key, v),
            AttrRef::StrArray(v) => {
                self.room_for(key.len() + v.byte_len())?;
                let mut w = self.push_str_array(key)?;
                for s in v.iter() {
                    w.push(s)?;
                }
                Ok(())
            }
            AttrRef::BoolArray(v) => self.push_bool_array(key, v.iter().copied()),
            AttrRef::IntArray(v) => self.push_int_array(key, v.iter().copied()),
            AttrRef::FloatArray(v) => self.push_float_array(key, v.iter().copied()),
        }
    }

    /// Appends a copy of the owned `value`.
    pub fn push_value(&mut self, key: &str, value: &AttrValue) -> Result<(), TextFull> {
        match value {
            AttrValue::Str(s) => self.push_str(key, s),
            AttrValue::Bool(v) => self.push_bool(key, *v),
            AttrValue::Int(v) => self.push_int(key, *v),
            AttrValue::Float(v) => self.push_float(key, *v),
            AttrValue::StrArray(v) => {
                self.room_for(key.len() + value.byte_len())?;
                let mut w = self.push_str_array(key)?;
                for s in v {
                    w.push(s)?;
                }
                Ok(())
            }
            AttrValue::BoolArray(v) => self.push_bool_array(key, v.iter().copied()),
            AttrValue::IntArray(v) => self.push_int_array(key, v.iter().copied()),
            AttrValue::FloatArray(v) => self.push_float_array(key, v.iter().copied()),
        }
    }

    /// Keeps the first `len` attributes.
    pub fn truncate(&mut self, len: usize) {
        self.entries.truncate(len);
    }

    /// Removes the attribute at `index`, keeping the order of the others. Panics when
    /// `index` is out of bounds.
    pub fn remove(&mut self, index: usize) {
        self.entries.remove(index);
    }

    /// Shrinks the value at `index` to at most `max_bytes` (strings at a char boundary,
    /// arrays by dropping trailing elements; a single too-long first string is cut).
    /// Numbers and bools are left as they are. Panics when `index` is out of bounds.
    pub fn truncate_value(&mut self, index: usize, max_bytes: usize) {
        fn cut(text: &str, r: &mut Span32, max: usize) {
            if r.len() > max {
                let s = &text[r.range()];
                // floor_char_boundary(max) <= max < r.len(), so `end` stays in the range.
                r.end = r.start + s.floor_char_boundary(max) as u32;
            }
        }
        let entry = &mut self.entries[index];
        match &mut entry.value {
            Stored::Str(r) => cut(&self.text, r, max_bytes),
            Stored::StrArray(arr) => {
                let elems = &mut self.strs[arr.range()];
                let mut used = 0;
                let mut keep = 0;
                for r in elems.iter_mut() {
                    if used + r.len() > max_bytes {
                        if keep == 0 {
                            cut(&self.text, r, max_bytes);
                            keep = 1;
                        }
                        break;
                    }
                    used += r.len();
                    keep += 1;
                }
                arr.end = arr.start + keep;
            }
            Stored::BoolArray(r) => r.end = r.start + bound(r.len().min(max_bytes)),
            Stored::IntArray(r) | Stored::FloatArray(r) => {
                r.end = r.start + bound(r.len().min(max_bytes / 8))
            }
            Stored::Bool(_) | Stored::Int(_) | Stored::Float(_) => {}
        }
    }

    /// The owned copies, in order (for tests and debugging).
    pub fn to_vec(&self) -> Vec<(String, AttrValue)> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_value()))
            .collect()
    }
}

/// Appends the elements of the string array started by [`Attributes::push_str_array`].
pub struct StrArrayWriter<'a> {
    attrs: &'a mut Attributes,
}

impl StrArrayWriter<'_> {
    /// Appends one element; `Err` (element left out) when the text is full.
    pub fn push(&mut self, s: &str) -> Result<(), TextFull> {
        let attrs = &mut *self.attrs;
        let r = attrs.push_text(s)?;
        attrs.strs.push(r);
        let end = bound(attrs.strs.len());
        if let Some(Entry {
            value: Stored::StrArray(arr),
            ..
        }) = attrs.entries.last_mut()
        {
            arr.end = end;
        }
        Ok(())
    }
}

/// Iterator over `(key, value)` pairs, see [`Attributes::iter`].
pub struct Iter<'a> {
    attrs: &'a Attributes,
    entries: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, AttrRef<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.next()?;
        Some((&self.attrs.text[e.key.range()], self.attrs.view(e.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a str, AttrRef<'a>);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Attributes are equal when they hold the same keys and values in the same order,
/// whatever dead text their buffers hold.
impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Builds a list from owned pairs, for tests and small fixed lists. Pairs past
/// [`MAX_TEXT_BYTES`] are left out.
impl<K: AsRef<str>> FromIterator<(K, AttrValue)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (K, AttrValue)>>(iter: I) -> Self {
        let mut attrs = Attributes::new();
        for (k, v) in iter {
            if attrs.push_value(k.as_ref(), &v).is_err() {
                break;
            }
        }
        attrs
    }
}

/// A JSON object of the attributes, in order.
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Attributes {
        [
            ("s", AttrValue::Str("héllo".into())),
            ("b", AttrValue::Bool(true)),
            ("i", AttrValue::Int(-3)),
            ("f", AttrValue::Float(0.5)),
            (
                "sa",
                AttrValue::StrArray(vec!["a".into(), "".into(), "cd".into()]),
            ),
            ("ba", AttrValue::BoolArray(vec![true, false])),
            ("ia", AttrValue::IntArray(vec![1, 2, 3])),
            ("fa", AttrValue::FloatArray(vec![1.5, -0.0])),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn round_trips_every_type_in_order() {
        let a = sample();
        assert_eq!(a.len(), 8);
        let keys: Vec<&str> = a.keys().collect();
        assert_eq!(keys, ["s", "b", "i", "f", "sa", "ba", "ia", "fa"]);
        assert_eq!(a.get("s"), Some(AttrRef::Str("héllo")));
        assert_eq!(a.get("ia"), Some(AttrRef::IntArray(&[1, 2, 3])));
        assert!(a.get("sa").is_some_and(|v| v == AttrValue::StrArray(vec![
            "a".into(),
            "".into(),
            "cd".into()
        ])));
        assert_eq!(a.get("nope"), None);
        let back: Attributes = a.to_vec().into_iter().collect();
        assert_eq!(back, a);
    }

    #[test]
    fn json_is_the_owned_forms_json() {
        let a = sample();
        let owned: Vec<String> = a
            .to_vec()
            .iter()
            .map(|(_, v)| serde_json::to_string(v).unwrap())
            .collect();
        let borrowed: Vec<String> = a
            .iter()
            .map(|(_, v)| serde_json::to_string(&v).unwrap())
            .collect();
        assert_eq!(owned, borrowed);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#"{"s":"héllo","b":true,"i":-3,"f":0.5,"sa":["a","","cd"],"ba":[true,false],"ia":[1,2,3],"fa":[1.5,-0.0]}"#
        );
    }

    #[test]
    fn byte_len_counts_strings_numbers_and_bools() {
        let a = sample();
        let lens: Vec<usize> = a.iter().map(|(_, v)| v.byte_len()).collect();
        assert_eq!(lens, [6, 1, 8, 8, 3, 2, 24, 16]);
        for (k, v) in &a {
            assert_eq!(v.byte_len(), v.to_value().byte_len(), "{k}");
        }
    }

    #[test]
    fn truncate_value_respects_char_boundaries_and_elements() {
        let mut a: Attributes = [
            ("s", AttrValue::Str("é".repeat(10))),
            (
                "a",
                AttrValue::StrArray(vec!["abc".into(), "def".into(), "ghi".into()]),
            ),
            ("one", AttrValue::StrArray(vec!["0123456789".into()])),
            ("i", AttrValue::IntArray(vec![1, 2, 3])),
            ("b", AttrValue::BoolArray(vec![true; 5])),
            ("n", AttrValue::Int(7)),
        ]
        .into_iter()
        .collect();
        a.truncate_value(0, 5);
        a.truncate_value(1, 7);
        a.truncate_value(2, 4);
        a.truncate_value(3, 17);
        a.truncate_value(4, 2);
        a.truncate_value(5, 0);
        assert_eq!(
            a.to_vec(),
            vec![
                ("s".to_owned(), AttrValue::Str("éé".into())),
                (
                    "a".to_owned(),
                    AttrValue::StrArray(vec!["abc".into(), "def".into()])
                ),
                ("one".to_owned(), AttrValue::StrArray(vec!["0123".into()])),
                ("i".to_owned(), AttrValue::IntArray(vec![1, 2])),
                ("b".to_owned(), AttrValue::BoolArray(vec![true, true])),
                ("n".to_owned(), AttrValue::Int(7)),
            ]
        );
        // Growing back is impossible: a larger limit keeps what is left.
        a.truncate_value(0, 100);
        assert_eq!(a.value(0), AttrRef::Str("éé"));
    }

    #[test]
    fn remove_and_truncate_keep_order_and_equality_ignores_dead_text() {
        let mut a = sample();
        a.remove(1);
        a.truncate(3);
        let expected: Attributes = [
            ("s", AttrValue::Str("héllo".into())),
            ("i", AttrValue::Int(-3)),
            ("f", AttrValue::Float(0.5)),
        ]
        .into_iter()
        .collect();
        assert_eq!(a, expected);
        assert_eq!(
            format!("{a:?}"),
            r#"{"s": Str("héllo"), "i": Int(-3), "f": Float(0.5)}"#
        );
    }

    #[test]
    fn pushing_copies_from_another_list() {
        let a = sample();
        let mut b = Attributes::new();
        for (k, v) in &a {
            b.push(k, v).unwrap();
        }
        assert_eq!(a, b);
        let mut w = b.push_str_array("empty").unwrap();
        w.push("x").unwrap();
        assert_eq!(
            b.get("empty").map(|v| v.to_value()),
            Some(AttrValue::StrArray(vec!["x".into()]))
        );
    }
}

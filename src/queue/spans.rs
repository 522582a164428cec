//! The queue's span batches in memory: [`EncodedSpans`], what a commit hands in, and
//! [`ReadSpans`], what a read hands out.
//!
//! Both keep their spans in a few large buffers rather than one `Vec` per span: a commit
//! window holds thousands of spans, and one allocation (and, on the way out, one free on
//! another thread) per span was a measurable part of the daemon's CPU. Spans are opaque
//! bytes here, as everywhere in the queue.
//!
//! # Invariants
//! - [`EncodedSpans::bytes`] is exactly the span section of a span record (see
//!   [`super::record`]): for each span, `u32 BE length · bytes`. So a record is written
//!   from it with one copy and no per-span work.
//! - [`ReadSpans`] holds whole records as read from disk (their checksums verified) and
//!   the place of each span in them; a span never outlives its record's buffer.

use std::ops::Range;

use super::record::SPAN_PREFIX_BYTES;

/// Encoded spans, in order, as one span section of a record (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedSpans {
    /// `u32 BE length · span bytes`, one after the other.
    bytes: Vec<u8>,
    /// Where each span's length prefix starts in `bytes`.
    starts: Vec<usize>,
}

impl EncodedSpans {
    pub fn new() -> EncodedSpans {
        EncodedSpans::default()
    }

    /// Room for `spans` spans of `bytes` bytes in all (length prefixes included).
    pub fn with_capacity(spans: usize, bytes: usize) -> EncodedSpans {
        EncodedSpans {
            bytes: Vec::with_capacity(bytes),
            starts: Vec::with_capacity(spans),
        }
    }

    /// Appends a copy of `span`.
    pub fn push(&mut self, span: &[u8]) {
        self.push_with(|out| out.extend_from_slice(span));
    }

    /// Appends the span `encode` appends to the buffer it is given (it must only append),
    /// without a buffer of its own: the way the correlator encodes its spans.
    pub fn push_with(&mut self, encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; SPAN_PREFIX_BYTES]);
        encode(&mut self.bytes);
        // A span longer than u32::MAX is refused by the store (MAX_SPAN_BYTES) long before;
        // saturating keeps the prefix wrong rather than the program.
        let len = u32::try_from(self.bytes.len() - start - SPAN_PREFIX_BYTES).unwrap_or(u32::MAX);
        self.bytes[start..start + SPAN_PREFIX_BYTES].copy_from_slice(&len.to_be_bytes());
        self.starts.push(start);
    }

    /// Appends every span of `other`, in order.
    pub fn append(&mut self, other: &EncodedSpans) {
        let base = self.bytes.len();
        self.bytes.extend_from_slice(&other.bytes);
        self.starts.extend(other.starts.iter().map(|s| s + base));
    }

    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The bytes of span `index` (without its length prefix).
    pub fn get(&self, index: usize) -> Option<&[u8]> {
        let start = *self.starts.get(index)? + SPAN_PREFIX_BYTES;
        let end = self
            .starts
            .get(index + 1)
            .map_or(self.bytes.len(), |next| *next);
        self.bytes.get(start..end)
    }

    /// The spans, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        (0..self.len()).map(|i| self.get(i).unwrap_or_default())
    }

    /// Byte length of each span.
    pub fn lens(&self) -> impl ExactSizeIterator<Item = usize> + '_ {
        self.iter().map(<[u8]>::len)
    }

    /// The span section of spans `range`: their length prefixes and bytes, contiguous.
    pub fn section(&self, range: Range<usize>) -> &[u8] {
        if range.is_empty() {
            return &[];
        }
        let start = self.starts[range.start];
        let end = self
            .starts
            .get(range.end)
            .map_or(self.bytes.len(), |next| *next);
        &self.bytes[start..end]
    }

    /// Every byte of the section (spans and their length prefixes).
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    /// Bytes the section holds room for.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Empties it, keeping its buffers (a correlator reuses one window's for the next).
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.starts.clear();
    }

    /// Drops the first `n` spans (the oldest of a commit held back while the disk is full).
    pub fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len());
        if n == self.len() {
            self.bytes.clear();
            self.starts.clear();
            return;
        }
        let cut = self.starts[n];
        self.bytes.drain(..cut);
        self.starts.drain(..n);
        for start in &mut self.starts {
            *start -= cut;
        }
    }

    /// Takes a validated span section of `count` spans (see
    /// [`super::record::parse_record`]), copying it.
    pub(crate) fn from_section(section: &[u8], starts: &[usize]) -> EncodedSpans {
        EncodedSpans {
            bytes: section.to_vec(),
            starts: starts.to_vec(),
        }
    }
}

impl<S: AsRef<[u8]>> FromIterator<S> for EncodedSpans {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> EncodedSpans {
        let mut spans = EncodedSpans::new();
        for span in iter {
            spans.push(span.as_ref());
        }
        spans
    }
}

impl From<Vec<Vec<u8>>> for EncodedSpans {
    fn from(spans: Vec<Vec<u8>>) -> EncodedSpans {
        spans.iter().collect()
    }
}

/// One span of a [`ReadSpans`]: its sequence and where its bytes are in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SpanAt {
    seq: u64,
    start: u32,
    end: u32,
}

/// Spans read from the queue, in sequence order, borrowed from the records they came in.
/// The buffer is reused from read to read ([`ReadSpans::clear`]): a reader hands the last
/// batch back with its next read, so that a drain does not allocate (and the kernel zero)
/// fresh pages for every batch.
#[derive(Debug, Clone, Default)]
pub struct ReadSpans {
    /// Whole records as read (checksums verified), one after the other.
    buf: Vec<u8>,
    spans: Vec<SpanAt>,
    /// Bytes of the spans (without prefixes): what a reader's byte bound counts.
    span_bytes: usize,
}

impl ReadSpans {
    /// Empties it, keeping its buffers for the next read.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
        self.span_bytes = 0;
    }

    /// Bytes its buffer holds room for.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The buffer records are read into (appended).
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Adds the span `seq` at `range` of the buffer. A batch holds at most a few MiB, so
    /// `range` stays within `u32`.
    pub(crate) fn push_span(&mut self, seq: u64, range: Range<usize>) {
        self.span_bytes += range.len();
        self.spans.push(SpanAt {
            seq,
            start: range.start as u32,
            end: range.end as u32,
        });
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of the spans themselves.
    pub fn span_bytes(&self) -> usize {
        self.span_bytes
    }

    /// The sequence of the last span.
    pub fn last_seq(&self) -> Option<u64> {
        self.spans.last().map(|s| s.seq)
    }

    /// `(sequence, bytes)` of each span, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u64, &[u8])> + '_ {
        self.spans
            .iter()
            .map(|s| (s.seq, &self.buf[s.start as usize..s.end as usize]))
    }

    /// Owned copies, one `Vec` per span (tests and offline tools).
    pub fn to_vec(&self) -> Vec<(u64, Vec<u8>)> {
        self.iter()
            .map(|(seq, span)| (seq, span.to_vec()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spans pushed, appended and dropped from the front come back as they went in, and
    /// the section of a range is its length-prefixed bytes.
    #[test]
    fn encoded_spans_keep_order_and_layout() {
        let mut spans: EncodedSpans = [&b"one"[..], b"", b"three"].into_iter().collect();
        spans.push_with(|out| out.extend_from_slice(b"four"));
        assert_eq!(
            spans.iter().collect::<Vec<_>>(),
            [&b"one"[..], b"", b"three", b"four"]
        );
        assert_eq!(spans.section(1..3), b"\0\0\0\0\0\0\0\x05three");
        assert_eq!(spans.byte_len(), 4 * 4 + 3 + 5 + 4);
        let mut more = EncodedSpans::from(vec![b"five".to_vec()]);
        more.append(&spans);
        more.drop_front(2);
        assert_eq!(
            more.iter().collect::<Vec<_>>(),
            [&b""[..], b"three", b"four"]
        );
        assert_eq!(more.lens().collect::<Vec<_>>(), [0, 5, 4]);
        more.drop_front(10);
        assert!(more.is_empty() && more.byte_len() == 0);
    }
}

//! The bytes the queue stores in sled: keys, the value envelope and span records.
//!
//! Everything here is on-disk format (see the layout in [`crate::queue`]): changing a constant,
//! a field order or an integer width is a **breaking** change that needs a new
//! [`RECORD_VERSION`] and a migration.

use std::ops::Range;

/// Version byte at the start of every value this build writes.
pub const RECORD_VERSION: u8 = 1;

/// Key prefix of the per-sink cursors: `c` + sink name → envelope(u64 BE last acknowledged sequence).
pub const PREFIX_CURSOR: u8 = b'c';
/// Key prefix of the file-tail checkpoints: `i` + input name → envelope(opaque bytes).
pub const PREFIX_INPUT: u8 = b'i';
/// Key prefix of the database's own facts: `m` + name → envelope(value).
pub const PREFIX_META: u8 = b'm';
/// Key prefix of the correlator's waiting entries: `p` + id → envelope(opaque bytes).
pub const PREFIX_PENDING: u8 = b'p';
/// Key prefix of span records: `s` + u64 BE first sequence + u32 BE span count.
pub const PREFIX_SPANS: u8 = b's';
/// Key prefix of the record index of a closed segment, kept in the active segment:
/// `g` + u64 BE first sequence of the closed segment → envelope([`encode_index`]).
pub const PREFIX_INDEX: u8 = b'g';
/// Key prefix of span records found damaged and skipped: `x` + u64 BE first sequence →
/// envelope(u32 BE count). Closed segments are never written, so a damaged record there
/// is remembered here instead of deleted.
pub const PREFIX_SKIPPED: u8 = b'x';

/// `m` keys.
pub const META_FORMAT: &[u8] = b"mformat";
pub const META_DB_ID: &[u8] = b"mdb_id";
pub const META_SEGMENT_SIZE: &[u8] = b"msegment_size";
pub const META_COMMITTED: &[u8] = b"mcommitted";
/// Format 2, every segment: the first sequence this segment may hold (its directory's name).
pub const META_FIRST: &[u8] = b"mfirst";
/// Format 2: every span up to this sequence has left the queue (passed by every sink,
/// dropped by `drop_oldest`); records up to it may still sit in a segment not yet deleted.
pub const META_RELEASED: &[u8] = b"mreleased";
/// Format 2: written last in a segment's first batch; a segment without it was being
/// created when the process stopped (see the recovery rules in [`crate::queue`]).
pub const META_BASE: &[u8] = b"mbase";

/// Length of a span record key.
pub const SPAN_KEY_LEN: usize = 13;
/// Bytes the envelope adds to a payload: version byte + CRC32.
pub const ENVELOPE_BYTES: usize = 1 + 4;
/// Bytes a span record adds besides its spans: envelope + span count.
pub const SPAN_RECORD_OVERHEAD: usize = ENVELOPE_BYTES + 4;
/// Bytes each span adds to its record besides its own bytes: the length prefix.
pub const SPAN_PREFIX_BYTES: usize = 4;

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The version byte is not one this build knows: a newer auditspan wrote it (or the byte
    /// itself is damaged; the two cannot be told apart without the newer format).
    #[error("unknown record version {0}")]
    UnknownVersion(u8),
    /// The CRC32 at the end does not match the bytes before it.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    /// Too short to hold the envelope, or the payload's lengths do not add up.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

impl RecordError {
    /// True when the value is damaged (counted and skipped), false when it is merely newer
    /// than this build (a clear error).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, RecordError::UnknownVersion(_))
    }
}

/// Wraps `payload` as `version · payload · CRC32(version · payload)`.
pub fn encode_envelope(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + ENVELOPE_BYTES);
    out.push(RECORD_VERSION);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Checks the version byte and the checksum; returns the payload.
pub fn decode_envelope(value: &[u8]) -> Result<&[u8], RecordError> {
    let Some(&version) = value.first() else {
        return Err(RecordError::Malformed("empty value"));
    };
    if version != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    if value.len() < ENVELOPE_BYTES {
        return Err(RecordError::Malformed("shorter than its envelope"));
    }
    let (body, crc) = value.split_at(value.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    Ok(&body[1..])
}

/// Key of the span record whose first span has sequence `first` and that holds `count` spans.
pub fn span_key(first: u64, count: u32) -> [u8; SPAN_KEY_LEN] {
    let mut key = [0; SPAN_KEY_LEN];
    key[0] = PREFIX_SPANS;
    key[1..9].copy_from_slice(&first.to_be_bytes());
    key[9..13].copy_from_slice(&count.to_be_bytes());
    key
}

/// `(first sequence, span count)` of a span record key, or `None` if it is not one.
pub fn parse_span_key(key: &[u8]) -> Option<(u64, u32)> {
    if key.len() != SPAN_KEY_LEN || key[0] != PREFIX_SPANS {
        return None;
    }
    let first = u64::from_be_bytes(key[1..9].try_into().ok()?);
    let count = u32::from_be_bytes(key[9..13].try_into().ok()?);
    (count > 0 && first > 0 && first.checked_add(u64::from(count)).is_some())
        .then_some((first, count))
}

/// Size in bytes a record holding spans of these lengths takes (key + value): what
/// `queue_bytes` and `max_bytes` count.
pub fn record_bytes(span_lens: impl IntoIterator<Item = usize>) -> u64 {
    let spans: usize = span_lens
        .into_iter()
        .map(|len| len + SPAN_PREFIX_BYTES)
        .sum();
    (SPAN_KEY_LEN + SPAN_RECORD_OVERHEAD + spans) as u64
}

/// Encodes a span record value: envelope(u32 BE count · (u32 BE length · span bytes)…).
pub fn encode_spans(spans: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = spans.iter().map(|s| s.len() + SPAN_PREFIX_BYTES).sum();
    let mut out = Vec::with_capacity(SPAN_RECORD_OVERHEAD + len);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&(spans.len() as u32).to_be_bytes());
    for span in spans {
        out.extend_from_slice(&(span.len() as u32).to_be_bytes());
        out.extend_from_slice(span);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes the spans at positions `wanted` (0-based within the record) of a span record
/// that its key says holds `count` spans.
pub fn decode_spans(
    value: &[u8],
    count: u32,
    wanted: Range<usize>,
) -> Result<Vec<Vec<u8>>, RecordError> {
    let mut payload = decode_envelope(value)?;
    let stored = take_u32(&mut payload)?;
    if stored != count {
        return Err(RecordError::Malformed("span count differs from its key"));
    }
    let mut out = Vec::with_capacity(wanted.len());
    for index in 0..count as usize {
        let len = take_u32(&mut payload)? as usize;
        if payload.len() < len {
            return Err(RecordError::Malformed("span longer than its record"));
        }
        let (span, rest) = payload.split_at(len);
        if wanted.contains(&index) {
            out.push(span.to_vec());
        }
        payload = rest;
    }
    if !payload.is_empty() {
        return Err(RecordError::Malformed("bytes after the last span"));
    }
    Ok(out)
}

/// One record in a closed segment's index: first sequence, span count, bytes (key + value).
pub type IndexEntry = (u64, u32, u64);

/// Encodes a closed segment's index payload: u64 BE last sequence of the segment ·
/// n × (u64 BE first · u32 BE count · u64 BE bytes), wrapped in the envelope.
pub fn encode_index(last: u64, records: &[IndexEntry]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + records.len() * 20);
    payload.extend_from_slice(&last.to_be_bytes());
    for (first, count, bytes) in records {
        payload.extend_from_slice(&first.to_be_bytes());
        payload.extend_from_slice(&count.to_be_bytes());
        payload.extend_from_slice(&bytes.to_be_bytes());
    }
    encode_envelope(&payload)
}

/// Decodes [`encode_index`]: the segment's last sequence and its records.
pub fn decode_index(value: &[u8]) -> Result<(u64, Vec<IndexEntry>), RecordError> {
    let mut payload = decode_envelope(value)?;
    let last = take_u64(&mut payload)?;
    if payload.len() % 20 != 0 {
        return Err(RecordError::Malformed(
            "index length is not a whole number of entries",
        ));
    }
    let mut out = Vec::with_capacity(payload.len() / 20);
    while !payload.is_empty() {
        let first = take_u64(&mut payload)?;
        let count = take_u32(&mut payload)?;
        let bytes = take_u64(&mut payload)?;
        out.push((first, count, bytes));
    }
    Ok((last, out))
}

/// `prefix` + u64 BE `seq`: the keys of [`PREFIX_INDEX`] and [`PREFIX_SKIPPED`].
pub fn seq_key(prefix: u8, seq: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = prefix;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The sequence of a [`seq_key`], or `None` if the key has the wrong length.
pub fn parse_seq_key(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

fn take_u64(bytes: &mut &[u8]) -> Result<u64, RecordError> {
    let Some((head, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(RecordError::Malformed("truncated u64"));
    };
    *bytes = rest;
    Ok(u64::from_be_bytes(*head))
}

fn take_u32(bytes: &mut &[u8]) -> Result<u32, RecordError> {
    let Some((head, rest)) = bytes.split_first_chunk::<4>() else {
        return Err(RecordError::Malformed("truncated length"));
    };
    *bytes = rest;
    Ok(u32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_record_round_trips_and_sizes_match_the_layout() {
        let spans = vec![b"a".to_vec(), Vec::new(), vec![7; 300]];
        let value = encode_spans(&spans);
        assert_eq!(
            record_bytes(spans.iter().map(Vec::len)),
            (SPAN_KEY_LEN + value.len()) as u64
        );
        assert_eq!(decode_spans(&value, 3, 0..3).unwrap(), spans);
        assert_eq!(decode_spans(&value, 3, 1..3).unwrap(), spans[1..].to_vec());
        assert_eq!(
            decode_spans(&value, 2, 0..2),
            Err(RecordError::Malformed("span count differs from its key"))
        );
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let value = encode_spans(&[b"span one".to_vec(), b"span two".to_vec()]);
        for byte in 0..value.len() {
            for bit in 0..8 {
                let mut damaged = value.clone();
                damaged[byte] ^= 1 << bit;
                let err = decode_spans(&damaged, 2, 0..2).unwrap_err();
                assert_eq!(
                    err.is_corruption(),
                    byte != 0,
                    "byte {byte} bit {bit}: {err}"
                );
            }
        }
    }

    #[test]
    fn truncated_values_are_malformed_not_panics() {
        let value = encode_spans(&[b"span".to_vec()]);
        for len in 0..value.len() {
            assert!(decode_spans(&value[..len], 1, 0..1).is_err());
        }
    }

    #[test]
    fn segment_index_round_trips() {
        let records = vec![(5, 3, 700), (8, 1, 300)];
        let value = encode_index(8, &records);
        assert_eq!(decode_index(&value), Ok((8, records)));
        assert!(decode_index(&value[..value.len() - 1]).is_err());
        assert_eq!(parse_seq_key(&seq_key(PREFIX_INDEX, 42)), Some(42));
    }

    #[test]
    fn span_keys_sort_by_sequence() {
        assert!(span_key(255, 9) < span_key(256, 1));
        assert_eq!(parse_span_key(&span_key(42, 7)), Some((42, 7)));
        assert_eq!(parse_span_key(&span_key(42, 0)), None);
        assert_eq!(parse_span_key(b"s123"), None);
    }
}

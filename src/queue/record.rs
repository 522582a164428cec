//! The bytes the queue stores: keys and values in each segment's sled database, the value
//! envelope, and the span records of each segment's data file.
//!
//! Everything here is on-disk format (see the layout in [`crate::queue`]): changing a constant,
//! a field order or an integer width is a **breaking** change that needs a new version byte
//! and a migration. The span records of formats 1 and 2 (one sled value per record,
//! [`encode_spans`] / [`decode_spans`]) are kept for `auditspan queue migrate` and its tests.

use std::ops::Range;

/// Version byte at the start of every sled value (the envelope) this build writes, and of
/// the span record values of formats 1 and 2.
pub const RECORD_VERSION: u8 = 1;
/// Version byte at the start of a span record in a segment's data file (format 3).
pub const SPAN_RECORD_VERSION: u8 = 2;

/// Key prefix of the per-sink cursors: `c` + sink name → envelope(u64 BE last acknowledged sequence).
pub const PREFIX_CURSOR: u8 = b'c';
/// Key prefix of the file-tail checkpoints: `i` + input name → envelope(opaque bytes).
pub const PREFIX_INPUT: u8 = b'i';
/// Key prefix of the database's own facts: `m` + name → envelope(value).
pub const PREFIX_META: u8 = b'm';
/// Key prefix of the correlator's waiting entries: `p` + id → envelope(opaque bytes).
pub const PREFIX_PENDING: u8 = b'p';
/// Key prefix of the ids the correlator paired recently, to recognise repeats across a
/// restart: `d` + i64 BE wall-clock time to forget them (ns since the epoch) + u64 BE
/// window number → envelope(16-byte id keys, concatenated).
pub const PREFIX_PAIRED: u8 = b'd';
/// Key prefix of span records: `s` + u64 BE first sequence + u32 BE span count → (format 3)
/// envelope(u64 BE offset · u32 BE length) of the record in the segment's data file
/// ([`encode_location`]); (formats 1 and 2) the record itself ([`encode_spans`]).
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
/// Bytes before a data-file record's spans: version · u64 first sequence · u32 count.
pub const SPAN_RECORD_HEADER: usize = 1 + 8 + 4;
/// Bytes a data-file record adds besides its spans: header + CRC32.
pub const SPAN_RECORD_OVERHEAD: usize = SPAN_RECORD_HEADER + 4;
/// Bytes a record value of formats 1 and 2 adds besides its spans: envelope + span count.
pub const LEGACY_RECORD_OVERHEAD: usize = ENVELOPE_BYTES + 4;
/// Bytes each span adds to its record besides its own bytes: the length prefix.
pub const SPAN_PREFIX_BYTES: usize = 4;
/// Bytes of one entry of a closed segment's index: first · count · offset · length.
pub const INDEX_ENTRY_BYTES: usize = 8 + 4 + 8 + 4;

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

/// Size in bytes a record holding spans of these lengths takes: its key plus the record
/// in the data file. What `queue_bytes` and `max_bytes` count.
pub fn record_bytes(span_lens: impl IntoIterator<Item = usize>) -> u64 {
    let spans: usize = span_lens
        .into_iter()
        .map(|len| len + SPAN_PREFIX_BYTES)
        .sum();
    (SPAN_KEY_LEN + SPAN_RECORD_OVERHEAD + spans) as u64
}

/// Appends a data-file span record to `out`: u8 [`SPAN_RECORD_VERSION`] · u64 BE `first` ·
/// u32 BE `count` · `section` (count × (u32 BE length · span bytes), as
/// [`super::EncodedSpans::section`] holds it) · u32 BE CRC32 of everything before.
pub fn encode_record(out: &mut Vec<u8>, first: u64, count: u32, section: &[u8]) {
    let (header, crc) = record_frame(first, count, section);
    out.reserve(SPAN_RECORD_OVERHEAD + section.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(section);
    out.extend_from_slice(&crc);
}

/// What [`encode_record`] puts around `section`: the header, and the CRC32 of header and
/// section, so that a record can be written from the section where it lies (one vectored
/// write of header · section · CRC) instead of from a copy.
pub fn record_frame(first: u64, count: u32, section: &[u8]) -> ([u8; SPAN_RECORD_HEADER], [u8; 4]) {
    let mut header = [0; SPAN_RECORD_HEADER];
    header[0] = SPAN_RECORD_VERSION;
    header[1..9].copy_from_slice(&first.to_be_bytes());
    header[9..].copy_from_slice(&count.to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&header);
    crc.update(section);
    (header, crc.finalize().to_be_bytes())
}

/// Checks a data-file record that the index says starts at sequence `first` and holds
/// `count` spans (version, checksum, header, lengths), and calls `span(index, range)` with
/// each span's place in `record`, in order. Nothing is called unless all of it is valid.
pub fn parse_record(
    record: &[u8],
    first: u64,
    count: u32,
    mut span: impl FnMut(usize, Range<usize>),
) -> Result<(), RecordError> {
    let Some(&version) = record.first() else {
        return Err(RecordError::Malformed("empty record"));
    };
    if version != SPAN_RECORD_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    if record.len() < SPAN_RECORD_OVERHEAD {
        return Err(RecordError::Malformed("shorter than its header"));
    }
    let (body, crc) = record.split_at(record.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(RecordError::Checksum { stored, computed });
    }
    let mut header = &body[1..SPAN_RECORD_HEADER];
    if take_u64(&mut header)? != first {
        return Err(RecordError::Malformed("record of another sequence"));
    }
    if take_u32(&mut header)? != count {
        return Err(RecordError::Malformed("span count differs from its key"));
    }
    // Walk the lengths first, so that a bad one is found before any span is reported.
    let mut at = SPAN_RECORD_HEADER;
    for _ in 0..count {
        let len = body
            .get(at..at + SPAN_PREFIX_BYTES)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(RecordError::Malformed("truncated length"))?;
        at += SPAN_PREFIX_BYTES;
        if body.len() - at < len {
            return Err(RecordError::Malformed("span longer than its record"));
        }
        at += len;
    }
    if at != body.len() {
        return Err(RecordError::Malformed("bytes after the last span"));
    }
    let mut at = SPAN_RECORD_HEADER;
    for index in 0..count as usize {
        let len = u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
        at += SPAN_PREFIX_BYTES;
        span(index, at..at + len);
        at += len;
    }
    Ok(())
}

/// The header of a data-file record: version, first sequence and count, unchecked (for
/// the version check at open, which reads only the header).
pub fn record_header(header: &[u8; SPAN_RECORD_HEADER]) -> (u8, u64, u32) {
    let mut rest = &header[1..];
    let first = take_u64(&mut rest).unwrap_or_default();
    let count = take_u32(&mut rest).unwrap_or_default();
    (header[0], first, count)
}

/// The value of a format 3 `s` key: where the record is in the segment's data file.
pub fn encode_location(offset: u64, len: u32) -> Vec<u8> {
    let mut payload = [0; 12];
    payload[..8].copy_from_slice(&offset.to_be_bytes());
    payload[8..].copy_from_slice(&len.to_be_bytes());
    encode_envelope(&payload)
}

/// Decodes [`encode_location`]: offset and length in the data file.
pub fn decode_location(value: &[u8]) -> Result<(u64, u32), RecordError> {
    let mut payload = decode_envelope(value)?;
    let offset = take_u64(&mut payload)?;
    let len = take_u32(&mut payload)?;
    if !payload.is_empty() {
        return Err(RecordError::Malformed("location longer than 12 bytes"));
    }
    Ok((offset, len))
}

/// Encodes a span record value of formats 1 and 2: envelope(u32 BE count · (u32 BE length ·
/// span bytes)…).
pub fn encode_spans(spans: &[Vec<u8>]) -> Vec<u8> {
    let len: usize = spans.iter().map(|s| s.len() + SPAN_PREFIX_BYTES).sum();
    let mut out = Vec::with_capacity(LEGACY_RECORD_OVERHEAD + len);
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
/// value of formats 1 and 2 that its key says holds `count` spans.
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

/// One record in a closed segment's index: first sequence, span count, and the record's
/// offset and length in the segment's data file.
pub type IndexEntry = (u64, u32, u64, u32);

/// Encodes a closed segment's index payload: u64 BE last sequence of the segment ·
/// n × (u64 BE first · u32 BE count · u64 BE offset · u32 BE length), in the envelope.
pub fn encode_index(last: u64, records: &[IndexEntry]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(8 + records.len() * INDEX_ENTRY_BYTES);
    payload.extend_from_slice(&last.to_be_bytes());
    for (first, count, offset, len) in records {
        payload.extend_from_slice(&first.to_be_bytes());
        payload.extend_from_slice(&count.to_be_bytes());
        payload.extend_from_slice(&offset.to_be_bytes());
        payload.extend_from_slice(&len.to_be_bytes());
    }
    encode_envelope(&payload)
}

/// Decodes [`encode_index`]: the segment's last sequence and its records.
pub fn decode_index(value: &[u8]) -> Result<(u64, Vec<IndexEntry>), RecordError> {
    let mut payload = decode_envelope(value)?;
    let last = take_u64(&mut payload)?;
    if payload.len() % INDEX_ENTRY_BYTES != 0 {
        return Err(RecordError::Malformed(
            "index length is not a whole number of entries",
        ));
    }
    let mut out = Vec::with_capacity(payload.len() / INDEX_ENTRY_BYTES);
    while !payload.is_empty() {
        let first = take_u64(&mut payload)?;
        let count = take_u32(&mut payload)?;
        let offset = take_u64(&mut payload)?;
        let len = take_u32(&mut payload)?;
        out.push((first, count, offset, len));
    }
    Ok((last, out))
}

/// Decodes a closed segment's index of format 2: the segment's last sequence and, per
/// record, (first sequence, count), from entries of u64 first · u32 count · u64 bytes.
pub fn decode_format_2_index(value: &[u8]) -> Result<(u64, Vec<(u64, u32)>), RecordError> {
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
        take_u64(&mut payload)?;
        out.push((first, count));
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

    fn record(first: u64, spans: &[&[u8]]) -> Vec<u8> {
        let section: crate::queue::EncodedSpans = spans.iter().collect();
        let mut out = Vec::new();
        encode_record(
            &mut out,
            first,
            spans.len() as u32,
            section.section(0..spans.len()),
        );
        out
    }

    fn spans_of(record: &[u8], first: u64, count: u32) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut out = Vec::new();
        parse_record(record, first, count, |_, range| {
            out.push(record[range].to_vec())
        })?;
        Ok(out)
    }

    /// A data-file record round-trips, its size is what `record_bytes` counts, and a record
    /// read for the wrong sequence or count is refused.
    #[test]
    fn span_record_round_trips_and_sizes_match_the_layout() {
        let spans: [&[u8]; 3] = [b"a", b"", &[7; 300]];
        let value = record(42, &spans);
        assert_eq!(
            record_bytes(spans.iter().map(|s| s.len())),
            (SPAN_KEY_LEN + value.len()) as u64
        );
        assert_eq!(spans_of(&value, 42, 3).unwrap(), spans.map(<[u8]>::to_vec));
        assert_eq!(
            spans_of(&value, 42, 2),
            Err(RecordError::Malformed("span count differs from its key"))
        );
        assert_eq!(
            spans_of(&value, 41, 3),
            Err(RecordError::Malformed("record of another sequence"))
        );
        let header: [u8; SPAN_RECORD_HEADER] = value[..SPAN_RECORD_HEADER].try_into().unwrap();
        assert_eq!(record_header(&header), (SPAN_RECORD_VERSION, 42, 3));
        assert_eq!(decode_location(&encode_location(7, 99)), Ok((7, 99)));
    }

    /// Every flipped bit of a record is caught: by the checksum, or as an unknown version
    /// when it is the version byte.
    #[test]
    fn every_flipped_bit_is_detected() {
        let value = record(1, &[b"span one", b"span two"]);
        for byte in 0..value.len() {
            for bit in 0..8 {
                let mut damaged = value.clone();
                damaged[byte] ^= 1 << bit;
                let err = spans_of(&damaged, 1, 2).unwrap_err();
                assert_eq!(
                    err.is_corruption(),
                    byte != 0,
                    "byte {byte} bit {bit}: {err}"
                );
            }
        }
    }

    /// A record cut anywhere is an error, never a panic.
    #[test]
    fn truncated_values_are_malformed_not_panics() {
        let value = record(1, &[b"span"]);
        for len in 0..value.len() {
            assert!(spans_of(&value[..len], 1, 1).is_err());
        }
        let legacy = encode_spans(&[b"span".to_vec()]);
        for len in 0..legacy.len() {
            assert!(decode_spans(&legacy[..len], 1, 0..1).is_err());
        }
    }

    /// The record values of formats 1 and 2 still decode (for the migration).
    #[test]
    fn legacy_records_decode() {
        let spans = vec![b"a".to_vec(), Vec::new(), vec![7; 300]];
        let value = encode_spans(&spans);
        assert_eq!(decode_spans(&value, 3, 0..3).unwrap(), spans);
        assert_eq!(decode_spans(&value, 3, 1..3).unwrap(), spans[1..].to_vec());
    }

    /// A closed segment's index round-trips; one of format 2 decodes too.
    #[test]
    fn segment_index_round_trips() {
        let records = vec![(5, 3, 0, 700), (8, 1, 700, 300)];
        let value = encode_index(8, &records);
        assert_eq!(decode_index(&value), Ok((8, records)));
        assert!(decode_index(&value[..value.len() - 1]).is_err());
        assert_eq!(parse_seq_key(&seq_key(PREFIX_INDEX, 42)), Some(42));
        let mut v2 = 8u64.to_be_bytes().to_vec();
        for (first, count, bytes) in [(5u64, 3u32, 700u64), (8, 1, 300)] {
            v2.extend_from_slice(&first.to_be_bytes());
            v2.extend_from_slice(&count.to_be_bytes());
            v2.extend_from_slice(&bytes.to_be_bytes());
        }
        assert_eq!(
            decode_format_2_index(&encode_envelope(&v2)),
            Ok((8, vec![(5, 3), (8, 1)]))
        );
    }

    #[test]
    fn span_keys_sort_by_sequence() {
        assert!(span_key(255, 9) < span_key(256, 1));
        assert_eq!(parse_span_key(&span_key(42, 7)), Some((42, 7)));
        assert_eq!(parse_span_key(&span_key(42, 0)), None);
        assert_eq!(parse_span_key(b"s123"), None);
    }
}

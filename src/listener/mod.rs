//! Inputs: framing bytes into lines and lines into events (DESIGN "What happens to each
//! line"). [`Framer`] and [`LineHandler`] are shared by every input and by `import`, so
//! that a line is treated the same wherever it comes from.

pub mod unix;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use memchr::memchr;
use metrics::Counter;
use tracing::warn;

use crate::{
    deadletter::Rejected,
    event::{AuditEvent, InvalidReason, ParseLimits, Parsed, parse_line},
    telemetry::metrics as m,
};

/// Bytes of an oversized line kept for the dead-letter file.
pub const TOO_LONG_HEAD_BYTES: usize = 4096;

/// One framed line, or the report of one that was too long.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    /// A line without its `\n` (and without a `\r` before it).
    Line(&'a [u8]),
    /// A line longer than `max_line_bytes`: its first [`TOO_LONG_HEAD_BYTES`] and its length.
    TooLong { head: Vec<u8>, len: usize },
}

/// Splits a byte stream into `\n`-terminated lines of at most `max_line_bytes`.
///
/// Memory stays bounded by `max_line_bytes` plus one read: a longer line is skipped to its
/// end, keeping only its head, and the lines after it are framed as usual.
pub struct Framer {
    max_line_bytes: usize,
    /// Unframed bytes; readers append here (see [`Framer::buffer`]).
    buf: Vec<u8>,
    /// Bytes of `buf` already known to hold no `\n`.
    scanned: usize,
    /// The oversized line being skipped: its head and the bytes seen so far.
    skipping: Option<(Vec<u8>, usize)>,
}

impl Framer {
    pub fn new(max_line_bytes: usize) -> Self {
        Framer {
            max_line_bytes,
            buf: Vec::with_capacity(64 * 1024),
            scanned: 0,
            skipping: None,
        }
    }

    /// The buffer readers append to, with room for at least `reserve` more bytes.
    pub fn buffer(&mut self, reserve: usize) -> &mut Vec<u8> {
        self.buf.reserve(reserve);
        &mut self.buf
    }

    /// Frames every complete line in the buffer.
    pub fn drain(&mut self, mut emit: impl FnMut(Frame<'_>)) {
        let mut start = 0;
        while let Some(i) = memchr(b'\n', &self.buf[self.scanned..]) {
            let end = self.scanned + i;
            let line = &self.buf[start..end];
            match self.skipping.take() {
                Some((mut head, seen)) => {
                    let room = TOO_LONG_HEAD_BYTES
                        .saturating_sub(head.len())
                        .min(line.len());
                    head.extend_from_slice(&line[..room]);
                    emit(Frame::TooLong {
                        head,
                        len: seen + line.len(),
                    })
                }
                None => emit(self.frame(line)),
            }
            start = end + 1;
            self.scanned = start;
        }
        let rest = self.buf.len() - start;
        if let Some((head, seen)) = &mut self.skipping {
            let room = TOO_LONG_HEAD_BYTES.saturating_sub(head.len()).min(rest);
            head.extend_from_slice(&self.buf[start..start + room]);
            *seen += rest;
            self.buf.clear();
        } else if rest > self.max_line_bytes {
            let head = self.buf[start..start + TOO_LONG_HEAD_BYTES.min(rest)].to_vec();
            self.skipping = Some((head, rest));
            self.buf.clear();
        } else {
            self.buf.drain(..start);
        }
        self.scanned = self.buf.len();
    }

    /// At end of stream: the last line if it had no `\n` (a file's last line, or a client
    /// that disconnected mid-line; parsing decides whether it is whole).
    pub fn finish(&mut self, mut emit: impl FnMut(Frame<'_>)) {
        self.drain(&mut emit);
        if let Some((head, seen)) = self.skipping.take() {
            emit(Frame::TooLong { head, len: seen });
        } else if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            emit(self.frame(&line));
        }
        self.buf.clear();
        self.scanned = 0;
    }

    fn frame<'a>(&self, line: &'a [u8]) -> Frame<'a> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line_bytes {
            Frame::TooLong {
                head: line[..TOO_LONG_HEAD_BYTES.min(line.len())].to_vec(),
                len: line.len(),
            }
        } else {
            Frame::Line(line)
        }
    }
}

/// What one input's lines came to, for `import`'s summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LineCounts {
    pub received: u64,
    pub events: u64,
    /// Indexed like [`InvalidReason::ALL`].
    pub invalid: [u64; 5],
    pub audit_test: u64,
}

/// Parses framed lines of one input: valid events and rejected lines collect in batches,
/// every line is counted by outcome.
pub struct LineHandler {
    input: Arc<str>,
    prefix: String,
    limits: ParseLimits,
    received: Counter,
    invalid: [Counter; 5],
    audit_test: Counter,
    truncated: [Counter; 3],
    counts: LineCounts,
    events: Vec<AuditEvent>,
    rejected: Vec<Rejected>,
    log_limit: LogLimit,
}

impl LineHandler {
    pub fn new(input: &str, prefix: String, limits: ParseLimits) -> Self {
        LineHandler {
            input: Arc::from(input),
            prefix,
            limits,
            received: m::events_received(input),
            invalid: InvalidReason::ALL.map(|r| m::events_invalid(input, r.as_str())),
            audit_test: m::events_ignored(input, "audit_test"),
            truncated: ["depth", "attributes", "value_bytes"].map(m::attributes_truncated),
            counts: LineCounts::default(),
            events: Vec::new(),
            rejected: Vec::new(),
            log_limit: LogLimit::new(),
        }
    }

    pub fn handle(&mut self, frame: Frame<'_>) {
        self.received.increment(1);
        self.counts.received += 1;
        match frame {
            Frame::Line(line) => match parse_line(line, &self.prefix, &self.limits) {
                Ok(Parsed::Event(event)) => {
                    let t = event.truncations;
                    for (counter, n) in
                        self.truncated
                            .iter()
                            .zip([t.depth, t.attributes, t.value_bytes])
                    {
                        if n > 0 {
                            counter.increment(u64::from(n));
                        }
                    }
                    self.counts.events += 1;
                    self.events.push(*event);
                }
                Ok(Parsed::AuditTest) => {
                    self.counts.audit_test += 1;
                    self.audit_test.increment(1);
                }
                Err(err) => self.reject(err.reason, line.to_vec(), line.len(), &err.detail),
            },
            Frame::TooLong { head, len } => {
                let detail = format!("longer than max_line_bytes ({len} bytes)");
                self.reject(InvalidReason::TooLong, head, len, &detail);
            }
        }
    }

    fn reject(&mut self, reason: InvalidReason, line: Vec<u8>, len: usize, detail: &str) {
        let i = InvalidReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.invalid[i].increment(1);
        self.counts.invalid[i] += 1;
        if let Some(suppressed) = self.log_limit.allow() {
            warn!(input = %self.input, reason = reason.as_str(), bytes = len, detail, suppressed, "Rejected a line; it is in the dead-letter file.");
        }
        self.rejected.push(Rejected {
            received: jiff::Timestamp::now(),
            input: Arc::clone(&self.input),
            reason: reason.as_str(),
            line,
        });
    }

    /// The events and rejected lines collected since the last call.
    pub fn take(&mut self) -> (Vec<AuditEvent>, Vec<Rejected>) {
        // The batch goes to another thread; the next one starts at this one's size rather
        // than regrowing from empty (events are a few hundred bytes each).
        let events = Vec::with_capacity(self.events.len());
        (
            std::mem::replace(&mut self.events, events),
            std::mem::take(&mut self.rejected),
        )
    }

    pub fn counts(&self) -> LineCounts {
        self.counts
    }
}

/// At most [`LogLimit::PER_SECOND`] warnings a second per input, so that a stream of garbage
/// cannot flood the logs; the next warning says how many were left out.
struct LogLimit {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl LogLimit {
    const PER_SECOND: u32 = 5;

    fn new() -> Self {
        LogLimit {
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    fn allow(&mut self) -> Option<u64> {
        if self.window.elapsed() >= Duration::from_secs(1) {
            self.window = Instant::now();
            self.logged = 0;
        }
        if self.logged < Self::PER_SECOND {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut framer = Framer::new(max);
        let mut out = Vec::new();
        let mut record = |f: Frame<'_>| match f {
            Frame::Line(l) => out.push(String::from_utf8_lossy(l).into_owned()),
            Frame::TooLong { head, len } => out.push(format!("TOO_LONG({},{len})", head.len())),
        };
        for chunk in chunks {
            framer.buffer(chunk.len()).extend_from_slice(chunk);
            framer.drain(&mut record);
        }
        framer.finish(&mut record);
        out
    }

    #[test]
    fn frames_lf_and_crlf_across_chunks() {
        assert_eq!(
            frames(100, &[b"ab", b"c\r\nde", b"f\n\ng"]),
            ["abc", "def", "", "g"]
        );
    }

    #[test]
    fn oversized_line_is_skipped_to_its_end() {
        let long = vec![b'x'; 10_000];
        let mut input = b"ok1\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nok2\n");
        for chunk in [1usize, 7, 4096, 100_000] {
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            assert_eq!(
                frames(100, &chunks),
                ["ok1", "TOO_LONG(4096,10000)", "ok2"],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn oversized_line_at_end_of_stream() {
        let long = vec![b'y'; 500];
        assert_eq!(frames(100, &[b"a\n", &long]), ["a", "TOO_LONG(500,500)"]);
    }

    #[test]
    fn line_of_exactly_max_bytes_passes() {
        let line = vec![b'z'; 100];
        let mut input = line.clone();
        input.extend_from_slice(b"\r\n");
        assert_eq!(frames(100, &[&input]), ["z".repeat(100)]);
    }
}

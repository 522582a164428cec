//! [`LineHandler`]: what every input does with a framed line (DESIGN "What happens to each
//! line"): parse it, count it by outcome, and collect valid events and rejected lines in
//! batches for [`super::Delivery`].
//!
//! Invariant: every framed line is counted exactly once in `events_received_total` and
//! exactly once more by its outcome (an event, `events_invalid_total{reason}` with a
//! dead-letter record, or `events_ignored_total{reason="audit_test"}`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use metrics::Counter;
use tracing::warn;

use super::Frame;
use crate::{
    deadletter::Rejected,
    event::{AuditEvent, InvalidReason, ParseLimits, Parsed, parse_line},
    telemetry::metrics as m,
};

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
        match frame {
            Frame::Line(line) => self.handle_wrapped(line, line, &[]),
            Frame::TooLong { head, len } => {
                self.received.increment(1);
                self.counts.received += 1;
                let detail = format!("longer than max_line_bytes ({len} bytes)");
                self.reject(InvalidReason::TooLong, head, len, &detail);
            }
        }
    }

    /// One line that came wrapped (a syslog message): `payload` is what is parsed, `whole`
    /// what a rejection dead-letters, and `extra` attributes (`syslog.hostname`, ...) are
    /// added to the event, each cut to `parse.max_value_bytes`, unless the event has
    /// that key already.
    pub fn handle_wrapped(&mut self, whole: &[u8], payload: &[u8], extra: &[(&str, &str)]) {
        self.received.increment(1);
        self.counts.received += 1;
        match parse_line(payload, &self.prefix, &self.limits) {
            Ok(Parsed::Event(mut event)) => {
                for (key, value) in extra {
                    if event.attributes.contains_key(key) {
                        continue;
                    }
                    let mut cut = (*value).len().min(self.limits.max_value_bytes);
                    while !value.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    // Full only past u32::MAX bytes of text: the attribute is then left out.
                    event.attributes.push_str(key, &value[..cut]).ok();
                }
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
            Err(err) => self.reject(err.reason, whole.to_vec(), whole.len(), &err.detail),
        }
    }

    /// Whether events or rejected lines wait to be taken.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.rejected.is_empty()
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

//! [`OctetFramer`]: syslog over TCP (RFC 6587), where each message is either
//! octet-counted (`LEN SP MSG`, what rsyslog's `TCP_Framing="octet-counted"` and
//! syslog-ng's `syslog()` driver send) or newline-terminated ("non-transparent framing",
//! rsyslog's default). The two may even alternate: the choice is made per frame.
//!
//! - A frame that starts with a digit 1–9 is octet-counted: up to 9 digits, one space,
//!   then exactly that many bytes. One longer than `max_line_bytes` is skipped to its end
//!   (its head kept for the dead-letter file) and reported as [`Frame::TooLong`].
//! - A frame that starts with digits not followed by a space within 10 bytes is no octet
//!   count: it is counted ([`OctetFramer::take_malformed`]) and read up to its newline.
//! - Any other frame ends at `\n` (a `\r` before it is dropped), as in [`super::Framer`].
//! - Newlines, carriage returns and NULs between frames are skipped (some senders end an
//!   octet-counted frame with a newline anyway).
//!
//! Memory stays bounded by `max_line_bytes` plus one read.

use memchr::memchr;

use super::{Frame, TOO_LONG_HEAD_BYTES};

/// Digits of an octet count, at most (999,999,999 bytes).
const MAX_COUNT_DIGITS: usize = 9;

/// What is being skipped: an oversized frame's head and length, and the bytes still to
/// skip (octet-counted) or `None` (up to the next newline).
struct Skip {
    head: Vec<u8>,
    len: usize,
    left: Option<usize>,
}

/// Splits a syslog TCP stream into messages; see the module doc.
pub struct OctetFramer {
    max_line_bytes: usize,
    buf: Vec<u8>,
    skipping: Option<Skip>,
    /// The frame at the start of `buf` was found to be newline-framed and waits for its
    /// newline (so it is not looked at, or counted, again).
    in_line: bool,
    malformed: u64,
}

impl OctetFramer {
    pub fn new(max_line_bytes: usize) -> Self {
        OctetFramer {
            max_line_bytes,
            buf: Vec::with_capacity(64 * 1024),
            skipping: None,
            in_line: false,
            malformed: 0,
        }
    }

    /// The buffer readers append to, with room for at least `reserve` more bytes.
    pub fn buffer(&mut self, reserve: usize) -> &mut Vec<u8> {
        self.buf.reserve(reserve);
        &mut self.buf
    }

    /// Frames that were no octet count since the last call.
    pub fn take_malformed(&mut self) -> u64 {
        std::mem::take(&mut self.malformed)
    }

    /// Emits every complete frame in the buffer.
    pub fn drain(&mut self, mut emit: impl FnMut(Frame<'_>)) {
        let mut start = 0;
        loop {
            if let Some(skip) = &mut self.skipping {
                let rest = &self.buf[start..];
                match skip.left {
                    Some(left) => {
                        let n = left.min(rest.len());
                        keep_head(&mut skip.head, &rest[..n]);
                        start += n;
                        skip.left = Some(left - n);
                        if left > n {
                            break;
                        }
                    }
                    None => match memchr(b'\n', rest) {
                        Some(i) => {
                            keep_head(&mut skip.head, &rest[..i]);
                            skip.len += i;
                            start += i + 1;
                        }
                        None => {
                            keep_head(&mut skip.head, rest);
                            skip.len += rest.len();
                            start = self.buf.len();
                            break;
                        }
                    },
                }
                if let Some(skip) = self.skipping.take() {
                    emit(Frame::TooLong {
                        head: skip.head,
                        len: skip.len,
                    });
                }
                continue;
            }
            while !self.in_line
                && start < self.buf.len()
                && matches!(self.buf[start], b'\n' | b'\r' | 0)
            {
                start += 1;
            }
            let rest = &self.buf[start..];
            if rest.is_empty() {
                break;
            }
            if !self.in_line && (b'1'..=b'9').contains(&rest[0]) {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                if digits < rest.len() && digits <= MAX_COUNT_DIGITS && rest[digits] == b' ' {
                    let len: usize = rest[..digits]
                        .iter()
                        .fold(0, |n, d| n * 10 + usize::from(d - b'0'));
                    let body = digits + 1;
                    if len > self.max_line_bytes {
                        start += body;
                        self.skipping = Some(Skip {
                            head: Vec::new(),
                            len,
                            left: Some(len),
                        });
                        continue;
                    }
                    if rest.len() < body + len {
                        break;
                    }
                    emit(Frame::Line(&rest[body..body + len]));
                    start += body + len;
                    continue;
                }
                if digits == rest.len() && digits <= MAX_COUNT_DIGITS {
                    // The count may go on in the next read.
                    break;
                }
                self.malformed += 1;
            }
            match memchr(b'\n', rest) {
                Some(i) => {
                    let line = rest[..i].strip_suffix(b"\r").unwrap_or(&rest[..i]);
                    if line.len() > self.max_line_bytes {
                        emit(Frame::TooLong {
                            head: line[..TOO_LONG_HEAD_BYTES.min(line.len())].to_vec(),
                            len: line.len(),
                        });
                    } else {
                        emit(Frame::Line(line));
                    }
                    start += i + 1;
                    self.in_line = false;
                }
                None if rest.len() > self.max_line_bytes => {
                    self.skipping = Some(Skip {
                        head: rest[..TOO_LONG_HEAD_BYTES.min(rest.len())].to_vec(),
                        len: rest.len(),
                        left: None,
                    });
                    self.in_line = false;
                    start = self.buf.len();
                    break;
                }
                None => {
                    self.in_line = true;
                    break;
                }
            }
        }
        self.buf.drain(..start);
    }

    /// At the end of the stream: the complete frames, then what is left of an unfinished
    /// one as a line of its own (parsing decides what it is: usually not JSON).
    pub fn finish(&mut self, mut emit: impl FnMut(Frame<'_>)) {
        self.drain(&mut emit);
        if let Some(skip) = self.skipping.take() {
            emit(Frame::TooLong {
                head: skip.head,
                len: skip.len,
            });
        } else if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest);
            emit(Frame::Line(rest));
        }
        self.buf.clear();
        self.in_line = false;
    }
}

fn keep_head(head: &mut Vec<u8>, bytes: &[u8]) {
    let room = TOO_LONG_HEAD_BYTES
        .saturating_sub(head.len())
        .min(bytes.len());
    head.extend_from_slice(&bytes[..room]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunk: usize, input: &[u8]) -> (Vec<String>, u64) {
        let mut framer = OctetFramer::new(max);
        let mut out = Vec::new();
        let mut record = |f: Frame<'_>| match f {
            Frame::Line(l) => out.push(String::from_utf8_lossy(l).into_owned()),
            Frame::TooLong { head, len } => out.push(format!("TOO_LONG({},{len})", head.len())),
        };
        for piece in input.chunks(chunk) {
            framer.buffer(piece.len()).extend_from_slice(piece);
            framer.drain(&mut record);
        }
        framer.finish(&mut record);
        let malformed = framer.take_malformed();
        (out, malformed)
    }

    /// Octet-counted and newline-framed messages, mixed, cut into reads of every size.
    #[test]
    fn frames_both_framings_across_reads() {
        let input = b"11 <13>a\nb c d4 <1>x<13>line one\r\n\n5 <1>yz\n<13>last";
        for chunk in 1..input.len() {
            assert_eq!(
                frames(100, chunk, input).0,
                ["<13>a\nb c d", "<1>x", "<13>line one", "<1>yz", "<13>last"],
                "chunk {chunk}"
            );
        }
    }

    /// An octet count past `max_line_bytes` skips exactly that frame; a digit run without
    /// its space is counted and read as a line.
    #[test]
    fn oversized_and_malformed_counts() {
        let mut input = b"300 ".to_vec();
        input.extend(std::iter::repeat_n(b'x', 300));
        input.extend_from_slice(b"3 abc12345678901 not a count\n4 <1>z");
        for chunk in [1, 7, 1000] {
            let (out, malformed) = frames(100, chunk, &input);
            assert_eq!(
                out,
                [
                    "TOO_LONG(300,300)",
                    "abc",
                    "12345678901 not a count",
                    "<1>z"
                ],
                "chunk {chunk}"
            );
            assert_eq!(malformed, 1);
        }
    }

    /// A newline-framed message longer than the limit is skipped to its newline; a frame
    /// cut off by the end of the stream comes out as it is.
    #[test]
    fn long_line_and_partial_frame() {
        let mut input = vec![b'<'; 150];
        input.extend_from_slice(b"\n<1>ok\n20 <1>cut");
        let (out, _) = frames(100, 16, &input);
        assert_eq!(out, ["TOO_LONG(150,150)", "<1>ok", "20 <1>cut"]);
    }
}

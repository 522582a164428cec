//! The dead-letter file: every rejected line and every span a backend rejected for good, so
//! that nothing Vault wrote is lost.
//!
//! One JSON object per line: `{"received": RFC 3339, "input": name, "reason": ..., "line":
//! text}`, or `"line_base64"` when the line is not UTF-8; for a span,
//! `{"received", "reason": "rejected", "sink": name, "message": the backend's reason,
//! "span": the span as the stdout sink writes it}`. The file is created on first use
//! with mode 0600 (it holds audit data), rotates to `<path>.1` once it would pass
//! `max_bytes`, and is reopened on [`Reopen`] (SIGHUP), so that logrotate can move it.
//!
//! Rejected spans leave the queue only once they are here: their batch is written with one
//! call and `fdatasync`ed before [`WriteSpans`] answers `Ok`, and a write that fails (a
//! full disk, a path that is not writable) is cut back off the file, so a retry never
//! leaves half a record or a record twice. The sink worker keeps such spans in the queue
//! and retries; while the last write failed the actor publishes it ([`DeadLetter::writable`],
//! read by `/readyz`) and counts each failure (`auditspan_deadletter_write_errors_total`).

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    sync::Arc,
};

use actix::prelude::*;
use base64::Engine;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, info};

use crate::telemetry::metrics as m;

/// One rejected line.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub received: jiff::Timestamp,
    pub input: Arc<str>,
    pub reason: &'static str,
    /// The line as read (for `too_long`, its first 4 KiB).
    pub line: Vec<u8>,
}

/// One span a sink's backend rejected for good.
#[derive(Debug, Clone)]
pub struct RejectedSpan {
    pub received: jiff::Timestamp,
    pub sink: String,
    pub message: String,
    /// The span's JSON object (the stdout sink's encoding), without a newline.
    pub span: Vec<u8>,
}

/// Rejected spans to append, in order.
#[derive(Message)]
#[rtype(result = "Result<(), DeadLetterError>")]
pub struct WriteSpans(pub Vec<RejectedSpan>);

/// Lines to append, in order.
#[derive(Message)]
#[rtype(result = "Result<(), DeadLetterError>")]
pub struct WriteLines(pub Vec<Rejected>);

/// Close the file and open it again at its path (SIGHUP).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reopen;

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The file could not be opened, rotated or written.
    #[error("dead-letter file {path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The dead-letter writer actor.
pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    size: u64,
    /// Whether the last write succeeded (`/readyz`).
    writable: watch::Sender<bool>,
}

impl DeadLetter {
    pub fn new(path: PathBuf, max_bytes: u64) -> Self {
        DeadLetter {
            path,
            max_bytes,
            file: None,
            size: 0,
            writable: watch::channel(true).0,
        }
    }

    /// Whether the last write succeeded; `false` until one does after a failure.
    pub fn writable(&self) -> watch::Receiver<bool> {
        self.writable.subscribe()
    }

    fn io_error(&self, cause: std::io::Error) -> DeadLetterError {
        DeadLetterError::Io {
            path: self.path.clone(),
            cause,
        }
    }

    /// Publishes and counts the outcome of a write.
    fn outcome(&self, result: &Result<(), DeadLetterError>) {
        if result.is_err() {
            m::deadletter_write_errors().increment(1);
        }
        self.writable.send_if_modified(|writable| {
            let changed = *writable != result.is_ok();
            *writable = result.is_ok();
            changed
        });
    }

    fn open(&mut self) -> Result<&mut File, DeadLetterError> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.path)
                .map_err(|e| self.io_error(e))?;
            self.size = file.metadata().map_err(|e| self.io_error(e))?.len();
            self.file = Some(file);
        }
        self.file.as_mut().ok_or_else(|| DeadLetterError::Io {
            path: PathBuf::new(),
            cause: std::io::Error::other("dead-letter file not open"),
        })
    }

    fn rotate(&mut self) -> Result<(), DeadLetterError> {
        self.file = None;
        let mut rotated = self.path.clone().into_os_string();
        rotated.push(".1");
        std::fs::rename(&self.path, &rotated).map_err(|e| self.io_error(e))?;
        info!(path = %self.path.display(), "Rotated the dead-letter file.");
        self.size = 0;
        Ok(())
    }

    /// Appends the records; used by the actor and directly by tests.
    pub fn append(&mut self, records: &[Rejected]) -> Result<(), DeadLetterError> {
        let mut buf = Vec::new();
        for record in records {
            buf.clear();
            encode(record, &mut buf);
            self.write(&buf, false)?;
        }
        Ok(())
    }

    /// Appends rejected spans with one write, then `fdatasync`: once this returns `Ok` they
    /// may leave the queue.
    pub fn append_spans(&mut self, records: &[RejectedSpan]) -> Result<(), DeadLetterError> {
        let mut buf = Vec::new();
        for record in records {
            encode_span(record, &mut buf);
        }
        self.write(&buf, true)
    }

    /// Writes encoded records, rotating first if they would pass `max_bytes`; with `sync`,
    /// `fdatasync`s them. On failure what was written is cut off again and the file is
    /// reopened by the next write, so the file holds whole records only.
    fn write(&mut self, buf: &[u8], sync: bool) -> Result<(), DeadLetterError> {
        if buf.is_empty() {
            return Ok(());
        }
        self.open()?;
        if self.size > 0 && self.size + buf.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        let before = self.size;
        let file = self.open()?;
        let written = file
            .write_all(buf)
            .and_then(|()| if sync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Best effort: if even this fails, a retry appends after the torn part, and
            // readers of the file skip a line that is not JSON.
            file.set_len(before).ok();
            self.file = None;
            return Err(self.io_error(e));
        }
        self.size += buf.len() as u64;
        Ok(())
    }
}

#[derive(Serialize)]
struct SpanRecord<'a> {
    received: String,
    reason: &'a str,
    sink: &'a str,
    message: &'a str,
    span: &'a serde_json::value::RawValue,
}

fn encode_span(record: &RejectedSpan, out: &mut Vec<u8>) {
    let Some(span) = std::str::from_utf8(&record.span)
        .ok()
        .and_then(|text| serde_json::from_str::<&serde_json::value::RawValue>(text).ok())
    else {
        error!(sink = %record.sink, "A rejected span did not encode as JSON; it is not dead-lettered.");
        return;
    };
    let json = SpanRecord {
        received: record.received.to_string(),
        reason: "rejected",
        sink: &record.sink,
        message: &record.message,
        span,
    };
    if serde_json::to_writer(&mut *out, &json).is_ok() {
        out.push(b'\n');
    }
}

#[derive(Serialize)]
struct Record<'a> {
    received: String,
    input: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_base64: Option<String>,
}

fn encode(record: &Rejected, out: &mut Vec<u8>) {
    let (line, line_base64) = match std::str::from_utf8(&record.line) {
        Ok(text) => (Some(text), None),
        Err(_) => (
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(&record.line)),
        ),
    };
    let json = Record {
        received: record.received.to_string(),
        input: &record.input,
        reason: record.reason,
        line,
        line_base64,
    };
    // Serializing plain strings to a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &json).is_ok() {
        out.push(b'\n');
    }
}

impl Actor for DeadLetter {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        // Present at 0 from the start, so an alert can use increase().
        m::deadletter_write_errors().increment(0);
    }
}

impl Handler<WriteLines> for DeadLetter {
    type Result = Result<(), DeadLetterError>;

    fn handle(&mut self, msg: WriteLines, _: &mut Self::Context) -> Self::Result {
        let result = self.append(&msg.0);
        self.outcome(&result);
        if let Err(err) = &result {
            error!(error = %err, lines = msg.0.len(), "Could not write rejected lines to the dead-letter file.");
        }
        result
    }
}

impl Handler<WriteSpans> for DeadLetter {
    type Result = Result<(), DeadLetterError>;

    fn handle(&mut self, msg: WriteSpans, _: &mut Self::Context) -> Self::Result {
        let result = self.append_spans(&msg.0);
        self.outcome(&result);
        if let Err(err) = &result {
            error!(error = %err, spans = msg.0.len(), "Could not write rejected spans to the dead-letter file.");
        }
        result
    }
}

impl Handler<Reopen> for DeadLetter {
    type Result = ();

    fn handle(&mut self, _: Reopen, _: &mut Self::Context) {
        self.file = None;
        info!(path = %self.path.display(), "Reopening the dead-letter file.");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn rejected(line: &[u8]) -> Rejected {
        Rejected {
            received: jiff::Timestamp::UNIX_EPOCH,
            input: Arc::from("unix"),
            reason: "not_json",
            line: line.to_vec(),
        }
    }

    #[test]
    fn writes_text_and_base64_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deadletter.jsonl");
        let mut dl = DeadLetter::new(path.clone(), 1 << 20);
        dl.append(&[rejected(b"hello"), rejected(&[0xff, 0x00])])
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            concat!(
                r#"{"received":"1970-01-01T00:00:00Z","input":"unix","reason":"not_json","line":"hello"}"#,
                "\n",
                r#"{"received":"1970-01-01T00:00:00Z","input":"unix","reason":"not_json","line_base64":"/wA="}"#,
                "\n"
            )
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn rotates_past_max_bytes_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dl.jsonl");
        let mut dl = DeadLetter::new(path.clone(), 150);
        dl.append(&[rejected(b"first")]).unwrap();
        dl.append(&[rejected(b"second")]).unwrap();
        let rotated = dir.path().join("dl.jsonl.1");
        assert!(std::fs::read_to_string(&rotated).unwrap().contains("first"));
        assert!(std::fs::read_to_string(&path).unwrap().contains("second"));
        // A reopen after the file was moved away writes to a new file at the path.
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        dl.file = None;
        dl.append(&[rejected(b"third")]).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("third"));
    }
}

//! `tee = "stdout"`: every raw line an input reads, copied byte for byte to the daemon's
//! stdout, so that `kubectl logs` still shows the audit log while spans go to the sinks.
//!
//! [`TeeReader`] wraps the input's reader: every chunk read is also sent to a thread of
//! the tee's own, which writes whole lines to stdout (an unfinished line waits for its
//! newline, so two inputs teeing at once never cut each other's lines; a line longer than
//! the input's `max_line_bytes` is written in pieces). The channel is bounded: a stdout
//! that blocks slows the reads, as a blocked sink would, instead of growing memory. A
//! write that fails (stdout closed) is logged once and counted
//! (`auditspan_input_errors_total{reason="tee"}`); the input reads on.

use std::{
    io::{self, Write},
    pin::Pin,
    task::{Context, Poll, ready},
};

use memchr::memrchr;
use tokio::{
    io::{AsyncRead, ReadBuf},
    sync::{mpsc, oneshot},
};
use tokio_util::sync::PollSender;
use tracing::warn;

use crate::telemetry::metrics as m;

/// Chunks waiting for the tee's thread, at most.
const TEE_CHUNKS: usize = 16;

/// The sending end of a tee, and the way to wait for its thread.
pub struct Tee {
    tx: PollSender<Vec<u8>>,
    done: oneshot::Receiver<()>,
}

impl Tee {
    /// Starts the thread that writes to stdout for `input`.
    pub fn stdout(input: &str, max_line_bytes: usize) -> io::Result<Tee> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(TEE_CHUNKS);
        let (done_tx, done) = oneshot::channel();
        let failed = m::input_errors(input, m::INPUT_ERROR_TEE);
        let name = input.to_owned();
        std::thread::Builder::new()
            .name(format!("tee-{input}"))
            .spawn(move || {
                let mut lines = LineTee {
                    pending: Vec::new(),
                    max: max_line_bytes.max(1),
                    broken: false,
                };
                while let Some(chunk) = rx.blocking_recv() {
                    if let Err(err) = lines.push(&chunk) {
                        failed.increment(1);
                        warn!(input = %name, error = %err, "Copying lines to stdout failed; no more lines are copied.");
                    }
                }
                if let Err(err) = lines.finish() {
                    failed.increment(1);
                    warn!(input = %name, error = %err, "Copying lines to stdout failed.");
                }
                done_tx.send(()).ok();
            })?;
        Ok(Tee {
            tx: PollSender::new(tx),
            done,
        })
    }

    /// `reader`, with every byte read also copied by this tee.
    pub fn reader<R>(self, reader: R) -> TeeReader<R> {
        TeeReader {
            inner: reader,
            tee: Some(self),
        }
    }

    /// Closes the tee and waits until its thread has written everything.
    pub async fn finish(self) {
        drop(self.tx);
        // The thread answers when its channel is drained; gone means it died.
        self.done.await.ok();
    }
}

/// Whole lines to stdout; what follows the last newline waits for the next chunk.
struct LineTee {
    pending: Vec<u8>,
    max: usize,
    /// A write failed: everything after it is dropped.
    broken: bool,
}

impl LineTee {
    fn push(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.broken {
            return Ok(());
        }
        match memrchr(b'\n', chunk) {
            Some(i) => {
                let (lines, rest) = chunk.split_at(i + 1);
                let result = if self.pending.is_empty() {
                    write_out(&[lines])
                } else {
                    write_out(&[&self.pending, lines])
                };
                self.pending.clear();
                self.pending.extend_from_slice(rest);
                self.check(result)
            }
            None => {
                self.pending.extend_from_slice(chunk);
                if self.pending.len() > self.max {
                    let result = write_out(&[&self.pending]);
                    self.pending.clear();
                    return self.check(result);
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.broken || self.pending.is_empty() {
            return Ok(());
        }
        let result = write_out(&[&self.pending]);
        self.pending.clear();
        self.check(result)
    }

    fn check(&mut self, result: io::Result<()>) -> io::Result<()> {
        if result.is_err() {
            self.broken = true;
        }
        result
    }
}

/// Writes `parts` to stdout under one lock, so no other writer cuts into them.
fn write_out(parts: &[&[u8]]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for part in parts {
        out.write_all(part)?;
    }
    out.flush()
}

/// A reader whose every read is also sent to a [`Tee`].
pub struct TeeReader<R> {
    inner: R,
    tee: Option<Tee>,
}

impl<R> TeeReader<R> {
    /// The tee, to [`Tee::finish`] once reading is over.
    pub fn into_tee(self) -> Option<Tee> {
        self.tee
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for TeeReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Room for the chunk before it is read: a blocked stdout slows the reads.
        if let Some(tee) = &mut this.tee
            && ready!(tee.tx.poll_reserve(cx)).is_err()
        {
            this.tee = None;
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty()
            && let Some(tee) = &mut this.tee
            && tee.tx.send_item(read.to_vec()).is_err()
        {
            this.tee = None;
        }
        Poll::Ready(Ok(()))
    }
}

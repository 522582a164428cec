//! Inputs: where audit events come in. Every input plugs into the parts here, so that a
//! line is treated the same wherever it comes from:
//!
//! - [`Framer`] splits bytes into lines of at most `max_line_bytes`;
//! - [`LineHandler`] parses and counts each line, collecting events and rejected lines;
//! - [`Delivery`] hands them to the dead-letter writer and the correlator, one batch in
//!   flight, so a slow pipeline slows the reads instead of growing memory;
//! - [`StreamReader`] is the one read loop over them, used by every stream input (each
//!   unix connection) and by `import`;
//! - [`InputContext`] is what every input is given; [`Shutdown`] is the one way inputs
//!   and their connections are told to stop, and the way the daemon learns they have.
//!
//! A new input type adds a variant to [`BoundInput`], binds in [`bind`] (before anything
//! runs, so a bad address or path stops the daemon at start) and runs its accept or read
//! loop in [`BoundInput::run`], reporting to `/readyz` whether it listens.
//!
//! The file inputs (issue #12) add: `file/` (files followed like `tail -F`, with exact
//! resume from checkpoints committed with the spans), `fifo.rs` (a named pipe auditspan
//! owns), `stdin.rs` (the daemon's standard input, which ends the daemon at its end) and
//! `tee.rs` (the raw lines copied to stdout). An input whose [`BoundInput::run`] returns
//! before shutdown has ended (stdin at EOF); once every input has, the daemon shuts down.
//! The network inputs (issue #11) add: `tcp.rs` (Vault's socket device over TCP, like
//! unix), `datagram.rs` (the one receive loop of every datagram socket: udp, and syslog on
//! udp or a unix datagram socket), `udp.rs`, `syslog.rs` (syslog header → JSON, and
//! syslog over TCP with `octet.rs`'s RFC 6587 framer), `http.rs` (OpenBao's http device,
//! acknowledged after the commit) and `peers.rs` (a stream per datagram peer or http
//! client, and the delivery of events of several streams).

pub mod datagram;
pub mod fifo;
pub mod file;
pub mod http;
pub mod lines;
pub mod octet;
pub mod peers;
pub mod stdin;
pub mod syslog;
pub mod tcp;
pub mod tee;
pub mod udp;
pub mod unix;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use memchr::memchr;
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    sync::watch,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, warn};

pub use lines::{LineCounts, LineHandler};

use crate::{
    config::{InputConfig, InputKind},
    correlate::{Correlator, Ingest, InputId, Source, StreamClosed, StreamId},
    deadletter::{DeadLetter, WriteLines},
    event::ParseLimits,
    queue::actor::QueueState,
    telemetry::ready::InputReporter,
};

/// Why an input could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Another process accepts connections on the socket path.
    #[error("socket {path} is in use by another process (is another auditspan running?)")]
    InUse { path: PathBuf },
    /// Something other than a socket exists at the path; we never delete it.
    #[error("{path} exists and is not a socket; remove it or choose another path")]
    NotASocket { path: PathBuf },
    /// Binding, replacing or setting the mode failed.
    #[error("socket {path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    /// Something other than a named pipe exists at a fifo input's path; we never delete it.
    #[error("{path} exists and is not a named pipe (FIFO); remove it or choose another path")]
    NotAFifo { path: PathBuf },
    /// Creating, opening or setting the mode of a named pipe (or stdin) failed.
    #[error("{what} {path}: {cause}")]
    Open {
        what: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    /// A file input's directory cannot be watched or listed at start.
    #[error("input {input}: {reason}")]
    File { input: String, reason: String },
    /// A network input could not bind its address (in use, not an address of this host,
    /// a privileged port).
    #[error("input {input}: cannot listen on {address}: {cause}")]
    Bind {
        input: String,
        address: SocketAddr,
        cause: io::Error,
    },
    /// The http input's bearer token variable is unset, empty or not UTF-8.
    #[error(
        "input {input}: environment variable {var} (auth_token_env) is not set, empty or not UTF-8"
    )]
    AuthToken { input: String, var: String },
    /// The http input's certificate or key could not be read or used.
    #[error("input {input}: TLS {path}: {reason}")]
    Tls {
        input: String,
        path: PathBuf,
        reason: String,
    },
}

/// An input whose socket or file is bound, ready to run.
pub enum BoundInput {
    Unix(unix::Bound),
    File(file::Bound),
    Fifo(fifo::Bound),
    Stdin(stdin::Bound),
    Tcp(tcp::Bound),
    Udp(datagram::Bound),
    /// Boxed: it carries the TLS configuration.
    Http(Box<http::Bound>),
    Syslog(syslog::Bound),
}

/// Binds the input `config` describes.
pub fn bind(config: &InputConfig) -> Result<BoundInput, ListenerError> {
    match &config.kind {
        InputKind::Unix(u) => Ok(BoundInput::Unix(unix::bind(&u.path, u.mode)?)),
        InputKind::File(f) => Ok(BoundInput::File(file::bind(config, f)?)),
        InputKind::Fifo(f) => Ok(BoundInput::Fifo(fifo::bind(f)?)),
        InputKind::Stdin(s) => Ok(BoundInput::Stdin(stdin::bind(s)?)),
        InputKind::Tcp(address) => Ok(BoundInput::Tcp(tcp::bind(&config.name, *address)?)),
        InputKind::Udp(address) => Ok(BoundInput::Udp(udp::bind(config, *address)?)),
        InputKind::Http(settings) => Ok(BoundInput::Http(Box::new(http::bind(config, settings)?))),
        InputKind::Syslog(settings) => Ok(BoundInput::Syslog(syslog::bind(config, settings)?)),
    }
}

impl BoundInput {
    /// Runs the input until `ctx.shutdown` is signalled (spawn it with
    /// [`Shutdown::track`]); `ready` tells `/readyz` whether it listens meanwhile.
    pub async fn run(self, ctx: InputContext, ready: InputReporter) {
        match self {
            BoundInput::Unix(bound) => unix::run(bound, ctx, ready).await,
            BoundInput::File(bound) => file::run(bound, ctx, ready).await,
            BoundInput::Fifo(bound) => fifo::run(bound, ctx, ready).await,
            BoundInput::Stdin(bound) => stdin::run(bound, ctx, ready).await,
            BoundInput::Tcp(bound) => tcp::run(bound, ctx, ready).await,
            BoundInput::Udp(bound) => udp::run(bound, ctx, ready).await,
            BoundInput::Http(bound) => http::run(*bound, ctx, ready).await,
            BoundInput::Syslog(bound) => syslog::run(bound, ctx, ready).await,
        }
    }
}

/// What every input is given.
#[derive(Clone)]
pub struct InputContext {
    /// The input's name: the `input` metric label and dead-letter field.
    pub name: Arc<str>,
    /// The input's index in the correlator's list of inputs.
    pub id: InputId,
    pub prefix: String,
    pub max_line_bytes: usize,
    pub limits: ParseLimits,
    pub correlator: Addr<Correlator>,
    pub deadletter: Addr<DeadLetter>,
    pub shutdown: Shutdown,
    /// Where connections are read.
    pub readers: Readers,
    /// What the last run committed as this input's position (file inputs), read from the
    /// queue at start.
    pub checkpoint: Option<Arc<[u8]>>,
    /// What the queue publishes: the http input answers 503 while it refuses writes.
    pub queue_state: watch::Receiver<QueueState>,
}

impl InputContext {
    /// A handler for this input's lines.
    pub fn line_handler(&self) -> LineHandler {
        LineHandler::new(&self.name, self.prefix.clone(), self.limits)
    }

    /// A reader for one stream of this input (a connection; each has its own event clock).
    pub fn stream_reader(&self, source: Source) -> StreamReader {
        StreamReader::new(
            self.max_line_bytes,
            self.line_handler(),
            Delivery::new(source, self.correlator.clone(), self.deadletter.clone()),
        )
    }
}

/// The threads that read connections, taken in turn: parsing is the most expensive step,
/// so connections are spread over one thread per core.
#[derive(Clone)]
pub struct Readers {
    threads: Arc<[ArbiterHandle]>,
    next: Arc<AtomicUsize>,
}

impl Readers {
    pub fn new(threads: Vec<ArbiterHandle>) -> Self {
        Readers {
            threads: threads.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `task` on the next reader thread (on the current one when there are none).
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if self.threads.is_empty() {
            actix::spawn(task);
            return;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.threads[i].spawn(task);
    }
}

/// The one shutdown mechanism of the inputs: [`Shutdown::begin`] tells every input and
/// connection to stop; each of them runs wrapped in [`Shutdown::track`], so that
/// [`Shutdown::finished`] completes once the last one has handed over what it read.
#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells every input and connection to stop.
    pub fn begin(&self) {
        self.tracker.close();
        self.token.cancel();
    }

    /// Whether [`Shutdown::begin`] was called.
    pub fn is_signalled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once [`Shutdown::begin`] was called.
    pub async fn signalled(&self) {
        self.token.cancelled().await;
    }

    /// `task`, counted until it ends.
    pub fn track<F: Future>(&self, task: F) -> impl Future<Output = F::Output> + use<F> {
        self.tracker.track_future(task)
    }

    /// Completes once shutdown began and every tracked task has ended.
    pub async fn finished(&self) {
        self.tracker.wait().await;
    }
}

/// Stream ids handed out to connections, files and datagram peers; below this, ids are
/// inputs' own (`import`, tests).
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1 << 32);

/// A stream id no other stream of this process has: every connection, file and datagram
/// peer has its own event clock in the correlator.
pub fn new_stream() -> StreamId {
    NEXT_STREAM.fetch_add(1, Ordering::Relaxed)
}

/// Makes room to bind a unix socket at `path`: a stale socket file (one `probe` cannot
/// connect to: nobody listens on it) is removed; a live one, or a path that is not a
/// socket, is an error. The unix listener and the unix datagram inputs share it; each
/// probes with its own socket type.
pub(crate) fn replace_stale_socket(
    path: &Path,
    probe: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), ListenerError> {
    use std::os::unix::fs::FileTypeExt;
    let io_err = |source| ListenerError::Io {
        path: path.to_owned(),
        cause: source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match probe(path) {
            Ok(()) => Err(ListenerError::InUse {
                path: path.to_owned(),
            }),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(io_err)?;
                warn!(path = %path.display(), "Replaced a stale socket file from an earlier run.");
                Ok(())
            }
            Err(e) => Err(io_err(e)),
        },
        Ok(_) => Err(ListenerError::NotASocket {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}

/// Bytes read from a stream at a time, at most.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// At shutdown, a stream silent this long has nothing more to give.
pub(crate) const DRAIN_IDLE: Duration = Duration::from_millis(100);
/// At shutdown, the longest a stream is still read.
pub(crate) const DRAIN_MAX: Duration = Duration::from_secs(2);

/// The one read loop: reads a byte stream, frames it, parses each line and delivers the
/// events and rejected lines after every read (or, with [`StreamReader::batch_lines`],
/// once that many lines gathered).
pub struct StreamReader {
    framer: Framer,
    lines: LineHandler,
    delivery: Delivery,
    batch_lines: u64,
    /// Lines framed since the last delivery.
    undelivered: u64,
}

impl StreamReader {
    pub fn new(max_line_bytes: usize, lines: LineHandler, delivery: Delivery) -> Self {
        StreamReader {
            framer: Framer::new(max_line_bytes),
            lines,
            delivery,
            batch_lines: 1,
            undelivered: 0,
        }
    }

    /// Delivers only once `lines` lines gathered (and at the end of each stream): for
    /// `import`, where the latency of one read does not matter and larger batches keep its
    /// output the same however the file is cut into reads.
    pub fn batch_lines(mut self, lines: u64) -> Self {
        self.batch_lines = lines.max(1);
        self
    }

    /// Frames what was read (or, at the end, the rest) and delivers when a batch is due.
    async fn take(&mut self, end: bool, read_at: Instant) {
        let before = self.lines.counts().received;
        if end {
            self.framer.finish(|f| self.lines.handle(f));
        } else {
            self.framer.drain(|f| self.lines.handle(f));
        }
        self.undelivered += self.lines.counts().received - before;
        if end || self.undelivered >= self.batch_lines {
            self.delivery.send(&mut self.lines, read_at).await;
            self.undelivered = 0;
        }
    }

    /// Reads `reader` to its end; a last line without its newline is taken as it is
    /// (parsing decides whether it is whole). With `shutdown`, it also stops when that is
    /// signalled, after taking what the writer had sent by then (a line it had not
    /// finished is not taken). The framer is ready for another stream afterwards, so one
    /// reader can read several files in turn (`import`).
    pub async fn read_to_end<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        shutdown: Option<&Shutdown>,
    ) -> io::Result<()> {
        let stop = async {
            match shutdown {
                Some(shutdown) => shutdown.signalled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stop);
        loop {
            let read = tokio::select! {
                read = reader.read_buf(self.framer.buffer(READ_CHUNK)) => read,
                () = &mut stop => {
                    self.read_what_is_buffered(reader).await;
                    self.delivery.send(&mut self.lines, Instant::now()).await;
                    self.undelivered = 0;
                    return Ok(());
                }
            };
            let read_at = Instant::now();
            match read {
                Ok(0) => {
                    self.take(true, read_at).await;
                    return Ok(());
                }
                Ok(_) => self.take(false, read_at).await,
                Err(err) => {
                    // A broken stream ends like a closed one.
                    self.take(true, read_at).await;
                    return Err(err);
                }
            }
        }
    }

    /// Frames and parses what the writer has sent by now. A read that finds nothing for
    /// [`DRAIN_IDLE`] ends it (a writer still sending is cut off after [`DRAIN_MAX`]); a
    /// non-blocking read would not do: tokio answers it from cached readiness, which may
    /// not have seen the last bytes yet.
    async fn read_what_is_buffered<R: AsyncRead + Unpin>(&mut self, reader: &mut R) {
        let started = Instant::now();
        while started.elapsed() < DRAIN_MAX {
            let read = reader.read_buf(self.framer.buffer(READ_CHUNK));
            match tokio::time::timeout(DRAIN_IDLE, read).await {
                Ok(Ok(0)) => {
                    self.framer.finish(|f| self.lines.handle(f));
                    return;
                }
                Ok(Ok(_)) => self.framer.drain(|f| self.lines.handle(f)),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        self.framer.reset();
    }

    /// Waits until the correlator has everything delivered, and tells it the stream ended
    /// (its event clock goes once its entries do). Returns what the lines came to.
    pub async fn close(mut self) -> LineCounts {
        self.delivery.settle().await;
        let stream = self.delivery.source.stream;
        if self
            .delivery
            .correlator
            .send(StreamClosed(stream))
            .await
            .is_err()
        {
            debug!("The correlator is gone.");
        }
        self.lines.counts()
    }

    /// What the lines came to so far.
    pub fn counts(&self) -> LineCounts {
        self.lines.counts()
    }
}

/// Hands what a [`LineHandler`] collected to the dead-letter writer and the correlator.
///
/// One batch of events stays in flight: the next chunk is read and parsed while the
/// correlator works on the last one, and [`Delivery::send`] waits for that one's answer
/// before it offers the next, so batches arrive in order and memory stays bounded.
pub struct Delivery {
    source: Source,
    correlator: Addr<Correlator>,
    deadletter: Addr<DeadLetter>,
    in_flight: Option<actix::dev::Request<Correlator, Ingest>>,
}

impl Delivery {
    pub fn new(source: Source, correlator: Addr<Correlator>, deadletter: Addr<DeadLetter>) -> Self {
        Delivery {
            source,
            correlator,
            deadletter,
            in_flight: None,
        }
    }

    /// `read_at`: when the bytes the events came from were read (commit latency starts).
    pub async fn send(&mut self, lines: &mut LineHandler, read_at: Instant) {
        self.send_from(self.source, lines, read_at, None).await;
    }

    /// [`Delivery::send`] for the stream `source` (an input reading several streams in
    /// turn, one batch each: the file input), with a `checkpoint` stored in the same
    /// commit as what these events and every earlier one made. A checkpoint travels even
    /// when the batch holds no event (only rejected lines, or none: a position to keep).
    pub async fn send_from(
        &mut self,
        source: Source,
        lines: &mut LineHandler,
        read_at: Instant,
        checkpoint: Option<(String, Vec<u8>)>,
    ) {
        let (events, rejected) = lines.take();
        if !rejected.is_empty() {
            // The dead-letter actor logs its own write failures.
            if self.deadletter.send(WriteLines(rejected)).await.is_err() {
                warn!(
                    input = self.source.input,
                    "The dead-letter writer is gone; rejected lines dropped."
                );
            }
        }
        if events.is_empty() && checkpoint.is_none() {
            return;
        }
        self.settle().await;
        let mut ingest = Ingest::events(source, events, read_at);
        ingest.checkpoint = checkpoint;
        // `send` queues the message at once; awaiting it only waits for the answer.
        self.in_flight = Some(self.correlator.send(ingest));
    }

    /// Waits until the correlator has taken the batch in flight.
    pub async fn settle(&mut self) {
        if let Some(request) = self.in_flight.take()
            && request.await.is_err()
        {
            warn!(
                input = self.source.input,
                "The correlator is gone; events dropped."
            );
        }
    }
}

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

    /// Bytes given to the framer that are not framed yet: the unfinished last line (or the
    /// part of an oversized line skipped so far). A reader's position minus this is the end
    /// of the last line handed on.
    pub fn pending(&self) -> usize {
        match &self.skipping {
            Some((_, seen)) => *seen + self.buf.len(),
            None => self.buf.len(),
        }
    }

    /// Forgets an unfinished line, so the framer can take another stream.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.scanned = 0;
        self.skipping = None;
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

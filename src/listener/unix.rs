//! The unix-socket input: the target of Vault's / OpenBao's `socket` audit device with
//! `socket_type = "unix"`.
//!
//! [`UnixIngest`] owns the socket file and accepts connections; each connection is read
//! by its own task on one of the listener threads, which frames, parses and hands its
//! events to the correlator with `send().await`, so a slow pipeline slows the reads
//! instead of growing memory (Vault's write times out after `write_timeout`, 2 s by
//! default, which is why the pipeline must keep up).
//!
//! Invariants:
//! - The socket file is created with the configured mode (0600 by default) and removed
//!   when the input stops. A stale file from a crashed run (nobody answers) is replaced; a
//!   live one (another process answers) or a path that is not a socket is an error.
//! - A connection that breaks mid-line loses only that partial line; a line longer than
//!   `max_line_bytes` is skipped to its end and the connection carries on.

use std::{
    io,
    os::unix::{fs::FileTypeExt, fs::PermissionsExt, net::UnixListener as StdUnixListener},
    path::{Path, PathBuf},
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{Context as TaskContext, Poll},
    time::Instant,
};

use actix::prelude::*;
use tokio::{
    io::AsyncReadExt,
    net::UnixStream,
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

use super::{Framer, LineHandler};
use crate::{
    correlate::{Correlator, Ingest, InputId, Source, StreamClosed},
    deadletter::{Append, DeadLetter},
    event::ParseLimits,
    telemetry::ready::InputReporter,
};

/// Stream ids of connections; below this, ids are inputs' own (`import`, tests).
static NEXT_STREAM: AtomicU64 = AtomicU64::new(1 << 32);

/// At shutdown, a connection silent this long has nothing more to give.
const DRAIN_IDLE: std::time::Duration = std::time::Duration::from_millis(100);
/// At shutdown, the longest a connection is still read.
const DRAIN_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// Bytes read from a connection at a time, at most.
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// Another process accepts connections on the socket path.
    #[error("socket {path} is in use by another process (is another auditspan running?)")]
    InUse { path: PathBuf },
    /// Something other than a socket exists at the path; we never delete it.
    #[error("{path} exists and is not a socket; remove it or choose another path")]
    NotASocket { path: PathBuf },
    /// Binding, replacing or setting the mode failed.
    #[error("socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds `path`, replacing a stale socket file, and sets its mode.
pub fn bind(path: &Path, mode: u32) -> Result<StdUnixListener, ListenerError> {
    let io_err = |source| ListenerError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ListenerError::InUse {
                        path: path.to_owned(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(io_err)?;
                    warn!(path = %path.display(), "Replaced a stale socket file from an earlier run.");
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(_) => {
            return Err(ListenerError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let listener = StdUnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(listener)
}

/// Everything a connection task needs.
#[derive(Clone)]
pub struct ConnectionSettings {
    pub input: String,
    pub input_id: InputId,
    pub prefix: String,
    pub max_line_bytes: usize,
    pub limits: ParseLimits,
    pub correlator: Addr<Correlator>,
    pub deadletter: Addr<DeadLetter>,
}

/// The unix-socket input actor.
pub struct UnixIngest {
    path: PathBuf,
    listener: Option<StdUnixListener>,
    settings: ConnectionSettings,
    /// Threads that read connections, taken in turn.
    readers: Vec<ArbiterHandle>,
    next_reader: usize,
    shutdown: watch::Receiver<bool>,
    /// Each connection task holds a clone; the receiver sees `None` once all are done.
    connections_done: mpsc::Sender<()>,
    /// Tells `/readyz` whether this input accepts connections.
    ready: Option<InputReporter>,
}

impl UnixIngest {
    pub fn new(
        path: PathBuf,
        listener: StdUnixListener,
        settings: ConnectionSettings,
        readers: Vec<ArbiterHandle>,
        shutdown: watch::Receiver<bool>,
        connections_done: mpsc::Sender<()>,
    ) -> Self {
        UnixIngest {
            path,
            listener: Some(listener),
            settings,
            readers,
            next_reader: 0,
            shutdown,
            connections_done,
            ready: None,
        }
    }

    /// Reports to `/readyz` whether the input listens (from its start to its stop).
    pub fn with_readiness(mut self, reporter: InputReporter) -> Self {
        self.ready = Some(reporter);
        self
    }

    fn report_listening(&self, listening: bool) {
        if let Some(ready) = &self.ready {
            ready.listening(listening);
        }
    }
}

/// Stop accepting and remove the socket file; open connections finish on the shutdown
/// signal.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

struct Accept(tokio::net::UnixListener);

impl Stream for Accept {
    type Item = io::Result<UnixStream>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_accept(cx)
            .map(|r| Some(r.map(|(stream, _)| stream)))
    }
}

impl Actor for UnixIngest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        match tokio::net::UnixListener::from_std(listener) {
            Ok(listener) => {
                info!(input = %self.settings.input, path = %self.path.display(), "Listening.");
                ctx.add_stream(Accept(listener));
                self.report_listening(true);
            }
            Err(err) => {
                warn!(input = %self.settings.input, error = %err, "Could not register the socket.");
                ctx.stop();
            }
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.report_listening(false);
        if let Err(err) = std::fs::remove_file(&self.path)
            && err.kind() != io::ErrorKind::NotFound
        {
            warn!(path = %self.path.display(), error = %err, "Could not remove the socket file.");
        }
        info!(input = %self.settings.input, "Stopped listening.");
    }
}

impl StreamHandler<io::Result<UnixStream>> for UnixIngest {
    fn handle(&mut self, item: io::Result<UnixStream>, _: &mut Self::Context) {
        let stream = match item.and_then(UnixStream::into_std) {
            Ok(stream) => stream,
            Err(err) => {
                warn!(input = %self.settings.input, error = %err, "Accept failed.");
                return;
            }
        };
        let settings = self.settings.clone();
        let shutdown = self.shutdown.clone();
        let done = self.connections_done.clone();
        let task = async move {
            match UnixStream::from_std(stream) {
                Ok(stream) => read_connection(stream, settings, shutdown).await,
                Err(err) => warn!(error = %err, "Could not register a connection."),
            }
            drop(done);
        };
        if self.readers.is_empty() {
            actix::spawn(task);
        } else {
            let reader = &self.readers[self.next_reader % self.readers.len()];
            self.next_reader = self.next_reader.wrapping_add(1);
            reader.spawn(task);
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<Stop> for UnixIngest {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Reads one connection until it closes or shutdown is signalled.
async fn read_connection(
    mut stream: UnixStream,
    s: ConnectionSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    debug!(input = %s.input, "Connection opened.");
    let mut framer = Framer::new(s.max_line_bytes);
    let mut lines = LineHandler::new(&s.input, s.prefix.clone(), s.limits);
    // Every connection is its own stream: its own event clock in the correlator.
    let source = Source {
        input: s.input_id,
        stream: NEXT_STREAM.fetch_add(1, Ordering::Relaxed),
    };
    let mut delivery = Delivery::new(source, s.correlator.clone(), s.deadletter.clone());
    loop {
        let read = tokio::select! {
            read = stream.read_buf(framer.buffer(READ_CHUNK)) => read,
            _ = shutdown.changed() => {
                // What the client wrote before the stop is still taken; a line it has not
                // finished is not.
                read_what_is_buffered(&mut stream, &mut framer, &mut lines).await;
                delivery.send(&mut lines, Instant::now()).await;
                break;
            }
        };
        let read_at = Instant::now();
        let eof = match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => {
                warn!(input = %s.input, error = %err, "Connection read failed.");
                true
            }
        };
        if eof {
            framer.finish(|f| lines.handle(f));
        } else {
            framer.drain(|f| lines.handle(f));
        }
        delivery.send(&mut lines, read_at).await;
        if eof {
            break;
        }
    }
    delivery.settle().await;
    if s.correlator
        .send(StreamClosed(source.stream))
        .await
        .is_err()
    {
        debug!(input = %s.input, "The correlator is gone.");
    }
    debug!(input = %s.input, "Connection closed.");
}

/// Frames and parses what the client has written by now. A read that finds nothing for
/// [`DRAIN_IDLE`] ends it (a client still sending is cut off after [`DRAIN_MAX`]); a
/// non-blocking read would not do: tokio answers it from cached readiness, which may not
/// have seen the last bytes yet.
async fn read_what_is_buffered(
    stream: &mut UnixStream,
    framer: &mut Framer,
    lines: &mut LineHandler,
) {
    let started = Instant::now();
    while started.elapsed() < DRAIN_MAX {
        match tokio::time::timeout(DRAIN_IDLE, stream.read_buf(framer.buffer(READ_CHUNK))).await {
            Ok(Ok(0)) => {
                framer.finish(|f| lines.handle(f));
                return;
            }
            Ok(Ok(_)) => framer.drain(|f| lines.handle(f)),
            Ok(Err(_)) | Err(_) => return,
        }
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
        let (events, rejected) = lines.take();
        if !rejected.is_empty() {
            // The dead-letter actor logs its own write failures.
            if self.deadletter.send(Append(rejected)).await.is_err() {
                warn!(
                    input = self.source.input,
                    "The dead-letter writer is gone; rejected lines dropped."
                );
            }
        }
        if events.is_empty() {
            return;
        }
        self.settle().await;
        // `send` queues the message at once; awaiting it only waits for the answer.
        self.in_flight = Some(self.correlator.send(Ingest {
            source: self.source,
            events,
            read_at,
        }));
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

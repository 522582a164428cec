//! The unix-socket input: the target of Vault's / OpenBao's `socket` audit device with
//! `socket_type = "unix"`.
//!
//! [`run`] owns the socket file and accepts connections; each connection is read by its
//! own task on one of the reader threads through the shared [`StreamReader`], which hands
//! its events to the correlator with `send().await`, so a slow pipeline slows the reads
//! instead of growing memory (Vault's write times out after `write_timeout`, 2 s by
//! default, which is why the pipeline must keep up).
//!
//! Invariants:
//! - The socket file is created with the configured mode (0600 by default) and removed
//!   when the input stops. A stale file from a crashed run (nobody answers) is replaced; a
//!   live one (another process answers) or a path that is not a socket is an error.
//! - Every connection is its own stream, with its own event clock in the correlator.
//! - A connection that breaks mid-line loses only that partial line; a line longer than
//!   `max_line_bytes` is skipped to its end and the connection carries on.
//! - At shutdown, what a client wrote before the stop is still taken (see
//!   [`StreamReader::read_to_end`]).

use std::{
    io,
    os::unix::{fs::PermissionsExt, net::UnixListener as StdUnixListener},
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::net::UnixStream;
use tracing::{debug, info, warn};

use super::{InputContext, ListenerError, StreamReader};
use crate::{correlate::Source, telemetry::ready::InputReporter};

/// After a failed `accept` (e.g. out of file descriptors), the pause before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound socket and its path.
pub struct Bound {
    path: PathBuf,
    listener: StdUnixListener,
}

/// Binds `path`, replacing a stale socket file, and sets its mode.
pub fn bind(path: &Path, mode: u32) -> Result<Bound, ListenerError> {
    let io_err = |source| ListenerError::Io {
        path: path.to_owned(),
        cause: source,
    };
    super::replace_stale_socket(path, |path| {
        std::os::unix::net::UnixStream::connect(path).map(drop)
    })?;
    let listener = StdUnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    listener.set_nonblocking(true).map_err(io_err)?;
    Ok(Bound {
        path: path.to_owned(),
        listener,
    })
}

/// Accepts connections until shutdown, then removes the socket file.
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    let Bound { path, listener } = bound;
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            warn!(input = %ctx.name, error = %err, "Could not register the socket.");
            return;
        }
    };
    info!(input = %ctx.name, path = %path.display(), "Listening.");
    ready.listening(true);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ctx.shutdown.signalled() => break,
        };
        match accepted.and_then(|(stream, _)| stream.into_std()) {
            Ok(stream) => {
                let connection = read_connection(stream, ctx.clone());
                ctx.readers.spawn(ctx.shutdown.track(connection));
            }
            Err(err) => {
                warn!(input = %ctx.name, error = %err, "Accept failed.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    ready.listening(false);
    drop(listener);
    if let Err(err) = std::fs::remove_file(&path)
        && err.kind() != io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %err, "Could not remove the socket file.");
    }
    info!(input = %ctx.name, "Stopped listening.");
}

/// Reads one connection (registered on the reader thread it runs on) until it closes or
/// shutdown is signalled.
async fn read_connection(stream: std::os::unix::net::UnixStream, ctx: InputContext) {
    let mut stream = match UnixStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            warn!(input = %ctx.name, error = %err, "Could not register a connection.");
            return;
        }
    };
    debug!(input = %ctx.name, "Connection opened.");
    let source = Source {
        input: ctx.id,
        stream: super::new_stream(),
    };
    let mut reader: StreamReader = ctx.stream_reader(source);
    if let Err(err) = reader.read_to_end(&mut stream, Some(&ctx.shutdown)).await {
        warn!(input = %ctx.name, error = %err, "Connection read failed.");
    }
    reader.close().await;
    debug!(input = %ctx.name, "Connection closed.");
}

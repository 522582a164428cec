//! The TCP input: the target of Vault's / OpenBao's `socket` audit device with
//! `socket_type = "tcp"`.
//!
//! It works as the unix input does (see `unix.rs`): [`run`] accepts connections, each is
//! read by its own task on one of the reader threads through the shared
//! [`StreamReader`], so the line limit, the partial-line rule and the shutdown drain are
//! the same.
//!
//! Invariants:
//! - Every connection is its own stream, with its own event clock in the correlator.
//! - A connection that ends in half a line (the socket device redials after an error and
//!   retries the entry once) has that half counted as a line: it is not JSON, so it is
//!   counted `not_json` and dead-lettered, as on the unix input; its complete lines are
//!   kept. (A retried entry that arrives whole on the new connection is a duplicate of
//!   nothing, so it pairs normally.)
//! - At most [`MAX_CONNECTIONS`] connections are read at once; further ones wait in the
//!   listen backlog. Vault opens one per audit device.
//! - There is no TLS and no authentication (Vault's socket device has neither): bind it
//!   to loopback or a private interface.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpStream, sync::Semaphore};
use tracing::{debug, info, warn};

use super::{InputContext, ListenerError, StreamReader};
use crate::{correlate::Source, telemetry::ready::InputReporter};

/// Connections read at once, per tcp input.
pub const MAX_CONNECTIONS: usize = 1024;

/// After a failed `accept` (e.g. out of file descriptors), the pause before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A bound TCP listener.
pub struct Bound {
    address: SocketAddr,
    listener: std::net::TcpListener,
}

/// Binds `address` (port 0: any free port, logged once listening).
pub fn bind(input: &str, address: SocketAddr) -> Result<Bound, ListenerError> {
    let bind_err = |source| ListenerError::Bind {
        input: input.to_owned(),
        address,
        cause: source,
    };
    let listener = std::net::TcpListener::bind(address).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let address = listener.local_addr().map_err(bind_err)?;
    Ok(Bound { address, listener })
}

/// Accepts connections until shutdown, each read by [`read_connection`].
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    serve(bound, ctx, ready, read_connection).await;
}

/// Accepts connections until shutdown; each is read by `read` on a reader thread (the
/// syslog input reads its TCP connections with its own framing).
pub async fn serve<F, Fut>(bound: Bound, ctx: InputContext, ready: InputReporter, read: F)
where
    F: Fn(std::net::TcpStream, SocketAddr, InputContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Bound { address, listener } = bound;
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(err) => {
            warn!(input = %ctx.name, error = %err, "Could not register the socket.");
            return;
        }
    };
    info!(input = %ctx.name, %address, "Listening.");
    ready.listening(true);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            accepted = async {
                // Never closed, so acquiring cannot fail.
                let slot = Arc::clone(&slots).acquire_owned().await.ok();
                (listener.accept().await, slot)
            } => accepted,
            () = ctx.shutdown.signalled() => break,
        };
        match accepted {
            (Ok((stream, peer)), slot) => match stream.into_std() {
                Ok(stream) => {
                    let connection = read(stream, peer, ctx.clone());
                    let connection = async move {
                        connection.await;
                        drop(slot);
                    };
                    ctx.readers.spawn(ctx.shutdown.track(connection));
                }
                Err(err) => warn!(input = %ctx.name, error = %err, "Accept failed."),
            },
            (Err(err), _) => {
                warn!(input = %ctx.name, error = %err, "Accept failed.");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    ready.listening(false);
    info!(input = %ctx.name, "Stopped listening.");
}

/// Reads one connection (registered on the reader thread it runs on) until it closes or
/// shutdown is signalled.
async fn read_connection(stream: std::net::TcpStream, peer: SocketAddr, ctx: InputContext) {
    let mut stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            warn!(input = %ctx.name, error = %err, "Could not register a connection.");
            return;
        }
    };
    debug!(input = %ctx.name, %peer, "Connection opened.");
    let source = Source {
        input: ctx.id,
        stream: super::new_stream(),
    };
    let mut reader: StreamReader = ctx.stream_reader(source);
    if let Err(err) = reader.read_to_end(&mut stream, Some(&ctx.shutdown)).await {
        warn!(input = %ctx.name, %peer, error = %err, "Connection read failed.");
    }
    reader.close().await;
    debug!(input = %ctx.name, %peer, "Connection closed.");
}

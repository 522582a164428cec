//! The one receive loop of every datagram socket: the udp input, and the syslog input on
//! UDP or on a unix datagram socket.
//!
//! [`run`] moves the socket to a reader thread and reads there until shutdown. Each
//! wake-up takes every datagram waiting (at most [`MAX_BATCH`]), hands each to the
//! input's [`Datagrams`] handler (which frames, parses and picks the stream), and delivers
//! the batch with one batch in flight ([`GroupDelivery`]): while the correlator is busy,
//! datagrams wait in the socket's receive buffer (and past it the kernel drops them, as it
//! does for any UDP receiver; `netstat -su` counts those).
//!
//! Decisions:
//! - A datagram is read whole into a buffer of `max_line_bytes` + 1 bytes (at most
//!   [`MAX_UDP_BUFFER`] for UDP, which carries at most 65,507 bytes, and
//!   [`MAX_UNIX_BUFFER`] for unix datagrams). A longer datagram is cut by the kernel:
//!   `recvmsg` with `MSG_TRUNC` tells its real length, and it is counted in
//!   `auditspan_input_errors_total{reason="datagram_truncated"}` and rejected as one
//!   `too_long` line (its first 4 KiB dead-lettered).
//! - Each sender is its own stream (its own event clock), keyed by what the handler
//!   chooses ([`Peer`], plus the syslog host name for syslog); see [`super::peers`].
//! - The receive buffer (`SO_RCVBUF`) is raised to [`RECEIVE_BUFFER`] where the kernel
//!   allows (`net.core.rmem_max` caps it), to ride out bursts.
//! - At shutdown, the datagrams already in the socket buffer are still taken.

use std::{
    io,
    net::SocketAddr,
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::{FileTypeExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    time::Instant,
};

use nix::sys::socket::{
    MsgFlags, SockaddrLike, SockaddrStorage, recvmsg, setsockopt, sockopt::RcvBuf,
};
use tokio::io::Interest;
use tracing::{info, warn};

use super::{InputContext, ListenerError, peers::GroupDelivery};
use crate::telemetry::{metrics as m, ready::InputReporter};

/// Datagrams taken per wake-up, at most, before the batch is delivered.
pub const MAX_BATCH: usize = 1024;
/// The largest receive buffer of a UDP input: no UDP datagram is longer.
pub const MAX_UDP_BUFFER: usize = 64 * 1024;
/// The largest receive buffer of a unix datagram input.
pub const MAX_UNIX_BUFFER: usize = 16 * 1024 * 1024;
/// `SO_RCVBUF` asked for.
pub const RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// Who sent a datagram.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    Ip(SocketAddr),
    /// A unix datagram sender: its bound path, or `None` when it has none (the usual case:
    /// syslog clients do not bind).
    Unix(Option<PathBuf>),
}

/// What an input does with the datagrams it receives.
pub trait Datagrams: Send + 'static {
    /// One datagram from `peer`: `data` is what fitted in the buffer, `len` its real
    /// length (longer when it was truncated). Parses it into `delivery`.
    fn datagram(
        &mut self,
        data: &[u8],
        len: usize,
        peer: Peer,
        now: Instant,
        delivery: &mut GroupDelivery,
    );
    /// Closes the streams of senders gone quiet.
    fn sweep(&mut self, now: Instant);
    /// Closes every stream (the input stops).
    fn close(&mut self);
}

/// A bound datagram socket.
pub struct Bound {
    socket: Socket,
    /// Receive buffer size: `max_line_bytes` + 1, capped per socket type.
    buffer_bytes: usize,
}

enum Socket {
    Udp(std::net::UdpSocket),
    Unix {
        socket: std::os::unix::net::UnixDatagram,
        path: PathBuf,
    },
}

/// Binds a UDP socket on `address`.
pub fn bind_udp(
    input: &str,
    address: SocketAddr,
    max_line_bytes: usize,
) -> Result<Bound, ListenerError> {
    let bind_err = |source| ListenerError::Bind {
        input: input.to_owned(),
        address,
        cause: source,
    };
    let socket = std::net::UdpSocket::bind(address).map_err(bind_err)?;
    socket.set_nonblocking(true).map_err(bind_err)?;
    raise_receive_buffer(&socket);
    Ok(Bound {
        socket: Socket::Udp(socket),
        buffer_bytes: max_line_bytes.saturating_add(1).min(MAX_UDP_BUFFER),
    })
}

/// Binds a unix datagram socket at `path` with `mode`, replacing a stale socket file (one
/// nobody receives on); a live one, or a path that is not a socket, is an error.
pub fn bind_unix(path: &Path, mode: u32, max_line_bytes: usize) -> Result<Bound, ListenerError> {
    use std::os::unix::net::UnixDatagram;
    let io_err = |source| ListenerError::Io {
        path: path.to_owned(),
        cause: source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            let probe = UnixDatagram::unbound().map_err(io_err)?;
            match probe.connect(path) {
                Ok(()) => {
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
    let socket = UnixDatagram::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    socket.set_nonblocking(true).map_err(io_err)?;
    raise_receive_buffer(&socket);
    Ok(Bound {
        socket: Socket::Unix {
            socket,
            path: path.to_owned(),
        },
        buffer_bytes: max_line_bytes.saturating_add(1).min(MAX_UNIX_BUFFER),
    })
}

/// Asks for a [`RECEIVE_BUFFER`] receive buffer; the kernel caps it at `rmem_max`, and a
/// refusal only leaves the default.
fn raise_receive_buffer(socket: &impl AsFd) {
    setsockopt(socket, RcvBuf, &RECEIVE_BUFFER).ok();
}

/// The registered socket, on the thread that reads it.
enum Registered {
    Udp(tokio::net::UdpSocket),
    Unix(tokio::net::UnixDatagram),
}

impl Registered {
    async fn readable(&self) -> io::Result<()> {
        match self {
            Registered::Udp(s) => s.readable().await,
            Registered::Unix(s) => s.readable().await,
        }
    }

    /// One datagram into `buf`: its real length and sender, or `WouldBlock`.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, Peer)> {
        match self {
            Registered::Udp(s) => s.try_io(Interest::READABLE, || recv(s.as_raw_fd(), buf)),
            Registered::Unix(s) => s.try_io(Interest::READABLE, || recv(s.as_raw_fd(), buf)),
        }
    }
}

/// `recvmsg` with `MSG_TRUNC`: the datagram's real length even when `buf` was too short.
fn recv(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<(usize, Peer)> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        fd,
        &mut iov,
        None,
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let peer = match msg.address {
        Some(a) if a.family().is_some() => peer_of(&a),
        _ => Peer::Unix(None),
    };
    Ok((msg.bytes, peer))
}

fn peer_of(address: &SockaddrStorage) -> Peer {
    if let Some(a) = address.as_sockaddr_in() {
        return Peer::Ip(SocketAddr::V4((*a).into()));
    }
    if let Some(a) = address.as_sockaddr_in6() {
        return Peer::Ip(SocketAddr::V6((*a).into()));
    }
    Peer::Unix(
        address
            .as_unix_addr()
            .and_then(|u| u.path())
            .map(Path::to_path_buf),
    )
}

/// Reads `bound` on a reader thread until shutdown, handing datagrams to `handler`;
/// returns once it stopped (and removed its socket file).
pub async fn run<H: Datagrams>(bound: Bound, ctx: InputContext, ready: InputReporter, handler: H) {
    let (done, finished) = tokio::sync::oneshot::channel();
    let readers = ctx.readers.clone();
    readers.spawn(async move {
        receive(bound, ctx, ready, handler).await;
        done.send(()).ok();
    });
    // An error only means the reader thread is gone (the daemon is stopping).
    finished.await.ok();
}

async fn receive<H: Datagrams>(
    bound: Bound,
    ctx: InputContext,
    ready: InputReporter,
    mut handler: H,
) {
    let Bound {
        socket,
        buffer_bytes,
    } = bound;
    let (socket, path) = match socket {
        Socket::Udp(s) => (
            tokio::net::UdpSocket::from_std(s).map(Registered::Udp),
            None,
        ),
        Socket::Unix { socket, path } => (
            tokio::net::UnixDatagram::from_std(socket).map(Registered::Unix),
            Some(path),
        ),
    };
    let socket = match socket {
        Ok(socket) => socket,
        Err(err) => {
            warn!(input = %ctx.name, error = %err, "Could not register the socket.");
            return;
        }
    };
    match (&socket, &path) {
        (Registered::Udp(s), _) => {
            let address = s.local_addr().map(|a| a.to_string()).unwrap_or_default();
            info!(input = %ctx.name, %address, "Listening.");
        }
        (_, Some(path)) => info!(input = %ctx.name, path = %path.display(), "Listening."),
        _ => {}
    }
    ready.listening(true);
    let truncated = m::input_errors(&ctx.name, m::INPUT_ERROR_DATAGRAM_TRUNCATED);
    let mut buf = vec![0u8; buffer_bytes];
    let mut delivery = GroupDelivery::new(ctx.id, ctx.correlator.clone(), ctx.deadletter.clone());
    let mut stopping = false;
    loop {
        if !stopping {
            tokio::select! {
                readable = socket.readable() => {
                    if let Err(err) = readable {
                        warn!(input = %ctx.name, error = %err, "The socket failed.");
                        break;
                    }
                }
                () = ctx.shutdown.signalled() => stopping = true,
            }
        }
        let read_at = Instant::now();
        let mut emptied = false;
        for _ in 0..MAX_BATCH {
            match socket.try_recv(&mut buf) {
                Ok((len, peer)) => {
                    if len > buf.len() {
                        truncated.increment(1);
                    }
                    let data = &buf[..len.min(buf.len())];
                    handler.datagram(data, len, peer, read_at, &mut delivery);
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    emptied = true;
                    break;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    // Unconnected sockets report no peer errors; anything else is odd but
                    // must not stop the input.
                    warn!(input = %ctx.name, error = %err, "Receiving a datagram failed.");
                    emptied = true;
                    break;
                }
            }
        }
        delivery.send(read_at).await;
        handler.sweep(read_at);
        if stopping && emptied {
            break;
        }
    }
    delivery.settle().await;
    handler.close();
    ready.listening(false);
    drop(socket);
    if let Some(path) = path
        && let Err(err) = std::fs::remove_file(&path)
        && err.kind() != io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %err, "Could not remove the socket file.");
    }
    info!(input = %ctx.name, "Stopped listening.");
}

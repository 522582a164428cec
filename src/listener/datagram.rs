//! The one receive loop of every datagram socket: the udp input, and the syslog input on
//! UDP or on a unix datagram socket.
//!
//! [`run`] moves the socket to a reader thread and reads there until shutdown. Each
//! wake-up takes every datagram waiting (at most [`MAX_BATCH`]), hands each to the
//! input's [`Datagrams`] handler (which frames, parses and picks the stream), and delivers
//! the batch with one batch in flight ([`GroupDelivery`]): while the correlator is busy,
//! datagrams wait in the socket's receive buffer, and past it the kernel drops them, as it
//! does for any UDP receiver.
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
//! - The kernel's drops are counted, not only lost: with `SO_RXQ_OVFL` every datagram
//!   carries the socket's drop counter as it stood when the datagram was queued, and the
//!   counter's rise since the last datagram goes to
//!   `auditspan_input_errors_total{reason="datagram_dropped"}` (a warning at most every
//!   [`DROP_WARNING_EVERY`]). So drops show once the next datagram is read, not before:
//!   while nothing more arrives, the last drops are not counted yet. A unix datagram
//!   socket makes its sender wait instead of dropping.
//! - At shutdown, the datagrams already in the socket buffer are still taken.

use std::{
    io,
    net::SocketAddr,
    os::{
        fd::{AsFd, AsRawFd},
        unix::fs::PermissionsExt,
    },
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage, recvmsg, setsockopt,
    sockopt::{RcvBuf, RxqOvfl},
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
/// The shortest time between two warnings about datagrams the kernel dropped.
pub const DROP_WARNING_EVERY: Duration = Duration::from_secs(10);

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

/// Binds a unix datagram socket at `path` with `mode`, replacing a stale socket file
/// ([`super::replace_stale_socket`]).
pub fn bind_unix(path: &Path, mode: u32, max_line_bytes: usize) -> Result<Bound, ListenerError> {
    use std::os::unix::net::UnixDatagram;
    let io_err = |source| ListenerError::Io {
        path: path.to_owned(),
        cause: source,
    };
    super::replace_stale_socket(path, |path| UnixDatagram::unbound()?.connect(path))?;
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

/// Asks for a [`RECEIVE_BUFFER`] receive buffer (the kernel caps it at `rmem_max`, and a
/// refusal only leaves the default) and for the drop counter on every datagram (a
/// refusal only leaves drops uncounted).
fn raise_receive_buffer(socket: &impl AsFd) {
    setsockopt(socket, RcvBuf, &RECEIVE_BUFFER).ok();
    setsockopt(socket, RxqOvfl, &1).ok();
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

    /// One datagram into `buf`, or `WouldBlock`.
    fn try_recv(&self, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Received> {
        match self {
            Registered::Udp(s) => s.try_io(Interest::READABLE, || recv(s.as_raw_fd(), buf, cmsg)),
            Registered::Unix(s) => s.try_io(Interest::READABLE, || recv(s.as_raw_fd(), buf, cmsg)),
        }
    }
}

/// What [`recv`] learnt of one datagram.
struct Received {
    /// Its real length, longer than the buffer when it was truncated.
    len: usize,
    peer: Peer,
    /// The socket's drop counter when the datagram was queued (`SO_RXQ_OVFL`), when the
    /// kernel attached it.
    drops: Option<u32>,
}

/// `recvmsg` with `MSG_TRUNC`: the datagram's real length even when `buf` was too short,
/// and its drop counter in `cmsg` (room for one `u32` control message).
fn recv(fd: std::os::fd::RawFd, buf: &mut [u8], cmsg: &mut [u8]) -> io::Result<Received> {
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        fd,
        &mut iov,
        Some(cmsg),
        MsgFlags::MSG_TRUNC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let peer = match msg.address {
        Some(a) if a.family().is_some() => peer_of(&a),
        _ => Peer::Unix(None),
    };
    // A truncated control buffer (impossible with room for the one message asked for)
    // only loses the count.
    let drops = msg.cmsgs().ok().and_then(|mut all| {
        all.find_map(|c| match c {
            ControlMessageOwned::RxqOvfl(n) => Some(n),
            _ => None,
        })
    });
    Ok(Received {
        len: msg.bytes,
        peer,
        drops,
    })
}

/// Turns the drop counters datagrams carry into counted drops.
struct Drops {
    /// The highest counter seen: the socket's drops counted so far.
    seen: u32,
    counted: metrics::Counter,
    /// Drops not yet in a warning, and when the last warning was logged.
    unwarned: u64,
    warned_at: Option<Instant>,
}

impl Drops {
    fn new(counted: metrics::Counter) -> Drops {
        Drops {
            seen: 0,
            counted,
            unwarned: 0,
            warned_at: None,
        }
    }

    /// A datagram's counter; returns the drops it newly tells of. Counters only rise
    /// (wrapping at `u32::MAX`), and datagrams come out in the order they were queued, so
    /// a counter below the last one seen tells nothing.
    fn observe(&mut self, counter: u32) -> u32 {
        let new = counter.wrapping_sub(self.seen);
        if new == 0 || new > u32::MAX / 2 {
            return 0;
        }
        self.seen = counter;
        self.counted.increment(u64::from(new));
        self.unwarned += u64::from(new);
        new
    }

    /// Logs the drops counted since the last warning, at most every
    /// [`DROP_WARNING_EVERY`]; returns whether it logged.
    fn warn(&mut self, input: &str, now: Instant) -> bool {
        if self.unwarned == 0
            || self
                .warned_at
                .is_some_and(|at| now.duration_since(at) < DROP_WARNING_EVERY)
        {
            return false;
        }
        warn!(
            input,
            dropped = self.unwarned,
            "The kernel dropped datagrams: the socket's receive buffer was full (raise net.core.rmem_max, or use a stream input)."
        );
        self.unwarned = 0;
        self.warned_at = Some(now);
        true
    }
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
    let mut drops = Drops::new(m::input_errors(&ctx.name, m::INPUT_ERROR_DATAGRAM_DROPPED));
    let mut buf = vec![0u8; buffer_bytes];
    let mut cmsg = nix::cmsg_space!(u32);
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
            match socket.try_recv(&mut buf, &mut cmsg) {
                Ok(Received {
                    len,
                    peer,
                    drops: counter,
                }) => {
                    if let Some(counter) = counter {
                        drops.observe(counter);
                    }
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
        drops.warn(&ctx.name, read_at);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The counter's rise is counted once, across a wrap at `u32::MAX`; a lower counter
    /// (impossible from the kernel) counts nothing; warnings come at most every
    /// [`DROP_WARNING_EVERY`] and carry what was counted meanwhile.
    #[test]
    fn drops_count_the_counters_rise_and_warn_at_most_every_ten_seconds() {
        let mut drops = Drops::new(metrics::Counter::noop());
        let t0 = Instant::now();
        assert!(!drops.warn("udp", t0), "nothing dropped, nothing said");
        assert_eq!(drops.observe(0), 0);
        assert_eq!(drops.observe(5), 5);
        assert_eq!(drops.observe(5), 0);
        assert_eq!(drops.observe(3), 0, "a counter going back tells nothing");
        assert_eq!(drops.observe(7), 2);
        assert!(drops.warn("udp", t0));
        assert_eq!(drops.observe(9), 2);
        assert!(!drops.warn("udp", t0 + Duration::from_secs(1)));
        assert_eq!(drops.unwarned, 2, "kept for the next warning");
        assert!(drops.warn("udp", t0 + DROP_WARNING_EVERY));
        assert_eq!(drops.unwarned, 0);
        drops.seen = u32::MAX - 1;
        assert_eq!(drops.observe(2), 4, "across the wrap");
    }
}

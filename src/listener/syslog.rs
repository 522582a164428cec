//! The syslog input: OpenBao's `syslog` audit device (through a unix datagram socket),
//! and syslog forwarded by rsyslog or syslog-ng over UDP or TCP.
//!
//! Each message's header (RFC 5424, or RFC 3164 and its loose variants such as OpenBao's
//! `<PRI>Mmm dd hh:mm:ss TAG[PID]: ` without host name) is parsed with `syslog_loose`, the
//! parser Vector uses; what follows it goes to the line parser like any audit line (the
//! input's `prefix` applies to it). The header's host name and app name (tag) become the
//! attributes `syslog.hostname` and `syslog.appname` of the event, so of its span (the
//! response's win over the request's, as for every attribute).
//!
//! Decisions:
//! - One message per datagram (RFC 5426); trailing newlines, carriage returns and NULs are
//!   not part of it. Over TCP, messages are framed per RFC 6587 ([`OctetFramer`]: octet
//!   counting or newlines, detected per message).
//! - A message whose header does not parse is counted
//!   (`auditspan_input_errors_total{reason="syslog_header"}`) and parsed whole: a bare
//!   JSON line is still taken, anything else is rejected (`not_json`) and dead-lettered.
//!   A rejected message is dead-lettered whole, header included.
//! - Streams: each sender (datagram peer address; TCP connection) and, within it, each
//!   syslog host name is its own stream with its own event clock, so a relay that forwards
//!   several Vault servers over one connection does not mix their clocks. Senders on a
//!   unix datagram socket do not bind an address, so they share one stream per host name.
//! - `max_line_bytes` bounds a whole message, header included.

use std::{net::SocketAddr, time::Instant};

use metrics::Counter;
use syslog_loose::Variant;
use tokio::{io::AsyncReadExt, net::TcpStream};
use tracing::{debug, warn};

use super::{
    DRAIN_IDLE, DRAIN_MAX, Frame, InputContext, LineHandler, ListenerError, READ_CHUNK,
    TOO_LONG_HEAD_BYTES,
    datagram::{self, Datagrams, Peer},
    octet::OctetFramer,
    peers::{GroupDelivery, PeerStreams},
    tcp,
};
use crate::{
    config::{InputConfig, SyslogInput, SyslogSocket},
    telemetry::{metrics as m, ready::InputReporter},
};

/// The span attribute holding the header's host name.
pub const HOSTNAME_ATTRIBUTE: &str = "syslog.hostname";
/// The span attribute holding the header's app name (RFC 3164: the tag).
pub const APPNAME_ATTRIBUTE: &str = "syslog.appname";

/// A bound syslog socket.
pub enum Bound {
    Datagram(datagram::Bound),
    Tcp(tcp::Bound),
}

/// Binds the syslog input `config` describes.
pub fn bind(config: &InputConfig, settings: &SyslogInput) -> Result<Bound, ListenerError> {
    Ok(match &settings.socket {
        SyslogSocket::Unix { path, mode } => {
            Bound::Datagram(datagram::bind_unix(path, *mode, config.max_line_bytes)?)
        }
        SyslogSocket::Udp(address) => Bound::Datagram(datagram::bind_udp(
            &config.name,
            *address,
            config.max_line_bytes,
        )?),
        SyslogSocket::Tcp(address) => Bound::Tcp(tcp::bind(&config.name, *address)?),
    })
}

/// Receives until shutdown.
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    for reason in [
        m::INPUT_ERROR_SYSLOG_HEADER,
        m::INPUT_ERROR_DATAGRAM_TRUNCATED,
        m::INPUT_ERROR_DATAGRAM_DROPPED,
    ] {
        m::input_errors(&ctx.name, reason).increment(0);
    }
    match bound {
        Bound::Datagram(bound) => {
            let handler = SyslogDatagrams(Messages::new(&ctx));
            datagram::run(bound, ctx, ready, handler).await;
        }
        Bound::Tcp(bound) => {
            m::input_errors(&ctx.name, m::INPUT_ERROR_OCTET_COUNT).increment(0);
            tcp::serve(bound, ctx, ready, read_connection).await;
        }
    }
}

/// Syslog messages → lines, a stream per (sender, host name).
struct Messages {
    lines: LineHandler,
    peers: PeerStreams<(Peer, Option<String>)>,
    header_errors: Counter,
}

impl Messages {
    fn new(ctx: &InputContext) -> Self {
        Messages {
            lines: ctx.line_handler(),
            peers: PeerStreams::new(ctx.correlator.clone()),
            header_errors: m::input_errors(&ctx.name, m::INPUT_ERROR_SYSLOG_HEADER),
        }
    }

    /// One framed message (or the report of one too long) from `sender`.
    fn frame(&mut self, frame: Frame<'_>, sender: &Peer, now: Instant, out: &mut GroupDelivery) {
        match frame {
            Frame::Line(message) => self.message(message, sender, now, out),
            too_long @ Frame::TooLong { .. } => {
                let stream = self.peers.stream(&(sender.clone(), None), now);
                self.lines.handle(too_long);
                out.collect(&mut self.lines, stream);
            }
        }
    }

    fn message(&mut self, message: &[u8], sender: &Peer, now: Instant, out: &mut GroupDelivery) {
        // The year only completes RFC 3164's timestamp, which is not used: a leap year
        // keeps "Feb 29" valid.
        let parsed = std::str::from_utf8(message).ok().and_then(|text| {
            syslog_loose::parse_message_with_year_exact(text, |_| 2024, Variant::Either).ok()
        });
        let Some(parsed) = parsed else {
            self.header_errors.increment(1);
            let stream = self.peers.stream(&(sender.clone(), None), now);
            self.lines.handle_wrapped(message, message, &[]);
            out.collect(&mut self.lines, stream);
            return;
        };
        let host = parsed.hostname.filter(|h| !h.is_empty());
        let stream = self
            .peers
            .stream(&(sender.clone(), host.map(str::to_owned)), now);
        let mut extra: [(&str, &str); 2] = [("", ""); 2];
        let mut n = 0;
        for (key, value) in [
            (HOSTNAME_ATTRIBUTE, host),
            (APPNAME_ATTRIBUTE, parsed.appname),
        ] {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                extra[n] = (key, value);
                n += 1;
            }
        }
        self.lines
            .handle_wrapped(message, parsed.msg.as_bytes(), &extra[..n]);
        out.collect(&mut self.lines, stream);
    }
}

/// Syslog over a datagram socket: one message per datagram.
struct SyslogDatagrams(Messages);

impl Datagrams for SyslogDatagrams {
    fn datagram(
        &mut self,
        data: &[u8],
        len: usize,
        peer: Peer,
        now: Instant,
        delivery: &mut GroupDelivery,
    ) {
        if len > data.len() {
            let head = data[..TOO_LONG_HEAD_BYTES.min(data.len())].to_vec();
            self.0
                .frame(Frame::TooLong { head, len }, &peer, now, delivery);
            return;
        }
        let end = data
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r' | 0))
            .map_or(0, |i| i + 1);
        self.0
            .frame(Frame::Line(&data[..end]), &peer, now, delivery);
    }

    fn sweep(&mut self, now: Instant) {
        self.0.peers.sweep(now);
    }

    fn close(&mut self) {
        self.0.peers.close_all();
    }
}

/// Reads one syslog TCP connection until it closes or shutdown is signalled. At shutdown,
/// what the sender had sent by then is still taken (as [`super::StreamReader`] does).
async fn read_connection(stream: std::net::TcpStream, peer: SocketAddr, ctx: InputContext) {
    let mut stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        Err(err) => {
            warn!(input = %ctx.name, error = %err, "Could not register a connection.");
            return;
        }
    };
    debug!(input = %ctx.name, %peer, "Connection opened.");
    let sender = Peer::Ip(peer);
    let mut framer = OctetFramer::new(ctx.max_line_bytes);
    let mut messages = Messages::new(&ctx);
    let mut delivery = GroupDelivery::new(ctx.id, ctx.correlator.clone(), ctx.deadletter.clone());
    let octet_errors = m::input_errors(&ctx.name, m::INPUT_ERROR_OCTET_COUNT);
    loop {
        let read = tokio::select! {
            read = stream.read_buf(framer.buffer(READ_CHUNK)) => read,
            () = ctx.shutdown.signalled() => {
                let started = Instant::now();
                while started.elapsed() < DRAIN_MAX {
                    let read = stream.read_buf(framer.buffer(READ_CHUNK));
                    match tokio::time::timeout(DRAIN_IDLE, read).await {
                        Ok(Ok(0)) => {
                            let now = Instant::now();
                            framer.finish(|f| messages.frame(f, &sender, now, &mut delivery));
                            break;
                        }
                        Ok(Ok(_)) => {
                            let now = Instant::now();
                            framer.drain(|f| messages.frame(f, &sender, now, &mut delivery));
                        }
                        Ok(Err(_)) | Err(_) => break,
                    }
                }
                delivery.send(Instant::now()).await;
                break;
            }
        };
        let now = Instant::now();
        match read {
            Ok(0) => {
                framer.finish(|f| messages.frame(f, &sender, now, &mut delivery));
                delivery.send(now).await;
                break;
            }
            Ok(_) => {
                framer.drain(|f| messages.frame(f, &sender, now, &mut delivery));
                delivery.send(now).await;
            }
            Err(err) => {
                warn!(input = %ctx.name, %peer, error = %err, "Connection read failed.");
                framer.finish(|f| messages.frame(f, &sender, now, &mut delivery));
                delivery.send(now).await;
                break;
            }
        }
        let malformed = framer.take_malformed();
        if malformed > 0 {
            octet_errors.increment(malformed);
        }
    }
    let malformed = framer.take_malformed();
    if malformed > 0 {
        octet_errors.increment(malformed);
    }
    delivery.settle().await;
    messages.peers.close_all();
    debug!(input = %ctx.name, %peer, "Connection closed.");
}

#[cfg(test)]
mod tests {
    use syslog_loose::{Variant, parse_message_with_year_exact};

    /// The headers the syslog input meets, as `syslog_loose` reads them: OpenBao's
    /// (no host name), RFC 3164 with a host name (rsyslog, `logger --rfc3164`) and RFC 5424
    /// (`logger --rfc5424`).
    #[test]
    fn headers_the_input_meets() {
        let json = r#"{"type":"request","time":"2025-03-11T14:00:00Z"}"#;
        let cases = [
            (
                format!("<38>Dec  7 19:19:19 openbao[4242]: {json}"),
                None,
                Some("openbao"),
            ),
            (
                format!("<134>Dec  7 19:19:19 vault-1 openbao[4242]: {json}"),
                Some("vault-1"),
                Some("openbao"),
            ),
            (
                format!(
                    "<13>1 2025-03-11T14:00:00.123456+00:00 vault-2 bao 77 - [timeQuality tzKnown=\"1\"] {json}"
                ),
                Some("vault-2"),
                Some("bao"),
            ),
            (
                format!("<13>1 2025-03-11T14:00:00Z vault-3 bao - - - {json}"),
                Some("vault-3"),
                Some("bao"),
            ),
        ];
        for (line, host, app) in cases {
            let m = parse_message_with_year_exact(&line, |_| 2024, Variant::Either).unwrap();
            assert_eq!(m.msg, json, "{line}");
            assert_eq!(m.hostname, host, "{line}");
            assert_eq!(m.appname, app, "{line}");
        }
    }
}

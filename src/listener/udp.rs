//! The UDP input: the target of Vault's / OpenBao's `socket` audit device with
//! `socket_type = "udp"` (one write, so one datagram, per entry).
//!
//! Datagrams are read by the shared loop in [`super::datagram`]. Each datagram holds one
//! or more lines, framed like a stream that ends with the datagram (a last line without
//! its newline is a line). Each sender address (IP and port: the device's socket) is its
//! own stream, with its own event clock ([`PeerStreams`]).
//!
//! UDP has no delivery guarantee, no TLS and no authentication: bind it to loopback, next
//! to Vault. A datagram the kernel drops (receive buffer full) is lost, only counted
//! ([`super::datagram`]); prefer the unix or tcp input where that matters.

use std::{net::SocketAddr, time::Instant};

use super::{
    Frame, Framer, InputContext, LineHandler, ListenerError, TOO_LONG_HEAD_BYTES,
    datagram::{self, Datagrams, Peer},
    peers::{GroupDelivery, PeerStreams},
};
use crate::{config::InputConfig, telemetry::ready::InputReporter};

/// Binds the udp input `config` describes.
pub fn bind(config: &InputConfig, address: SocketAddr) -> Result<datagram::Bound, ListenerError> {
    datagram::bind_udp(&config.name, address, config.max_line_bytes)
}

/// Receives until shutdown.
pub async fn run(bound: datagram::Bound, ctx: InputContext, ready: InputReporter) {
    let handler = UdpLines {
        framer: Framer::new(ctx.max_line_bytes),
        lines: ctx.line_handler(),
        peers: PeerStreams::new(ctx.correlator.clone()),
    };
    datagram::run(bound, ctx, ready, handler).await;
}

/// Lines of datagrams, a stream per sender.
struct UdpLines {
    framer: Framer,
    lines: LineHandler,
    peers: PeerStreams<Peer>,
}

impl Datagrams for UdpLines {
    fn datagram(
        &mut self,
        data: &[u8],
        len: usize,
        peer: Peer,
        now: Instant,
        delivery: &mut GroupDelivery,
    ) {
        let stream = self.peers.stream(&peer, now);
        if len > data.len() {
            let head = data[..TOO_LONG_HEAD_BYTES.min(data.len())].to_vec();
            self.lines.handle(Frame::TooLong { head, len });
        } else {
            self.framer.buffer(data.len()).extend_from_slice(data);
            let lines = &mut self.lines;
            self.framer.finish(|frame| lines.handle(frame));
        }
        delivery.collect(&mut self.lines, stream);
    }

    fn sweep(&mut self, now: Instant) {
        self.peers.sweep(now);
    }

    fn close(&mut self) {
        self.peers.close_all();
    }
}

//! Streams of inputs that have no connection per sender, and the delivery of a batch that
//! holds events of several streams.
//!
//! DESIGN gives every stream its own event clock: a connection, a file, a datagram peer.
//! A UDP socket, a syslog socket and the http input take events from many senders over one
//! socket, so [`PeerStreams`] gives each sender (a key chosen by the input: the peer's
//! address, or address and syslog host name) a stream id of its own, and closes it once
//! the sender has been silent for [`PEER_IDLE`] (or, past [`MAX_PEERS`] senders, the one
//! silent longest), so that the correlator forgets its clock once its entries are gone.
//! A sender heard again later gets a new stream.
//!
//! [`GroupDelivery`] is [`Delivery`](super::Delivery) for such inputs: the events of one
//! batch are grouped by stream, one [`Ingest`] per group, and the whole batch stays in
//! flight until the correlator took it, so back-pressure still reaches the socket.

use std::{
    collections::HashMap,
    hash::Hash,
    time::{Duration, Instant},
};

use actix::prelude::*;
use tracing::warn;

use super::{LineHandler, new_stream};
use crate::{
    correlate::{Correlator, Ingest, InputId, Source, StreamClosed, StreamId},
    deadletter::{DeadLetter, Rejected, WriteLines},
    event::AuditEvent,
};

/// A sender silent this long has its stream closed.
pub const PEER_IDLE: Duration = Duration::from_secs(60);
/// Senders tracked per input at most; past it the one silent longest is closed first.
pub const MAX_PEERS: usize = 4096;
/// Idle senders are looked for at most this often.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A stream id per sender, closed when the sender goes quiet.
pub struct PeerStreams<K> {
    streams: HashMap<K, (StreamId, Instant)>,
    correlator: Addr<Correlator>,
    last_sweep: Instant,
}

impl<K: Hash + Eq + Clone> PeerStreams<K> {
    pub fn new(correlator: Addr<Correlator>) -> Self {
        PeerStreams {
            streams: HashMap::new(),
            correlator,
            last_sweep: Instant::now(),
        }
    }

    /// The stream of `peer` (a new one the first time it is heard), marked as heard `now`.
    pub fn stream(&mut self, peer: &K, now: Instant) -> StreamId {
        if let Some((stream, seen)) = self.streams.get_mut(peer) {
            *seen = now;
            return *stream;
        }
        if self.streams.len() >= MAX_PEERS {
            self.close_quietest();
        }
        let stream = new_stream();
        self.streams.insert(peer.clone(), (stream, now));
        stream
    }

    /// Closes the streams of senders silent for [`PEER_IDLE`] (at most every few seconds).
    pub fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.last_sweep) < SWEEP_INTERVAL {
            return;
        }
        self.last_sweep = now;
        let correlator = &self.correlator;
        self.streams.retain(|_, (stream, seen)| {
            let keep = now.duration_since(*seen) < PEER_IDLE;
            if !keep {
                correlator.do_send(StreamClosed(*stream));
            }
            keep
        });
    }

    fn close_quietest(&mut self) {
        let quietest = self
            .streams
            .iter()
            .min_by_key(|(_, (_, seen))| *seen)
            .map(|(k, _)| k.clone());
        if let Some((stream, _)) = quietest.and_then(|k| self.streams.remove(&k)) {
            self.correlator.do_send(StreamClosed(stream));
        }
    }

    /// Closes every stream (the input stops).
    pub fn close_all(&mut self) {
        for (_, (stream, _)) in self.streams.drain() {
            self.correlator.do_send(StreamClosed(stream));
        }
    }
}

/// The events of one batch grouped by stream, and its rejected lines; one batch in flight.
pub struct GroupDelivery {
    input: InputId,
    correlator: Addr<Correlator>,
    deadletter: Addr<DeadLetter>,
    /// Events in read order; consecutive events of one stream share a group.
    groups: Vec<(StreamId, Vec<AuditEvent>)>,
    rejected: Vec<Rejected>,
    in_flight: Vec<actix::dev::Request<Correlator, Ingest>>,
}

impl GroupDelivery {
    pub fn new(input: InputId, correlator: Addr<Correlator>, deadletter: Addr<DeadLetter>) -> Self {
        GroupDelivery {
            input,
            correlator,
            deadletter,
            groups: Vec::new(),
            rejected: Vec::new(),
            in_flight: Vec::new(),
        }
    }

    /// Takes what `lines` collected, as events of `stream`.
    pub fn collect(&mut self, lines: &mut LineHandler, stream: StreamId) {
        if lines.is_empty() {
            return;
        }
        let (events, rejected) = lines.take();
        self.rejected.extend(rejected);
        if events.is_empty() {
            return;
        }
        match self.groups.last_mut() {
            Some((last, group)) if *last == stream => group.extend(events),
            _ => self.groups.push((stream, events)),
        }
    }

    /// Hands the batch over: rejected lines to the dead-letter writer, then, once the
    /// correlator took the previous batch, one [`Ingest`] per stream. `read_at`: when the
    /// batch was read (commit latency starts).
    pub async fn send(&mut self, read_at: Instant) {
        if !self.rejected.is_empty() {
            let rejected = std::mem::take(&mut self.rejected);
            if self.deadletter.send(WriteLines(rejected)).await.is_err() {
                warn!(
                    input = self.input,
                    "The dead-letter writer is gone; rejected lines dropped."
                );
            }
        }
        if self.groups.is_empty() {
            return;
        }
        self.settle().await;
        for (stream, events) in self.groups.drain(..) {
            let source = Source {
                input: self.input,
                stream,
            };
            // `send` queues the message at once; awaiting it only waits for the answer.
            self.in_flight.push(
                self.correlator
                    .send(Ingest::events(source, events, read_at)),
            );
        }
    }

    /// Waits until the correlator has taken the batch in flight.
    pub async fn settle(&mut self) {
        for request in self.in_flight.drain(..) {
            if request.await.is_err() {
                warn!(
                    input = self.input,
                    "The correlator is gone; events dropped."
                );
            }
        }
    }
}

//! Readiness for `GET /readyz`: whether auditspan takes audit events and can keep them.
//!
//! Ready means: every input listens, the queue is open and writes, and the queue holds at
//! most [`HIGH_WATER`] of `queue.max_bytes`. Not ready, with the first reason found:
//! - an input is not listening (not started yet, stopped, or shutting down);
//! - the queue cannot write: the disk is full, or sled failed (it retries by reopening);
//! - the queue holds more than 90% of `queue.max_bytes`: a sink is behind and
//!   `drop_oldest` is about to drop spans (or `block` to stop reading);
//! - the dead-letter file cannot be written (the last write failed): rejected lines are
//!   lost and rejected spans wait in the queue, holding their sink back.
//!
//! # How the state travels
//! DESIGN: actors share no mutable state. Each owner publishes its own state on a
//! `tokio::sync::watch` channel that only it writes: the queue actor its [`QueueState`]
//! after every commit, acknowledgement and failure; each input whether it listens
//! ([`InputReporter`]); the dead-letter writer whether its last write succeeded. [`Readiness`] holds the receiving ends and reads the latest values
//! when `/readyz` asks, on the HTTP worker's thread: a probe never sends a message into the
//! pipeline and never waits for a busy actor. A channel whose owner is gone reads as its
//! last value, except that an input whose owner is gone is not listening.

use tokio::sync::watch;

use crate::queue::actor::QueueState;

/// Fraction of `queue.max_bytes` above which auditspan is not ready.
pub const HIGH_WATER: f64 = 0.9;

/// An input's end: publishes whether it listens.
#[derive(Debug)]
pub struct InputReporter(watch::Sender<bool>);

impl InputReporter {
    pub fn listening(&self, listening: bool) {
        self.0.send_replace(listening);
    }
}

/// The readiness check: the receiving ends of every owner's channel.
#[derive(Debug, Clone)]
pub struct Readiness {
    queue: Option<(watch::Receiver<QueueState>, u64)>,
    inputs: Vec<(String, watch::Receiver<bool>)>,
    deadletter: Option<watch::Receiver<bool>>,
}

impl Readiness {
    /// No queue and no input yet: not ready until [`Readiness::queue`] is called.
    pub fn new() -> Self {
        Readiness {
            queue: None,
            inputs: Vec::new(),
            deadletter: None,
        }
    }

    /// Watches the dead-letter writer: whether its last write succeeded.
    pub fn deadletter(&mut self, writable: watch::Receiver<bool>) {
        self.deadletter = Some(writable);
    }

    /// Watches the open queue, bounded by `max_bytes` (`queue.max_bytes`).
    pub fn queue(&mut self, state: watch::Receiver<QueueState>, max_bytes: u64) {
        self.queue = Some((state, max_bytes));
    }

    /// Adds the input `name`, not listening until it says so; returns its reporter.
    pub fn input(&mut self, name: &str) -> InputReporter {
        let (tx, rx) = watch::channel(false);
        self.inputs.push((name.to_owned(), rx));
        InputReporter(tx)
    }

    /// `Ok` when ready, else why not (one line, no secrets: names and numbers only).
    pub fn check(&self) -> Result<(), String> {
        for (name, listening) in &self.inputs {
            if listening.has_changed().is_err() || !*listening.borrow() {
                return Err(format!("input {name} is not listening"));
            }
        }
        let Some((health, max_bytes)) = &self.queue else {
            return Err("the queue is not open".to_owned());
        };
        let health = *health.borrow();
        if health.disk_full {
            return Err("the disk is full; the queue cannot write".to_owned());
        }
        if health.failed {
            return Err("the queue cannot write".to_owned());
        }
        if health.bytes as f64 > *max_bytes as f64 * HIGH_WATER {
            return Err(format!(
                "queue above {}% of max_bytes ({} of {} bytes)",
                (HIGH_WATER * 100.0).round(),
                health.bytes,
                max_bytes
            ));
        }
        if let Some(writable) = &self.deadletter
            && !*writable.borrow()
        {
            return Err("the dead-letter file cannot be written".to_owned());
        }
        Ok(())
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_every_input_listening_and_room_in_the_queue() {
        let mut r = Readiness::new();
        let unix = r.input("unix");
        assert_eq!(r.check(), Err("input unix is not listening".into()));
        unix.listening(true);
        assert_eq!(r.check(), Err("the queue is not open".into()));
        let ok = QueueState {
            committed: 0,
            delivered: 0,
            bytes: 0,
            disk_full: false,
            failed: false,
            accepting: true,
        };
        let (queue, state) = watch::channel(ok);
        r.queue(state, 1000);
        assert_eq!(r.check(), Ok(()));

        queue.send_replace(QueueState { bytes: 900, ..ok });
        assert_eq!(r.check(), Ok(()), "at 90% exactly: still ready");
        queue.send_replace(QueueState { bytes: 901, ..ok });
        assert_eq!(
            r.check(),
            Err("queue above 90% of max_bytes (901 of 1000 bytes)".into())
        );
        queue.send_replace(QueueState {
            bytes: 10,
            disk_full: true,
            failed: true,
            ..ok
        });
        assert_eq!(
            r.check(),
            Err("the disk is full; the queue cannot write".into())
        );
        queue.send_replace(QueueState {
            bytes: 10,
            failed: true,
            ..ok
        });
        assert_eq!(r.check(), Err("the queue cannot write".into()));
        queue.send_replace(ok);
        assert_eq!(r.check(), Ok(()));

        let (deadletter, writable) = watch::channel(true);
        r.deadletter(writable);
        assert_eq!(r.check(), Ok(()));
        deadletter.send_replace(false);
        assert_eq!(
            r.check(),
            Err("the dead-letter file cannot be written".into())
        );
        deadletter.send_replace(true);
        assert_eq!(r.check(), Ok(()));

        unix.listening(false);
        assert!(r.check().is_err());
        unix.listening(true);
        drop(unix);
        assert_eq!(
            r.check(),
            Err("input unix is not listening".into()),
            "an input whose actor is gone does not listen"
        );
    }
}

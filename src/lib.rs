//! auditspan turns HashiCorp Vault / OpenBao audit events into trace spans, without losing
//! them across restarts, crashes and backend outages. `ARCHITECTURE.md` at the root is the
//! guided tour; this is the map.
//!
//! # Layout
//! ```text
//!  listener ──Ingest──► correlate::Correlator ──CommitWindow──► queue::SpanQueue ◄──Read/Ack── sink::worker::SinkWorker ──► backend
//!  frame, parse          pair by request.id,                    sled, fsync,                   one per sink: batch, retry,
//!  (event), count        expire, commit windows                 per-sink cursors               split, dead-letter (sink::*)
//!     │ rejected lines                                               │ QueueState (watch): committed, delivered, health
//!     ▼                                                              ▼
//!  deadletter::DeadLetter                                  sink workers wake · correlator unblocks · /readyz · shutdown
//! ```
//!
//! One event, from socket to sink:
//! 1. [`listener::unix`] accepts Vault's connection; a [`listener::StreamReader`] reads it
//!    on a reader thread, the [`listener::Framer`] cuts lines, and the
//!    [`listener::LineHandler`] parses each with [`event::parse_line`], which flattens the
//!    JSON into [`attr::Attributes`] and picks the fields pairing needs. A rejected line is
//!    counted and goes to the [`deadletter`] file.
//! 2. A [`listener::Delivery`] sends the batch of events to the [`correlate::Correlator`]
//!    (one batch in flight: back-pressure reaches the socket). Its pure core,
//!    [`correlate::Pairing`], matches request and response by `request.id` into a
//!    [`span::Span`], or keeps the half waiting until its partner or its timeout.
//! 3. Every `queue.flush_interval` the correlator encodes ([`codec`]) the window's spans
//!    and waiting entries into one [`queue::Commit`] for the [`queue::actor::SpanQueue`],
//!    which writes it to sled atomically and fsyncs: only now is the span durable, and only
//!    now is it offered to sinks ([`queue::actor::QueueState`]).
//! 4. Each [`sink::worker::SinkWorker`] reads a batch after its cursor, decodes it and
//!    exports it through its [`sink::Sink`] (stdout, OTLP, Zipkin, Honeycomb), retrying,
//!    splitting and dead-lettering as the backend answers; then it acknowledges, the cursor
//!    moves, and the queue deletes what every sink has passed.
//!
//! Around it: [`config`] (the TOML file, environment and CLI overrides, validated once),
//! [`telemetry`] (logs, Prometheus metrics, `/healthz` and `/readyz`), [`app`] (the wiring:
//! starts the stages in order and stops them in reverse) and [`import`] (captured logs
//! through the same stages, with [`progress`] on stderr).
//!
//! # Errors
//! One `thiserror` enum per module. An error that wraps another names it in its own message
//! (`data directory /x: Permission denied (os error 13)`) and does not also return it from
//! `source()`: logs print errors with `Display`, and `main` prints the chain (`{:#}`), so
//! both show each cause exactly once. `#[error(transparent)]` forwards to the inner error.
#![forbid(unsafe_code)]

pub mod app;
pub mod attr;
pub mod codec;
pub mod config;
pub mod correlate;
pub mod deadletter;
pub mod event;
pub mod import;
pub mod listener;
pub mod progress;
pub mod queue;
pub mod sink;
pub mod span;
pub mod telemetry;

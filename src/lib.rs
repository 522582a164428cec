//! auditspan turns HashiCorp Vault / OpenBao audit events into trace spans.
//!
//! # Layout
//! ```text
//!  listener::unix ──Ingest──► correlate::Correlator ──SpanBatch──► span output ──► sink::stdout
//!  (read, frame, parse)        (pair by request.id)                  (the queue slots in here)
//! ```
//! - [`event`] and [`flatten`]: one line → one [`event::AuditEvent`] or a rejection reason.
//! - [`correlate`]: pairs requests and responses into [`span::Span`]s.
//! - [`listener`]: inputs; [`sink`]: outputs; [`deadletter`]: the rejected-line file.
//! - [`config`]: the TOML file, environment and CLI overrides.
//! - [`telemetry`]: the daemon's own logs, metrics and HTTP endpoints.
//! - [`app`]: starts the actors in order and stops them in order.
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
pub mod queue;
pub mod sink;
pub mod span;
pub mod telemetry;

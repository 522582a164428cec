//! auditspan's integration tests: one test binary (so the crate links once), one module per
//! area. Every test drives the real `auditspan` binary through `support::Daemon`.
//!
//! Add a `mod` line per new file; shared helpers belong in `support`.
#![allow(clippy::unwrap_used)]

mod cli;
mod clocks;
mod dashboards;
mod deploy;
mod durability;
mod golden;
mod honeycomb;
mod http_answers;
mod import_progress;
mod input_fifo;
mod input_file;
mod input_file_openbao;
mod input_http;
mod input_openbao;
mod input_stdin;
mod input_syslog;
mod input_tcp_udp;
mod metrics;
mod openbao;
mod otlp;
mod queue_ops;
mod sink;
mod socket;
mod support;
mod zipkin;

//! The daemon's own telemetry: logs on stderr, Prometheus metrics, the HTTP endpoints.
//!
//! - [`metrics`]: metric names, help texts, buckets and handles; installs the recorder.
//! - [`vault`]: Vault's request metrics derived from the spans, with their label caps.
//! - [`process`]: the standard `process_*` metrics, read at scrape time.
//! - [`ready`]: the readiness state its owners publish and `/readyz` reads.
//! - [`http`]: the server for `/metrics`, `/healthz` and `/readyz`.

pub mod http;
pub mod metrics;
pub mod process;
pub mod ready;
pub mod vault;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter (`tracing` `EnvFilter` syntax).
pub const ENV_LOG: &str = "AUDITSPAN_LOG";

/// Sends logs to stderr, so that stdout carries only spans. The level comes from
/// `AUDITSPAN_LOG` (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_env(ENV_LOG)
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

//! Test support: runs the real `auditspan` binary as a child process and observes it only
//! from the outside, as an operator would — spans on stdout, logs on stderr, `/metrics`, the
//! exit status and the files it leaves behind — and plays the parts around it: the audit
//! device that writes events, and the backends that receive spans.
//!
//! - [`daemon`]: [`Daemon`] owns the child and a temporary directory holding its config
//!   (place sockets and `data_dir` there too). Dropping a `Daemon` kills the child, so a
//!   failing test never leaves one behind. Its stdout is collected line by line, or left
//!   unread in a pipe, or discarded ([`Stdout`]).
//! - [`scrape`]: [`Metrics`], one scrape of `/metrics`, keyed by name and sorted labels.
//! - [`traffic`]: audit events (one builder, [`Event`], and the [`pair`]s most tests send)
//!   and the writers to the daemon's unix socket.
//! - [`receiver`]: backends on loopback — a scripted HTTP receiver (Zipkin, Honeycomb) and
//!   OTLP receivers (gRPC, HTTP) — with the request handling they share.
//! - [`schema`]: validators of the JSON schemas in `shared/schemas/`.
//! - [`files`]: the file inputs from the outside (configs, appends, exact span sets, a
//!   Zipkin backend beside a stdout tee); [`bao`]: a real OpenBao with the audit devices
//!   a test declares.
//! - [`net`]: the network inputs from the outside (where they listen, http posts, TCP and
//!   UDP senders, a recording proxy, rsyslog, `logger`); [`bao`]: a real OpenBao with the
//!   audit devices a test declares.
//! - Every wait polls with a deadline ([`DEADLINE`]) and fails naming what it waited for,
//!   with the daemon's stderr tail; no test sleeps to synchronise.
//!
//! The end-to-end bench (`benches/e2e`) includes this folder with `#[path]`, so the daemon
//! it measures is started, scraped and awaited exactly as the tests do it; both mount it
//! as `crate::support`, the path its submodules use for each other. Neither user
//! needs all of it, hence the `dead_code` and `unused_imports` allowances (the flat
//! re-exports below are for the tests).
#![allow(clippy::unwrap_used, dead_code, unused_imports)]

pub mod bao;
pub mod containers;
pub mod daemon;
pub mod files;
pub mod net;
pub mod receiver;
pub mod schema;
pub mod scrape;
pub mod tmpfs;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use daemon::{
    Daemon, Imported, Options, Stdout, auditspan, config_with_sink, default_config, import_fixture,
    span_times, toml_string,
};
pub use scrape::Metrics;
pub use traffic::{
    Event, connect, pair, pair_with, paired_ids, pairs, request_id, request_id_of, send,
    send_pairs, write,
};

/// How long any single wait may take before the test fails. Generous on purpose: CI is a
/// busy 2-core machine that may be compiling or running other tests at the same time.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Pause between two polls of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// `shared/` beside the repository (DESIGN: protocol facts, schemas, fixtures and tools
/// live there), relative to the repository.
const SHARED: &str = "../shared";

/// The repository (the crate's manifest directory).
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `shared/` beside the repository: the audit fixtures, the JSON schemas, the load
/// generator.
pub fn shared_dir() -> PathBuf {
    repo_dir().join(SHARED)
}

/// The audit-log fixtures, `shared/fixtures/vault-audit/`.
pub fn fixtures_dir() -> PathBuf {
    shared_dir().join("fixtures/vault-audit")
}

/// The fixture file `name` in [`fixtures_dir`].
pub fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(name)
}

/// Every `.jsonl` fixture (each one audit log), sorted; panics when fewer than five are
/// there, so that a missing `shared/` folder cannot pass for an empty corpus.
pub fn fixture_files() -> Vec<PathBuf> {
    let dir = fixtures_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "fixtures missing in {dir:?}");
    files
}

/// The reviewed expectations of the golden test, `tests/golden/`.
pub fn golden_dir() -> PathBuf {
    repo_dir().join("tests/golden")
}

/// An HTTP client for scrapes and test traffic: bounded by a timeout, and 4xx/5xx are
/// responses to inspect, not errors.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns true (→ true) or `deadline` has passed
/// (→ false).
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `f` until it returns true; panics naming `what` on timeout. Use
/// [`Daemon::wait_until`] when a daemon is involved: its failure quotes the daemon's stderr.
pub fn wait_until(deadline: Duration, what: &str, f: impl FnMut() -> bool) {
    if !poll_until(deadline, f) {
        panic!("timed out after {deadline:?} waiting for {what}");
    }
}

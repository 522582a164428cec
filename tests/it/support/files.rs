//! The file inputs from the outside: configs with a `file`, `fifo` or `stdin` input, an
//! audit log written the way Vault's file device writes it (appends of whole entries, or
//! of parts when a test says so), the span sets the tests compare exactly, and a Zipkin
//! receiver to take the spans when stdout carries the tee.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::receiver::http::{Receiver, Reply, Request};
use super::{DEADLINE, Daemon, pair, request_id_of, toml_string};

/// A config with one `file` input named `file` following `pattern` (`extra` adds keys to
/// it), `data_dir` `<dir>/data`, metrics on an ephemeral port and the stdout sink.
pub fn file_config(dir: &Path, pattern: &str, extra: &str) -> String {
    format!(
        "data_dir = {data}\n\n[[input]]\ntype = \"file\"\nname = \"file\"\npath = {pattern}\n{extra}\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n\n[correlate]\npair_timeout = \"30s\"\n",
        data = toml_string(&dir.join("data")),
        pattern = toml::Value::String(pattern.to_owned()),
    )
}

/// Appends `bytes` to `path` (created if missing) in one write, as Vault's file device
/// writes an entry (`O_APPEND`).
pub fn append(path: &Path, bytes: impl AsRef<[u8]>) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {path:?}: {e}"));
    file.write_all(bytes.as_ref()).unwrap();
}

/// Pairs `range` as audit lines ([`pair`]).
pub fn pairs_text(range: std::ops::Range<u64>) -> String {
    range.map(pair).collect()
}

/// How many spans each request id got.
pub fn span_counts(ids: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Panics unless `spans` are exactly one `paired` span per pair in `expected` (ids of
/// [`super::request_id`]), nothing missing and nothing twice.
pub fn assert_exact_pairs(daemon: &Daemon, spans: &[Value], expected: &[u64]) {
    let counts = span_counts(spans.iter().map(request_id_of));
    let want = span_counts(expected.iter().map(|n| super::request_id(*n)));
    if counts != want {
        let missing: Vec<_> = want.keys().filter(|k| !counts.contains_key(*k)).collect();
        let extra: Vec<_> = counts
            .iter()
            .filter(|(k, n)| want.get(*k) != Some(*n))
            .collect();
        daemon.fail(&format!(
            "span set differs: {} spans for {} pairs; missing {missing:?}; unexpected or repeated {extra:?}",
            spans.len(),
            expected.len()
        ));
    }
    for span in spans {
        assert_eq!(
            span["attributes"]["auditspan.outcome"], "paired",
            "not paired: {span}"
        );
    }
}

/// Waits until at least `n` spans were printed, then stops the daemon with SIGTERM and
/// returns every span of every run (so that a late duplicate would be in it too).
pub fn spans_after_stop(daemon: &mut Daemon, n: usize) -> Vec<Value> {
    daemon.wait_for_spans(n);
    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        daemon.stderr()
    );
    daemon.spans()
}

/// Freezes the daemon (SIGSTOP) for the length of `f`, so that what `f` does to the files
/// happens at once as far as the daemon can tell; then lets it run on (SIGCONT).
pub fn while_stopped(daemon: &Daemon, f: impl FnOnce()) {
    daemon.signal(Signal::SIGSTOP);
    f();
    daemon.signal(Signal::SIGCONT);
}

/// The daemon's `auditspan_input_errors_total{input="file",reason}`.
pub fn input_errors(daemon: &Daemon, reason: &str) -> f64 {
    daemon.metrics().sum_matching(
        "auditspan_input_errors_total",
        &[("input", "file"), ("reason", reason)],
    )
}

/// A Zipkin backend that takes every batch (the sink beside a stdout tee).
pub fn zipkin_receiver() -> Receiver {
    Receiver::start(|_| Reply::status(202))
}

/// The `[[sink]]` of a Zipkin sink sending to `receiver`.
pub fn zipkin_sink(receiver: &Receiver) -> String {
    format!(
        "[[sink]]\ntype = \"zipkin\"\nendpoint = \"{}\"\n",
        receiver.url("/api/v2/spans")
    )
}

/// The `vault.request.id` of every span the Zipkin receiver got, in arrival order.
pub fn zipkin_request_ids(receiver: &Receiver) -> Vec<String> {
    receiver
        .requests()
        .iter()
        .flat_map(|r: &Request| r.json().as_array().cloned().unwrap_or_default())
        .map(|span| {
            span["tags"]["vault.request.id"]
                .as_str()
                .unwrap_or_else(|| panic!("a Zipkin span without vault.request.id: {span}"))
                .to_owned()
        })
        .collect()
}

/// After a SIGKILL the sink may print again what it printed before the kill but had not
/// acknowledged durably (at least once, DESIGN invariant 1): identical copies of one
/// committed span. What must hold is that no event was lost and none read twice into a
/// second span: once `n` = `expected.len()` spans are printed, the queue has committed
/// exactly `n` spans over every run (its sequence survives restarts), the printed ids are
/// exactly `expected`, and every copy of a span is identical. Stops the daemon.
pub fn assert_exact_pairs_after_crash(daemon: &mut Daemon, expected: &[u64]) -> Vec<Value> {
    let n = expected.len();
    daemon.wait_for_spans(n);
    let committed = "auditspan_queue_committed_sequence";
    daemon.wait_until(DEADLINE, &format!("{n} spans committed"), || {
        daemon.metrics().get(committed, &[]) >= n as f64
    });
    assert_eq!(
        daemon.metrics().get(committed, &[]),
        n as f64,
        "spans committed over every run (a line read twice makes a second span)"
    );
    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        daemon.stderr()
    );
    let lines = daemon.stdout_lines();
    let mut first: BTreeMap<String, &String> = BTreeMap::new();
    for (line, span) in lines.iter().zip(daemon.spans()) {
        let id = request_id_of(&span);
        if let Some(earlier) = first.insert(id.clone(), line) {
            assert_eq!(earlier, line, "two different spans for {id}");
        }
    }
    let mut unique: Vec<Value> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for span in daemon.spans() {
        if seen.insert(request_id_of(&span)) {
            unique.push(span);
        }
    }
    assert_exact_pairs(daemon, &unique, expected);
    unique
}

//! The unix-socket input with real sockets: concurrency, bad input around good input, and
//! the socket file's life cycle.

use std::{collections::HashSet, io::Write, os::unix::fs::PermissionsExt};

use crate::support::{
    DEADLINE, Daemon, Event, auditspan, default_config, paired_ids, request_id, toml_string,
};

const RECEIVED: &str = "auditspan_events_received_total";
const INVALID: &str = "auditspan_events_invalid_total";
const SPANS: &str = "auditspan_spans_created_total";

/// 8 writers × 5,000 events, each pair's request and response on different connections:
/// every pair becomes exactly one span and nothing is left waiting.
#[test]
fn concurrent_writers_pair_every_event_exactly_once() {
    const WRITERS: u64 = 8;
    const PAIRS_PER_WRITER: u64 = 2_500;
    let daemon = Daemon::start_default();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let mut conn = daemon.connect();
            std::thread::spawn(move || {
                let mut buf = String::new();
                for k in 0..PAIRS_PER_WRITER {
                    // This writer's request k, and the response of the previous writer's k.
                    let own = request_id(w * PAIRS_PER_WRITER + k);
                    let other = request_id(((w + WRITERS - 1) % WRITERS) * PAIRS_PER_WRITER + k);
                    buf.push_str(&Event::request(&own, k).line());
                    buf.push_str(&Event::response(&other, k + 3).line());
                    if buf.len() > 64 * 1024 {
                        conn.write_all(buf.as_bytes()).unwrap();
                        buf.clear();
                    }
                }
                conn.write_all(buf.as_bytes()).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let total = (WRITERS * PAIRS_PER_WRITER) as usize;
    let spans = daemon.wait_for_spans(total);
    let ids = paired_ids(&spans);
    assert_eq!(ids.len(), total, "every span is paired");
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), total, "no pair is emitted twice");
    let m = daemon.metrics();
    assert_eq!(m.get(RECEIVED, &[("input", "unix")]), (2 * total) as f64);
    assert_eq!(m.get(SPANS, &[("outcome", "paired")]), total as f64);
    assert_eq!(m.sum(INVALID), 0.0);
    assert_eq!(m.get("auditspan_correlator_pending", &[]), 0.0);
}

/// A line longer than `max_line_bytes` is skipped to its end, counted and dead-lettered
/// (its first 4 KiB); the events before and after it on the same connection still pair.
#[test]
fn oversized_line_is_skipped_and_the_connection_carries_on() {
    let daemon = Daemon::start_with(|dir| {
        default_config(dir).replace(
            "name = \"unix\"",
            "name = \"unix\"\nmax_line_bytes = \"64KiB\"",
        )
    });
    let id = request_id(1);
    let mut conn = daemon.connect();
    conn.write_all(Event::request(&id, 0).line().as_bytes())
        .unwrap();
    let mut huge = vec![b'x'; 300 * 1024];
    huge.push(b'\n');
    conn.write_all(&huge).unwrap();
    conn.write_all(Event::response(&id, 5).line().as_bytes())
        .unwrap();
    let spans = daemon.wait_for_spans(1);
    assert_eq!(paired_ids(&spans), [id]);
    daemon.wait_until(DEADLINE, "the too_long count", || {
        daemon
            .metrics()
            .get(INVALID, &[("input", "unix"), ("reason", "too_long")])
            == 1.0
    });
    assert_eq!(daemon.metrics().get(RECEIVED, &[("input", "unix")]), 3.0);
    let dl = daemon.dead_letters();
    assert_eq!(dl.len(), 1);
    assert_eq!(dl[0]["reason"], "too_long");
    assert_eq!(dl[0]["input"], "unix");
    assert_eq!(dl[0]["line"].as_str().unwrap().len(), 4096);
    assert!(
        daemon.stderr().contains("bytes=307200"),
        "the log names the length"
    );
    let mode = std::fs::metadata(daemon.dir().join("data/deadletter.jsonl"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Garbage (invalid UTF-8, binary, not JSON) between the two halves of a pair is counted
/// and dead-lettered without its content in the logs; the pair still becomes a span.
#[test]
fn garbage_bytes_are_rejected_and_the_pair_around_them_survives() {
    let daemon = Daemon::start_default();
    let id = request_id(2);
    let mut conn = daemon.connect();
    conn.write_all(Event::request(&id, 0).line().as_bytes())
        .unwrap();
    conn.write_all(b"\xff\xfe\x00binary\x80garbage\n").unwrap();
    conn.write_all(b"SECRET-not-json\n").unwrap();
    conn.write_all(b"{\"type\":\"request\",\"request\":{}}\n")
        .unwrap();
    conn.write_all(Event::response(&id, 5).line().as_bytes())
        .unwrap();
    let spans = daemon.wait_for_spans(1);
    assert_eq!(paired_ids(&spans), [id]);
    daemon.wait_until(DEADLINE, "three invalid lines", || {
        daemon.metrics().sum(INVALID) == 3.0
    });
    let m = daemon.metrics();
    assert_eq!(
        m.get(INVALID, &[("input", "unix"), ("reason", "not_json")]),
        2.0
    );
    assert_eq!(
        m.get(INVALID, &[("input", "unix"), ("reason", "no_request_id")]),
        1.0
    );
    let dl = daemon.dead_letters();
    assert_eq!(dl.len(), 3);
    assert!(
        dl[0]["line_base64"].is_string(),
        "non-UTF-8 lines are kept as base64"
    );
    assert_eq!(dl[1]["line"], "SECRET-not-json");
    assert!(
        !daemon.stderr().contains("SECRET"),
        "logs never contain line content"
    );
}

/// A client that disconnects mid-line loses only that partial line; its complete lines
/// and other connections' events are unaffected.
#[test]
fn half_a_line_then_disconnect_loses_only_that_line() {
    let daemon = Daemon::start_default();
    let (a, b) = (request_id(3), request_id(4));
    {
        let mut conn = daemon.connect();
        conn.write_all(Event::request(&a, 0).line().as_bytes())
            .unwrap();
        conn.write_all(Event::request(&b, 1).line().as_bytes())
            .unwrap();
        let resp = Event::response(&a, 4).line();
        conn.write_all(&resp.as_bytes()[..resp.len() / 2]).unwrap();
    }
    let mut conn = daemon.connect();
    conn.write_all(Event::response(&b, 5).line().as_bytes())
        .unwrap();
    conn.write_all(Event::response(&a, 6).line().as_bytes())
        .unwrap();
    let spans = daemon.wait_for_spans(2);
    let mut ids = paired_ids(&spans);
    ids.sort();
    assert_eq!(ids, [a, b]);
    daemon.wait_until(DEADLINE, "the partial line counted", || {
        daemon
            .metrics()
            .get(INVALID, &[("input", "unix"), ("reason", "not_json")])
            == 1.0
    });
    assert_eq!(daemon.metrics().get(RECEIVED, &[("input", "unix")]), 5.0);
}

/// A socket file left by a crashed run is replaced; the socket gets mode 0600 by default
/// or the configured mode; SIGTERM exits 0 and removes it.
#[test]
fn stale_socket_is_replaced_and_mode_applies() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists(), "a dropped listener leaves its file behind");
    let mut daemon = Daemon::start_with(|d| {
        default_config(d)
            .replace(&toml_string(&d.join("audit.sock")), &toml_string(&stale))
            .replace("name = \"unix\"", "name = \"unix\"\nmode = \"0660\"")
    });
    assert!(daemon.stderr().contains("Replaced a stale socket file"));
    let mode = std::fs::metadata(&stale).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660);
    daemon.sigterm();
    assert!(daemon.wait_exit(DEADLINE).success());
    assert!(!stale.exists(), "the socket file is removed on exit");

    let daemon = Daemon::start_default();
    let mode = std::fs::metadata(daemon.socket())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A socket another process answers on is never taken over: the second daemon refuses to
/// start with a message saying so, and the first keeps working.
#[test]
fn live_socket_is_an_error() {
    let first = Daemon::start_default();
    let output = auditspan(first.dir())
        .args(["run", "--metrics-listen", "", "--config"])
        .arg(first.config_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    let id = request_id(5);
    let mut conn = first.connect();
    conn.write_all(Event::request(&id, 0).line().as_bytes())
        .unwrap();
    conn.write_all(Event::response(&id, 1).line().as_bytes())
        .unwrap();
    assert_eq!(paired_ids(&first.wait_for_spans(1)), [id]);
}

/// Something that is not a socket at the path is left alone and reported.
#[test]
fn a_regular_file_at_the_socket_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.sock");
    std::fs::write(&path, "keep me").unwrap();
    let output = auditspan(dir.path())
        .args(["run", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg({
            let cfg = dir.path().join("c.toml");
            std::fs::write(&cfg, format!("[[input]]\npath = {}\n", toml_string(&path))).unwrap();
            cfg
        })
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exists and is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}

/// Repeats of an id (the socket device retries a write; two devices share ids) are dropped
/// and counted; the pair makes one span.
#[test]
fn duplicates_are_dropped_and_counted() {
    let daemon = Daemon::start_default();
    let id = request_id(6);
    let mut conn = daemon.connect();
    for line in [
        Event::request(&id, 0).line(),
        Event::request(&id, 0).line(),
        Event::response(&id, 2).line(),
        Event::response(&id, 2).line(),
    ] {
        conn.write_all(line.as_bytes()).unwrap();
    }
    assert_eq!(paired_ids(&daemon.wait_for_spans(1)), [id]);
    daemon.wait_until(DEADLINE, "two duplicates counted", || {
        daemon.metrics().get(
            "auditspan_events_ignored_total",
            &[("input", "unix"), ("reason", "duplicate")],
        ) == 2.0
    });
    assert_eq!(daemon.spans().len(), 1);
}

/// On a live input, a request whose response never comes becomes a `response_missing` span
/// once `pair_timeout` has passed on the wall clock, even when nothing else arrives.
#[test]
fn idle_request_expires_on_the_wall_clock() {
    let daemon = Daemon::start_with(|dir| {
        default_config(dir).replace("pair_timeout = \"10s\"", "pair_timeout = \"300ms\"")
    });
    let id = request_id(7);
    daemon
        .connect()
        .write_all(Event::request(&id, 0).line().as_bytes())
        .unwrap();
    let spans = daemon.wait_for_spans(1);
    assert_eq!(
        spans[0]["attributes"]["auditspan.outcome"],
        "response_missing"
    );
    assert_eq!(spans[0]["attributes"]["vault.request.id"], id.as_str());
    assert_eq!(
        spans[0]["start_time_unix_nano"],
        spans[0]["end_time_unix_nano"]
    );
    let m = daemon.metrics();
    assert_eq!(m.get(SPANS, &[("outcome", "response_missing")]), 1.0);
    assert_eq!(m.get("auditspan_correlator_pending", &[]), 0.0);
}

/// SIGHUP reopens the dead-letter file, so that logrotate can move it away; `/healthz`
/// answers while the daemon runs.
#[test]
fn sighup_reopens_the_deadletter_file() {
    let daemon = Daemon::start_default();
    let path = daemon.dir().join("data/deadletter.jsonl");
    let moved = daemon.dir().join("data/deadletter.jsonl.moved");
    daemon.connect().write_all(b"first-bad-line\n").unwrap();
    daemon.wait_until(DEADLINE, "the first dead letter", || path.exists());
    std::fs::rename(&path, &moved).unwrap();
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_until(DEADLINE, "the reopen log line", || {
        daemon.stderr().contains("Reopening the dead-letter file")
    });
    daemon.connect().write_all(b"second-bad-line\n").unwrap();
    daemon.wait_until(DEADLINE, "the second dead letter in a new file", || {
        path.exists()
    });
    assert!(
        std::fs::read_to_string(&moved)
            .unwrap()
            .contains("first-bad-line")
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("second-bad-line") && !text.contains("first-bad-line"));
    let health = crate::support::http_agent()
        .get(&format!("http://{}/healthz", daemon.metrics_addr()))
        .call()
        .unwrap();
    assert_eq!(health.status(), 200);
}

/// Lines a client wrote before SIGTERM are read and committed before the daemon exits,
/// even when the daemon had not got to them yet.
#[test]
fn sigterm_takes_what_clients_already_wrote() {
    let mut daemon = Daemon::start_default();
    let mut conn = daemon.connect();
    let mut buf = String::new();
    for k in 0..2_000 {
        let id = request_id(100_000 + k);
        buf.push_str(&Event::request(&id, k).line());
        buf.push_str(&Event::response(&id, k + 1).line());
    }
    conn.write_all(buf.as_bytes()).unwrap();
    daemon.sigterm();
    assert!(daemon.wait_exit(DEADLINE).success());
    let spans = daemon.spans();
    if paired_ids(&spans).len() != 2_000 {
        daemon.fail(&format!(
            "{} of 2000 pairs arrived",
            paired_ids(&spans).len()
        ));
    }
}

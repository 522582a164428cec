//! The stdin input: `bao server … | auditspan run`. At the end of its input the daemon
//! expires what still waits, delivers everything and exits 0.

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::mpsc;

use serde_json::Value;

use crate::support::files::{
    pairs_text, span_counts, zipkin_receiver, zipkin_request_ids, zipkin_sink,
};
use crate::support::{DEADLINE, Event, auditspan, request_id, request_id_of, toml_string};

/// Runs the daemon with `config` on `input` piped to its stdin; returns its exit status,
/// stdout bytes and stderr once it exits (within [`DEADLINE`]).
fn run_with_stdin(dir: &std::path::Path, config: &str, input: &[u8]) -> (i32, Vec<u8>, String) {
    std::fs::write(dir.join("auditspan.toml"), config).unwrap();
    let mut child = auditspan(dir)
        .args(["run", "--config", "auditspan.toml"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    stdin.write_all(input).unwrap();
    drop(stdin);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait()).ok());
    let status = match rx.recv_timeout(DEADLINE) {
        Ok(status) => status.unwrap(),
        Err(_) => panic!("the daemon did not exit after the end of its stdin"),
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

fn config(dir: &std::path::Path, input: &str, sink: &str) -> String {
    format!(
        "data_dir = {data}\n\n[[input]]\ntype = \"stdin\"\n{input}\n\n[metrics]\nlisten = \"\"\n\n{sink}",
        data = toml_string(&dir.join("data")),
    )
}

/// Piped input, its end, a clean exit: every pair is one span on stdout, the request
/// that never got its response is `response_missing` (expired at the end, as `import`
/// does), and the exit status is 0.
#[test]
fn stdin_to_its_end_delivers_everything_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let lone = request_id(999);
    let input = pairs_text(0..300) + &Event::request(&lone, 5000).line();
    let (code, stdout, stderr) =
        run_with_stdin(dir.path(), &config(dir.path(), "", ""), input.as_bytes());
    assert_eq!(code, 0, "{stderr}");
    let spans: Vec<Value> = String::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let counts = span_counts(spans.iter().map(request_id_of));
    assert_eq!(counts.len(), 301, "{stderr}");
    assert!(counts.values().all(|n| *n == 1));
    let lone_span = spans.iter().find(|s| request_id_of(s) == lone).unwrap();
    assert_eq!(
        lone_span["attributes"]["auditspan.outcome"],
        "response_missing"
    );
    assert!(stderr.contains("Every input ended"), "{stderr}");
}

/// With `tee = "stdout"`, stdout is exactly the input, byte for byte (a last line
/// without its newline included), and the spans go to the other sink.
#[test]
fn stdin_tee_copies_every_byte_and_spans_go_to_the_sink() {
    let receiver = zipkin_receiver();
    let dir = tempfile::tempdir().unwrap();
    let mut input = pairs_text(0..100).into_bytes();
    input.extend_from_slice(b"garbage \xff\r\n");
    input.extend_from_slice(pairs_text(100..120).as_bytes());
    input.extend_from_slice(b"{\"unfinished\":");
    let config = config(dir.path(), "tee = \"stdout\"", &zipkin_sink(&receiver));
    let (code, stdout, stderr) = run_with_stdin(dir.path(), &config, &input);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout == input, "stdout is not the input byte for byte");
    let counts = span_counts(zipkin_request_ids(&receiver));
    assert_eq!(counts.len(), 120, "{stderr}");
    assert!(counts.values().all(|n| *n == 1));
}

/// When the sinks do not take everything within `import_timeout` after the end of stdin,
/// the daemon says so and exits 1; the spans stay queued for the next start.
#[test]
fn stdin_end_with_an_unreachable_sink_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let down = crate::support::receiver::free_port();
    let sink = format!("[[sink]]\ntype = \"zipkin\"\nendpoint = \"http://{down}/api/v2/spans\"\n");
    let config = format!("import_timeout = \"1s\"\n{}", config(dir.path(), "", &sink));
    let (code, _, stderr) = run_with_stdin(dir.path(), &config, pairs_text(0..10).as_bytes());
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("did not acknowledge every span within import_timeout"),
        "{stderr}"
    );
}

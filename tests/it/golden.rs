//! Golden test: every fixture file through `auditspan import`, compared with the spans and
//! dead-letter records checked into `tests/golden/`.
//!
//! Run with `AUDITSPAN_BLESS=1` to rewrite the expectations after a deliberate change, then
//! review the diff line by line: these files are the reviewed contract of the parser and
//! the correlator.
//!
//! Normalised before comparing: `resource."host.name"` (the machine's name), the
//! dead-letter `received` time, and long values (a string over 160 bytes or an array over
//! 16 elements becomes `<N bytes|items sha256:…>`, so a change in them still shows).
//!
//! Decisions on the lines the fixtures' INDEX calls parser-dependent (authored-bad.jsonl):
//! - B13 (UTF-8 BOM before a valid object) is accepted: the BOM is stripped. It repeats
//!   B01's request id, so it is counted as a duplicate and makes no span.
//! - B14 (`"type"` twice) is accepted, first value wins (`request`), the rule the
//!   flattener applies to every repeated key; it becomes a `response_missing` span.
//! - B15 (lone surrogate) and B16 (NaN) are not JSON to us, as to serde_json.
//! - authored-edge.jsonl lines 27–30 carry prefixes; without `--prefix` they are not JSON,
//!   and the `authored-edge.prefix-cee` case shows the `@cee: ` pair joining.

use std::path::PathBuf;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::support::{fixture, fixture_files, golden_dir};

const MAX_STRING: usize = 160;
const MAX_ITEMS: usize = 16;

fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn shorten(value: &mut Value) {
    match value {
        Value::String(s) if s.len() > MAX_STRING => {
            *value = Value::String(format!(
                "<{} bytes sha256:{}>",
                s.len(),
                digest(s.as_bytes())
            ));
        }
        Value::Array(items) if items.len() > MAX_ITEMS => {
            let text = serde_json::to_string(items).unwrap();
            *value = Value::String(format!(
                "<{} items sha256:{}>",
                items.len(),
                digest(text.as_bytes())
            ));
        }
        Value::Array(items) => items.iter_mut().for_each(shorten),
        Value::Object(map) => map.values_mut().for_each(shorten),
        _ => {}
    }
}

fn normalise_span(mut span: Value) -> Value {
    span["resource"]["host.name"] = Value::String("<host>".into());
    shorten(&mut span["attributes"]);
    if let Some(Value::String(message)) = span["status"].get_mut("message")
        && message.len() > MAX_STRING
    {
        *message = format!("<{} bytes>", message.len());
    }
    span
}

fn normalise_deadletter(mut record: Value) -> Value {
    let map = record.as_object_mut().unwrap();
    map.remove("received");
    let mut out = Map::new();
    for key in ["input", "reason", "sink"] {
        if let Some(v) = map.remove(key) {
            out.insert(key.into(), v);
        }
    }
    for key in ["line", "line_base64"] {
        if let Some(Value::String(text)) = map.remove(key) {
            let mut v = Value::String(text);
            shorten(&mut v);
            out.insert(key.into(), v);
        }
    }
    assert!(map.is_empty(), "unexpected dead-letter keys: {map:?}");
    Value::Object(out)
}

struct Case {
    name: String,
    file: PathBuf,
    prefix: Option<&'static str>,
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = fixture_files()
        .iter()
        .map(|f| Case {
            name: f.file_stem().unwrap().to_string_lossy().into_owned(),
            file: f.clone(),
            prefix: None,
        })
        .collect();
    cases.push(Case {
        name: "authored-edge.prefix-cee".into(),
        file: fixture("authored-edge.jsonl"),
        prefix: Some("@cee: "),
    });
    cases
}

/// Runs one import; returns the normalised spans, dead-letter records and summary line.
fn run(case: &Case) -> (Vec<Value>, Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("golden.toml");
    std::fs::write(&config, "instance_id = \"golden\"\n").unwrap();
    let deadletter = dir.path().join("dl.jsonl");
    let mut command = crate::support::auditspan(dir.path());
    command
        .arg("import")
        .arg("--config")
        .arg(&config)
        .arg("--deadletter")
        .arg(&deadletter);
    if let Some(prefix) = case.prefix {
        command.arg("--prefix").arg(prefix);
    }
    let output = command.arg(&case.file).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "{}: import failed: {stderr}",
        case.name
    );
    let spans = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| normalise_span(serde_json::from_str(l).unwrap()))
        .collect();
    let records = match std::fs::read_to_string(&deadletter) {
        Ok(text) => text
            .lines()
            .map(|l| normalise_deadletter(serde_json::from_str(l).unwrap()))
            .collect(),
        Err(_) => Vec::new(),
    };
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("auditspan import:"))
        .unwrap_or_default()
        .to_owned();
    (spans, records, summary)
}

fn to_lines(values: &[Value]) -> String {
    values
        .iter()
        .map(|v| serde_json::to_string(v).unwrap() + "\n")
        .collect()
}

fn compare(name: &str, kind: &str, actual: &str) {
    let path = golden_dir().join(format!("{name}.{kind}"));
    if std::env::var_os("AUDITSPAN_BLESS").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path:?}: {e} (run with AUDITSPAN_BLESS=1 to create it)"));
    if expected != actual {
        let (i, (e, a)) = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (e, a))| e != a)
            .unwrap_or((
                expected.lines().count().min(actual.lines().count()),
                ("<end>", "<end>"),
            ));
        panic!(
            "{path:?} differs at line {}:\nexpected: {e}\nactual:   {a}\n({} expected lines, {} actual)",
            i + 1,
            expected.lines().count(),
            actual.lines().count()
        );
    }
}

/// Every fixture file's spans and dead-letter records match the reviewed expectations.
#[test]
fn fixtures_match_the_golden_files() {
    for case in cases() {
        let (spans, records, summary) = run(&case);
        compare(&case.name, "spans.jsonl", &to_lines(&spans));
        compare(&case.name, "deadletter.jsonl", &to_lines(&records));
        compare(&case.name, "summary.txt", &(summary + "\n"));
    }
}

/// The pairs the fixtures promise: authored-bad's B01+B24 join despite everything between
/// them, and the real OpenBao session's traceparent request joins the caller's trace.
#[test]
fn fixture_promises_hold() {
    let find = |name: &str| cases().into_iter().find(|c| c.name == name).unwrap();
    let (spans, records, _) = run(&find("authored-bad"));
    let b01 = spans
        .iter()
        .find(|s| s["attributes"]["auditspan.outcome"] == "paired")
        .expect("B01 and B24 pair");
    assert_eq!(b01["start_time_unix_nano"], "1741708800100000000");
    assert!(records.len() >= 15, "the malformed lines are dead-lettered");

    let (spans, _, _) = run(&find("openbao-2.7.2-dev-session"));
    let joined: Vec<_> = spans
        .iter()
        .filter(|s| s["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736")
        .collect();
    assert!(
        !joined.is_empty(),
        "the traceparent request joins the caller's trace"
    );
    assert!(
        joined
            .iter()
            .all(|s| s["parent_span_id"] == "00f067aa0ba902b7")
    );
    assert!(spans.iter().all(|s| s["kind"] == "server"));
    assert!(
        !spans
            .iter()
            .any(|s| s["attributes"]["request.path"] == "sys/audit/test")
    );
}

use super::*;
use crate::attr::AttrValue;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/fixtures/vault-audit/"
);

/// The fixture's lines as the framer hands them over: split on `\n`, one trailing `\r`
/// removed.
fn fixture(name: &str) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(format!("{FIXTURES}{name}")).unwrap();
    let mut lines: Vec<Vec<u8>> = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .collect();
    if bytes.ends_with(b"\n") {
        lines.pop();
    }
    lines
}

fn limits() -> ParseLimits {
    ParseLimits::default()
}

fn parse(line: &str) -> Result<Parsed, ParseError> {
    parse_line(line.as_bytes(), "", &limits())
}

fn event(line: &str) -> AuditEvent {
    match parse(line) {
        Ok(Parsed::Event(e)) => *e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn reason(line: &[u8]) -> Option<InvalidReason> {
    parse_line(line, "", &limits()).err().map(|e| e.reason)
}

const GOOD: &str = r#"{"time":"2025-03-11T16:00:00.123456789Z","type":"response","auth":{"policies":["a","b"]},"request":{"id":"r-1","operation":"read","mount_point":"kv/","namespace":{"id":"x","path":"team/"},"path":"kv/data/a","headers":{"traceparent":["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"]}},"error":"permission denied"}"#;

#[test]
fn valid_event_fields() {
    let e = event(GOOD);
    assert_eq!(e.kind, EventKind::Response);
    assert_eq!(e.id, "r-1");
    assert_eq!(e.time_unix_nano, 1_741_708_800_123_456_789);
    assert_eq!(e.error.as_deref(), Some("permission denied"));
    assert_eq!(e.operation.as_deref(), Some("read"));
    assert_eq!(e.path.as_deref(), Some("kv/data/a"));
    assert_eq!(e.mount_point.as_deref(), Some("kv/"));
    assert_eq!(e.namespace_path.as_deref(), Some("team/"));
    assert_eq!(
        e.traceparent.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    let attrs = e.attributes.to_vec();
    assert_eq!(
        attrs[0],
        (
            "time".to_owned(),
            AttrValue::Str("2025-03-11T16:00:00.123456789Z".into())
        )
    );
    assert_eq!(
        attrs[1],
        ("type".to_owned(), AttrValue::Str("response".into()))
    );
    assert!(
        e.attributes
            .iter()
            .any(|(k, v)| k == "error" && v == AttrValue::Str("permission denied".into()))
    );
    assert!(
        e.attributes
            .iter()
            .any(|(k, _)| k == "request.namespace.path")
    );
    assert_eq!(e.truncations, Truncations::default());
}

#[test]
fn core_fields_survive_any_limits() {
    let lim = ParseLimits {
        max_depth: 1,
        max_attributes: 0,
        max_value_bytes: 0,
    };
    match parse_line(GOOD.as_bytes(), "", &lim) {
        Ok(Parsed::Event(e)) => {
            assert_eq!(e.id, "r-1");
            assert_eq!(e.namespace_path.as_deref(), Some("team/"));
            assert!(e.traceparent.is_some());
            assert!(e.attributes.is_empty());
            assert!(e.truncations.attributes > 0);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_error_is_no_error() {
    let e = event(
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":"a"},"error":""}"#,
    );
    assert_eq!(e.error, None);
    let e = event(
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":"a"},"error":{"x":1}}"#,
    );
    assert_eq!(e.error, None);
}

#[test]
fn wrong_typed_optional_fields_are_none() {
    let e = event(
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":"a","operation":1,"path":["p"],"mount_point":null,"namespace":"root","headers":{"traceparent":"00-x"}}}"#,
    );
    assert_eq!(
        (
            e.operation,
            e.path,
            e.mount_point,
            e.namespace_path,
            e.traceparent
        ),
        (None, None, None, None, None)
    );
    let e = event(
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":"a","headers":{"traceparent":[1,"x"]}}}"#,
    );
    assert_eq!(e.traceparent, None);
}

#[test]
fn not_json_cases() {
    for line in [
        &b""[..],
        b"   \t ",
        b"\xff\xfe{}",
        b"[1,2]",
        b"\"str\"",
        b"42",
        b"{\"type\":\"request\"",
        b"{\"a\":1} trailing",
        b"{\"a\":1}{\"a\":2}",
        b"{\"a\":\"\\ud800\"}",
        b"{\"a\":NaN}",
        b"{\"a\":Infinity}",
        b"\xEF\xBB\xBF\xEF\xBB\xBF{}",
    ] {
        assert_eq!(
            reason(line),
            Some(InvalidReason::NotJson),
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // Whitespace around the object is fine.
    assert!(parse(&format!(" \t{GOOD} \t")).is_ok());
}

#[test]
fn bad_type_cases() {
    for line in [
        r#"{"time":"2025-03-11T16:00:00Z","request":{"id":"a"}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":5,"request":{"id":"a"}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"kmip-request","request":{"id":"a"}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"Request","request":{"id":"a"}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":null,"request":{"id":"a"}}"#,
    ] {
        assert_eq!(
            reason(line.as_bytes()),
            Some(InvalidReason::BadType),
            "{line}"
        );
    }
    let e = parse(r#"{"type":5}"#).unwrap_err();
    assert_eq!(e.detail, "type is a number");
}

#[test]
fn audit_test_message_is_recognised_before_the_id_check() {
    assert_eq!(
        parse(r#"{"type":"request","request":{"path":"sys/audit/test"}}"#),
        Ok(Parsed::AuditTest)
    );
    assert_eq!(
        parse(
            r#"{"request":{"operation":"update","path":"sys/audit/test","id":"x"},"time":"x","type":"request"}"#
        ),
        Ok(Parsed::AuditTest)
    );
    assert_eq!(
        reason(br#"{"type":"response","request":{"path":"sys/audit/test"}}"#),
        Some(InvalidReason::NoRequestId)
    );
}

#[test]
fn no_request_id_cases() {
    for line in [
        r#"{"time":"2025-03-11T16:00:00Z","type":"request"}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":"oops"}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":""}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":123}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":null}}"#,
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","id":"top-level-only"}"#,
    ] {
        assert_eq!(
            reason(line.as_bytes()),
            Some(InvalidReason::NoRequestId),
            "{line}"
        );
    }
}

#[test]
fn bad_time_cases() {
    for time in [
        "\"11/03/2025 16:00\"",
        "\"2025-03-11 16:00:00Z\"",
        "\"2025-03-11T16:00:00\"",
        "\"2025-03-11T16:00Z\"",
        "\"2025-03-11T16:00:00.Z\"",
        "\"2025-03-11T16:00:00.1234567890Z\"",
        "\"2025-03-11T16:00:00+0530\"",
        "\"2025-03-11T16:00:00+24:00\"",
        "\"2025-13-11T16:00:00Z\"",
        "\"2025-02-30T16:00:00Z\"",
        "\"2025-03-11T25:00:00Z\"",
        "\"2025-03-11T16:00:00Z \"",
        "\"+2025-03-11T16:00:00Z\"",
        "\"2300-01-01T00:00:00Z\"",
        "1741708800",
        "null",
    ] {
        let line = format!(r#"{{"time":{time},"type":"request","request":{{"id":"a"}}}}"#);
        assert_eq!(
            reason(line.as_bytes()),
            Some(InvalidReason::BadTime),
            "{time}"
        );
    }
    assert_eq!(
        reason(br#"{"type":"request","request":{"id":"a"}}"#),
        Some(InvalidReason::BadTime)
    );
}

#[test]
fn rfc3339_variants() {
    let base = 1_741_708_800_000_000_000i64; // 2025-03-11T16:00:00Z
    for (text, want) in [
        ("2025-03-11T16:00:00Z", base),
        ("2025-03-11t16:00:00z", base),
        ("2025-03-11T16:00:00.5Z", base + 500_000_000),
        ("2025-03-11T16:00:00.000000001Z", base + 1),
        ("2025-03-11T21:30:00+05:30", base),
        ("2025-03-11T15:00:00.25-01:00", base + 250_000_000),
        ("2025-03-11T16:00:00-00:00", base),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.999999999Z", -1),
    ] {
        assert_eq!(parse_rfc3339(text), Some(want), "{text}");
    }
}

#[test]
fn details_never_quote_the_line() {
    let secret = "hunter2-SECRET";
    for line in [
        secret.to_owned(),
        format!("\"{secret}\""),
        format!("[\"{secret}\"]"),
        format!(r#"{{"type":"{secret}"}}"#),
        format!(r#"{{"type":"request","request":{{"id":"{secret}"}},"time":"{secret}"}}"#),
        format!(r#"{{"type":"request","request":{{"id":"a"}},"time":"x"}} {secret}"#),
        format!(r#"{{"a":"\ud800{secret}"}}"#),
        format!(r#"{{"a":["\ud800{secret}"]}}"#),
    ] {
        let e = parse(&line).unwrap_err();
        assert!(
            !e.detail.contains(secret) && !e.detail.contains("hunter"),
            "{e}"
        );
        assert!(!e.to_string().contains(secret));
    }
}

#[test]
fn prefix_is_stripped_only_when_present() {
    let body = r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":"a"}}"#;
    for prefix in ["@cee: ", "vault-prod ", "{dc1}"] {
        let line = format!("{prefix}{body}");
        assert!(
            matches!(
                parse_line(line.as_bytes(), prefix, &limits()),
                Ok(Parsed::Event(_))
            ),
            "{prefix}"
        );
        // Without the configured prefix, the prefixed line is not JSON.
        assert_eq!(reason(line.as_bytes()), Some(InvalidReason::NotJson));
        // A configured prefix that is absent: the line is parsed as is.
        assert!(parse_line(body.as_bytes(), prefix, &limits()).is_ok());
    }
    // The prefix is stripped before the BOM.
    let line = format!("@cee: \u{feff}{body}");
    assert!(parse_line(line.as_bytes(), "@cee: ", &limits()).is_ok());
}

#[test]
fn bom_is_accepted_once() {
    let line = format!("\u{feff}{GOOD}");
    assert!(parse(&line).is_ok());
}

#[test]
fn duplicate_keys_first_wins() {
    let e = event(
        r#"{"time":"2025-03-11T16:00:00Z","type":"request","type":"response","request":{"id":"first"},"request":{"id":"second"}}"#,
    );
    assert_eq!(e.kind, EventKind::Request);
    assert_eq!(e.id, "first");
    let types: Vec<_> = e.attributes.iter().filter(|(k, _)| *k == "type").collect();
    assert_eq!(types.len(), 1);
    assert_eq!(types[0].1, AttrValue::Str("request".into()));
}

#[test]
fn deep_lines_parse_without_overflow() {
    let n = 100_000;
    let head = r#"{"time":"2025-03-11T16:00:00Z","type":"request","request":{"id":"a","data":"#;
    let arrays = format!("{head}{}1{}}}}}", "[".repeat(n), "]".repeat(n));
    let objects = format!("{head}{}1{}}}}}", r#"{"a":"#.repeat(n), "}".repeat(n));
    for line in [arrays, objects] {
        match parse(&line) {
            Ok(Parsed::Event(e)) => assert_eq!(e.attributes.len(), 4),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        reason("[".repeat(n).as_bytes()),
        Some(InvalidReason::NotJson)
    );
    assert_eq!(
        reason(format!("{head}{}", "[".repeat(n)).as_bytes()),
        Some(InvalidReason::NotJson)
    );
}

/// Every line of every fixture: no panic, whatever the input.
#[test]
fn every_fixture_line_parses_without_panic() {
    let dir = std::fs::read_dir(FIXTURES).unwrap();
    let mut files = 0;
    for entry in dir {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !(name.ends_with(".jsonl") || name.ends_with(".log")) {
            continue;
        }
        files += 1;
        for line in fixture(&name) {
            for lim in [
                limits(),
                ParseLimits {
                    max_depth: 2,
                    max_attributes: 5,
                    max_value_bytes: 16,
                },
            ] {
                parse_line(&line, "", &lim).ok();
                parse_line(&line, "@cee: ", &lim).ok();
            }
        }
    }
    assert!(files >= 6);
}

fn expect_events(
    name: &str,
    prefix_of: impl Fn(usize) -> &'static str,
    special: &[(usize, Result<(), InvalidReason>)],
) {
    for (i, line) in fixture(name).iter().enumerate() {
        let n = i + 1;
        let got = parse_line(line, prefix_of(n), &limits());
        match special.iter().find(|(l, _)| *l == n) {
            Some((_, Ok(()))) => assert_eq!(got, Ok(Parsed::AuditTest), "{name}:{n}"),
            Some((_, Err(r))) => {
                assert_eq!(got.map(|_| ()).map_err(|e| e.reason), Err(*r), "{name}:{n}")
            }
            None => match got {
                Ok(Parsed::Event(e)) => {
                    assert!(!e.id.is_empty());
                    let mut keys: Vec<_> = e.attributes.keys().collect();
                    keys.sort_unstable();
                    keys.dedup();
                    assert_eq!(keys.len(), e.attributes.len(), "{name}:{n} keys not unique");
                }
                other => panic!("{name}:{n}: {other:?}"),
            },
        }
    }
}

#[test]
fn basic_fixture_all_valid() {
    assert_eq!(fixture("authored-basic.jsonl").len(), 40);
    expect_events("authored-basic.jsonl", |_| "", &[]);
}

#[test]
fn versions_fixture_all_valid() {
    expect_events(
        "authored-versions.jsonl",
        |_| "",
        &[(15, Ok(())), (16, Ok(()))],
    );
}

#[test]
fn openbao_session_fixture_all_valid() {
    let lines = fixture("openbao-2.7.2-dev-session.jsonl");
    let mut events = 0;
    for (i, line) in lines.iter().enumerate() {
        match parse_line(line, "", &limits()) {
            Ok(Parsed::Event(_)) => events += 1,
            Ok(Parsed::AuditTest) => {}
            // Internal events without a request id exist in real logs.
            Err(e) if e.reason == InvalidReason::NoRequestId => {}
            Err(e) => panic!("line {}: {e}", i + 1),
        }
    }
    assert!(events > 0);
}

#[test]
fn edge_fixture() {
    let prefix_of = |n| match n {
        27 | 28 => "@cee: ",
        29 => "vault-prod ",
        30 => "{dc1}",
        _ => "",
    };
    let special = [
        (1, Ok(())),
        (33, Err(InvalidReason::NoRequestId)),
        (60, Err(InvalidReason::BadType)),
    ];
    assert_eq!(fixture("authored-edge.jsonl").len(), 60);
    expect_events("authored-edge.jsonl", prefix_of, &special);
}

#[test]
fn edge_fixture_details() {
    let lines = fixture("authored-edge.jsonl");
    let ev = |n: usize, prefix: &str| match parse_line(&lines[n - 1], prefix, &limits()) {
        Ok(Parsed::Event(e)) => *e,
        other => panic!("{n}: {other:?}"),
    };
    let attr = |e: &AuditEvent, k: &str| e.attributes.get(k).map(|v| v.to_value());
    // E06: deeper than serde_json's default limit.
    let e = ev(9, "");
    assert_eq!(e.id, "deeeeeee-0000-0000-0000-000000000160");
    assert!(e.truncations.depth >= 1);
    // E07: array shapes.
    let e = ev(11, "");
    assert!(e.attributes.keys().any(|k| k.ends_with("objs.0.ports")));
    assert!(
        matches!(attr(&e, "request.data.matrix"), Some(AttrValue::Str(s)) if s == "[[1,2],[3,[4,5]]]")
    );
    // E08: numbers.
    let e = ev(13, "");
    assert_eq!(
        attr(&e, "request.data.big"),
        Some(AttrValue::Str("18446744073709551616".into()))
    );
    assert_eq!(attr(&e, "request.data.exp"), Some(AttrValue::Float(1e-7)));
    assert_eq!(attr(&e, "request.data.ttl"), Some(AttrValue::Int(3600)));
    assert_eq!(e.time_unix_nano % 1_000_000_000, 1);
    // E15/E16: prefixes.
    assert_eq!(ev(27, "@cee: ").id, "9ef1c000-0000-0000-0000-000000000015");
    assert_eq!(ev(30, "{dc1}").kind, EventKind::Response);
    // E19: odd keys.
    let e = ev(34, "");
    assert!(e.attributes.contains_key("request.data.data."));
    assert!(e.attributes.contains_key("request.data.data. spaced key "));
    // E29: modern key order.
    let e = ev(54, "");
    assert!(e.operation.is_some() && e.path.is_some());
}

#[test]
fn bad_fixture_reasons() {
    use InvalidReason::*;
    let lines = fixture("authored-bad.jsonl");
    assert_eq!(lines.len(), 27);
    let expected: [(usize, Option<InvalidReason>); 27] = [
        (1, None),               // B01 good request
        (2, Some(NotJson)),      // B02 truncated
        (3, Some(NotJson)),      // B03 server log line
        (4, Some(NotJson)),      // B04 array
        (5, Some(BadType)),      // B05 no type
        (6, Some(NoRequestId)),  // B06 response without request.id
        (7, Some(NoRequestId)),  // B07 no request object
        (8, Some(NotJson)),      // B08 binary garbage
        (9, Some(NotJson)),      // B09 NUL padding
        (10, Some(NotJson)),     // B10 empty
        (11, Some(NotJson)),     // B11 whitespace only
        (12, Some(NotJson)),     // B12 CRLF only (the framer removed the \r)
        (13, None),              // B13 BOM: accepted
        (14, None),              // B14 duplicate type: first wins
        (15, Some(NotJson)),     // B15 lone surrogate
        (16, Some(NotJson)),     // B16 NaN
        (17, Some(NotJson)),     // B17 Python repr
        (18, Some(NotJson)),     // B18 trailing garbage
        (19, Some(NotJson)),     // B19 two objects
        (20, Some(BadType)),     // B20 type is a number
        (21, Some(NoRequestId)), // B21 request.id is a number
        (22, Some(BadTime)),     // B22 unparseable time
        (23, Some(NotJson)),     // B23 JSONx
        (24, None),              // B24 good response
        (25, None),              // B25 ~2 MB valid orphan response
        (26, Some(NotJson)),     // B26 2 MiB of junk
        (27, None),              // B27 no final newline
    ];
    for (n, want) in expected {
        let got = parse_line(&lines[n - 1], "", &limits());
        match want {
            None => assert!(matches!(got, Ok(Parsed::Event(_))), "B{n:02}: {got:?}"),
            Some(r) => assert_eq!(got.map(|_| ()).map_err(|e| e.reason), Err(r), "B{n:02}"),
        }
    }
    match parse_line(&lines[13], "", &limits()) {
        Ok(Parsed::Event(e)) => assert_eq!(e.kind, EventKind::Request),
        other => panic!("{other:?}"),
    }
}

//! The operator's side of `/metrics`, checked with promtool: the exposition passes
//! `promtool check metrics`; `deploy/prometheus/alerts.yml` passes `promtool check rules`;
//! every PromQL expression of `deploy/grafana/auditspan.json` parses (promtool, as
//! recording rules) and names only metrics the exposition has.
//!
//! promtool comes from Debian's `prometheus` package, which `./scripts/test` installs and
//! exports as `AUDITSPAN_PROMTOOL`; a test that needs it fails without it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use crate::metrics::{
    COMMIT_LATENCY, EXPORT_DURATION, EXPORTED, INVALID, LAG, PENDING, RECEIVED, VAULT_DURATION,
    VAULT_REQUESTS, exposition,
};
use crate::support::{DEADLINE, Daemon, default_config, fixture, repo_dir, send};

/// promtool from `$AUDITSPAN_PROMTOOL` or the `PATH`; the test fails without it.
fn promtool() -> PathBuf {
    let path = std::env::var_os("AUDITSPAN_PROMTOOL")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join("promtool"))
                .find(|p| p.is_file())
        });
    match path {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "promtool not found ($AUDITSPAN_PROMTOOL or PATH): run ./scripts/test, which \
             installs Debian's `prometheus` package"
        ),
    }
}

/// Runs promtool with `args`, `stdin` on its standard input; panics with its output
/// unless it exits 0.
fn run_promtool(args: &[&str], stdin: &str) {
    let mut child = Command::new(promtool())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Metric names in a PromQL expression: identifiers that are not functions, aggregation
/// operators, keywords, label names (in `{…}` and `by (…)`/`on (…)` lists), durations or
/// strings. Grafana variables (`$x`) count as nothing.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 12] = [
        "and",
        "or",
        "unless",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
        "inf",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: char| {
        while *i < chars.len() && chars[*i] != close {
            *i += 1;
        }
        *i += 1;
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            '{' => skip_to(&mut i, '}'),
            '[' => skip_to(&mut i, ']'),
            '$' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let rest: String = chars[j..].iter().collect();
                // A function call, or an aggregation with its grouping first (`sum by (…) (…)`).
                let call = rest.starts_with('(')
                    || ["by", "without"].iter().any(|k| {
                        rest.strip_prefix(k)
                            .is_some_and(|r| r.trim_start().starts_with('('))
                    });
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&word.as_str())
                {
                    // Its label list, when it has one.
                    if rest.starts_with('(') {
                        i = j;
                        skip_to(&mut i, ')');
                    }
                } else if !call && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Names in the exposition (`# TYPE` lines) with their types.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            (name.to_owned(), kind.to_owned())
        })
        .collect()
}

/// Whether `name` is a series the exposition has: a family, or a histogram's
/// `_bucket`/`_sum`/`_count`.
fn exposes(families: &BTreeMap<String, String>, name: &str) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|kind| kind == "histogram" || kind == "summary")
    })
}

/// The `expr:` values of a rule file: one line, or a block scalar (`>-`, `|`) on the lines
/// indented deeper than the key.
fn yaml_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = line.find("expr:") else {
            continue;
        };
        if line[..at].trim_start().starts_with('#') {
            continue;
        }
        let value = line[at + "expr:".len()..].trim();
        if !value.starts_with(['>', '|']) {
            exprs.push(value.to_owned());
            continue;
        }
        let indent = at;
        let block: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .map(|l| l.trim())
            .collect();
        exprs.push(block.join(" "));
    }
    exprs
}

/// Every PromQL `expr` in a Grafana dashboard (panels, nested rows, targets).
fn dashboard_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// The PromQL scanner the checks below rely on finds metric names and nothing else: not
/// functions, aggregations with their grouping, keywords, label matchers and lists, range
/// selectors, strings, numbers or Grafana variables.
#[test]
fn promql_scanner_finds_metric_names_only() {
    let names = promql_metric_names(
        "histogram_quantile(0.99, sum by (sink, le) (rate(a_bucket{job=~\"$job\",x=\"y z\"}[$__rate_interval]))) \
         / on (instance) group_left b_total offset 5m > 0 and c unless d{e=\"by (f)\"} * 1e3",
    );
    assert_eq!(
        names,
        ["a_bucket", "b_total", "c", "d"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    let names = promql_metric_names(
        "sum(e) by (f) + max without (g) (h) * on(i) group_right(j) k or vector(1)",
    );
    assert_eq!(
        names,
        ["e", "h", "k"].map(String::from).into_iter().collect()
    );
}

/// A daemon that saw complete pairs serves an exposition promtool accepts (HELP on every
/// family, base units, `_total` on counters, real histograms); the alert rules pass
/// `promtool check rules` and name only exposed metrics; the dashboard is JSON with a
/// Prometheus datasource variable, its expressions parse, name only exposed metrics, and
/// cover what issue #6 lists.
#[test]
fn exposition_alerts_and_dashboard_pass_promtool_and_name_real_metrics() {
    // A udp input beside the unix one: its counters are named by an alert.
    let daemon = Daemon::start_with(|dir| {
        default_config(dir).replacen(
            "[metrics]",
            "[[input]]\ntype = \"udp\"\nname = \"udp\"\naddress = \"127.0.0.1:0\"\n\n[metrics]",
            1,
        )
    });
    let basic = fixture("authored-basic.jsonl");
    send(&daemon, std::fs::read(basic).unwrap());
    daemon.wait_until(DEADLINE, "the 20 pairs exported", || {
        daemon.metrics().get(EXPORTED, &[("sink", "stdout")]) >= 20.0
    });
    let text = exposition(&daemon);
    run_promtool(&["check", "metrics"], &text);
    let families = families(&text);
    for name in families.keys() {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    for (histogram, buckets) in [
        (VAULT_DURATION, 14),
        (COMMIT_LATENCY, 14),
        (EXPORT_DURATION, 15),
    ] {
        assert_eq!(
            families.get(histogram).map(String::as_str),
            Some("histogram"),
            "{histogram}"
        );
        let first_series_buckets = text
            .lines()
            .filter(|l| l.starts_with(&format!("{histogram}_bucket")))
            .take_while(|l| !l.contains("le=\"+Inf\""))
            .count();
        assert_eq!(first_series_buckets, buckets, "{histogram}");
    }
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(families.contains_key(name), "{name}");
    }

    // Alert rules.
    let alerts = repo_dir().join("deploy/prometheus/alerts.yml");
    run_promtool(&["check", "rules", alerts.to_str().unwrap()], "");
    let rules = std::fs::read_to_string(&alerts).unwrap();
    let alert_exprs = yaml_exprs(&rules);
    assert!(alert_exprs.len() >= 5, "{alert_exprs:?}");
    for expr in &alert_exprs {
        for name in promql_metric_names(expr) {
            assert!(
                exposes(&families, &name) || name == "up",
                "alerts.yml names {name}, which /metrics does not have: {expr}"
            );
        }
    }
    for alert in [
        "AuditspanDown",
        "AuditspanSinkFailing",
        "AuditspanQueueGrowing",
        "AuditspanQueueDroppingSpans",
        "AuditspanInvalidEvents",
        "AuditspanDatagramsDropped",
    ] {
        assert!(
            rules.contains(&format!("alert: {alert}\n")),
            "{alert} missing"
        );
    }

    // Dashboard.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_dir().join("deploy/grafana/auditspan.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    assert!(exprs.len() >= 15, "{} expressions", exprs.len());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = promql_metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                exposes(&families, &name) || name.starts_with("process_") || name == "up",
                "the dashboard names {name}, which /metrics does not have: {expr}"
            );
            used.insert(name);
        }
    }
    for name in [
        RECEIVED,
        INVALID,
        PENDING,
        "auditspan_queue_spans",
        "auditspan_queue_bytes",
        EXPORTED,
        LAG,
        "auditspan_sink_failed_exports_total",
        "auditspan_sink_retries_total",
        VAULT_REQUESTS,
        "auditspan_vault_request_duration_seconds_bucket",
    ] {
        assert!(used.contains(name), "the dashboard has no panel on {name}");
    }
    for quantile in ["0.5", "0.95", "0.99"] {
        assert!(
            exprs.iter().any(
                |e| e.starts_with(&format!("histogram_quantile({quantile},"))
                    && e.contains(VAULT_DURATION)
            ),
            "Vault latency p{quantile}"
        );
    }
    // Every expression parses: promtool checks them as recording rules, with Grafana's
    // variables replaced by what they stand for.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "5m")
            .replace("$job", ".*")
            .replace("$instance", ".*")
            .replace("$mount_point", ".*")
            .replace("$namespace", ".*");
        assert!(!expr.contains('$'), "an unknown variable in {expr}");
        rules.push_str(&format!(
            "      - record: dashboard:expr{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let file = daemon.dir().join("dashboard-rules.yml");
    std::fs::write(&file, rules).unwrap();
    run_promtool(&["check", "rules", file.to_str().unwrap()], "");
}

//! The command line: `check` and its messages for bad configuration, precedence of flags,
//! environment and file, `--help`, and `import`'s exit status, summary and dead-letter file.

use std::{path::Path, process::Command};

use crate::support::{auditspan, fixture};

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

fn run(command: &mut Command) -> Output {
    let out = command.output().unwrap();
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(dir: &Path, config: &str) -> Output {
    std::fs::write(dir.join("c.toml"), config).unwrap();
    run(auditspan(dir).args(["check", "--config", "c.toml"]))
}

/// Each kind of bad configuration fails `check` with a message naming the file, the line,
/// the key and what is wrong.
#[test]
fn bad_config_files_give_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[queue]\nflush_intervall = \"5ms\"\n",
            "c.toml, line 2, column 1: unknown field `flush_intervall`, expected one of `flush_interval`",
        ),
        ("service_nam = \"x\"\n", "unknown field `service_nam`"),
        ("[[input]]\nsocket = \"/tmp/x\"\n", "unknown field `socket`"),
        (
            "[correlate]\npair_timeout = \"10 parsecs\"\n",
            "correlate.pair_timeout: \"10 parsecs\" is not a duration",
        ),
        (
            "[queue]\nmax_bytes = \"1 gigabyte\"\n",
            "queue.max_bytes: \"1 gigabyte\" is not a size",
        ),
        (
            "[[input]]\nmode = \"0800\"\n",
            "input #1.mode: \"0800\" is not a file mode",
        ),
        (
            "[[sink]]\ntype = \"kafka\"\n",
            "sink type \"kafka\" is unknown",
        ),
        (
            "[[sink]]\ntype = \"otlp\"\nprotocol = \"http/json\"\n",
            "line 3, column 12: unknown variant `http/json`, expected `grpc` or `http/protobuf`",
        ),
        (
            "[[input]]\ntype = \"carrier-pigeon\"\n",
            "input type \"carrier-pigeon\" is unknown",
        ),
        ("[[sink]]\n[[sink]]\n", "duplicate sink name \"stdout\""),
        (
            "[parse]\nmax_depth = 0\n",
            "parse.max_depth: 0 is out of range",
        ),
        (
            "[metrics]\nlisten = \"localhost\"\n",
            "\"localhost\" is not a socket address",
        ),
        ("data_dir = [\n", "c.toml, line"),
    ];
    for (config, expected) in cases {
        let out = check(dir.path(), config);
        assert!(!out.success, "{config:?} was accepted");
        assert!(
            out.stderr.contains(expected),
            "{config:?}: expected {expected:?} in:\n{}",
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "nothing is printed as config on error"
        );
    }
    let out = run(auditspan(dir.path()).args(["check", "--config", "missing.toml"]));
    assert!(!out.success);
    assert!(out.stderr.contains("missing.toml"), "{}", out.stderr);
}

/// `check` prints the effective configuration, which is valid input again; flags beat the
/// environment, which beats the file, which beats the defaults.
#[test]
fn check_prints_the_effective_config_with_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), "service_name = \"from-file\"\n");
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stdout.contains("service_name = \"from-file\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pair_timeout"),
        "defaults are shown: {}",
        out.stdout
    );
    std::fs::write(dir.path().join("effective.toml"), &out.stdout).unwrap();
    let again = run(auditspan(dir.path()).args(["check", "--config", "effective.toml"]));
    assert!(again.success, "{}", again.stderr);
    assert_eq!(again.stdout, out.stdout);

    let env = run(auditspan(dir.path())
        .args(["check", "--config", "c.toml"])
        .env("AUDITSPAN_SERVICE_NAME", "from-env"));
    assert!(
        env.stdout.contains("service_name = \"from-env\""),
        "{}",
        env.stdout
    );
    let flag = run(auditspan(dir.path())
        .args(["check", "--config", "c.toml", "--service-name", "from-flag"])
        .env("AUDITSPAN_SERVICE_NAME", "from-env"));
    assert!(
        flag.stdout.contains("service_name = \"from-flag\""),
        "{}",
        flag.stdout
    );
    let via_env = run(auditspan(dir.path())
        .arg("check")
        .env("AUDITSPAN_CONFIG", "c.toml"));
    assert!(
        via_env.stdout.contains("service_name = \"from-file\""),
        "{}",
        via_env.stdout
    );

    let defaults = run(auditspan(dir.path()).arg("check"));
    assert!(
        defaults.success,
        "defaults work without a file: {}",
        defaults.stderr
    );
    assert!(
        defaults.stdout.contains("path = \"./auditspan.sock\""),
        "{}",
        defaults.stdout
    );
}

/// `check` prints Zipkin and Honeycomb sinks with their settings, the Honeycomb API key
/// and every header value redacted; the names of environment variables stay readable.
#[test]
fn check_redacts_the_honeycomb_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hcaik_01jchecksecret000000000000000000000000000000000000000000";
    let out = check(
        dir.path(),
        &format!(
            "[[sink]]\ntype = \"zipkin\"\nendpoint = \"http://zipkin.example:9411/api/v2/spans\"\n\
             \n[[sink]]\ntype = \"honeycomb\"\ndataset = \"vault audit\"\napi_key = \"{secret}\"\n\
             headers = {{ \"x-extra\" = \"{secret}-header\" }}\n\
             \n[[sink]]\ntype = \"honeycomb\"\nname = \"hc-env\"\ndataset = \"d\"\napi_key_env = \"HONEYCOMB_API_KEY\"\n"
        ),
    );
    assert!(out.success, "{}", out.stderr);
    assert!(!out.stdout.contains(secret), "{}", out.stdout);
    assert!(!out.stderr.contains(secret), "{}", out.stderr);
    for needle in [
        "type = \"zipkin\"",
        "endpoint = \"http://zipkin.example:9411/api/v2/spans\"",
        "type = \"honeycomb\"",
        "dataset = \"vault audit\"",
        "api_key = \"<redacted>\"",
        "x-extra = \"<redacted>\"",
        "api_key_env = \"HONEYCOMB_API_KEY\"",
    ] {
        assert!(out.stdout.contains(needle), "{needle} in:\n{}", out.stdout);
    }
}

/// `--help` documents every option and subcommand.
#[test]
fn help_documents_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let help = run(auditspan(dir.path()).arg("--help"));
    assert!(help.success);
    for needle in [
        "run",
        "check",
        "import",
        "health",
        "--config",
        "--data-dir",
        "--metrics-listen",
        "--service-name",
        "AUDITSPAN_LOG",
        "AUDITSPAN_CONFIG",
    ] {
        assert!(
            help.stdout.contains(needle),
            "--help lacks {needle}:\n{}",
            help.stdout
        );
    }
    let import = run(auditspan(dir.path()).args(["import", "--help"]));
    for needle in ["--prefix", "--deadletter", "FILE"] {
        assert!(
            import.stdout.contains(needle),
            "import --help lacks {needle}:\n{}",
            import.stdout
        );
    }
}

/// `import` orders files by their first event, so a pair split across rotated files joins
/// whatever order they are given in; it prints a summary and creates the dead-letter file
/// only when a line is rejected.
#[test]
fn import_orders_files_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let basic = std::fs::read_to_string(fixture("authored-basic.jsonl")).unwrap();
    let lines: Vec<&str> = basic.lines().collect();
    // authored-basic line 1 is P01's request and line 2 its response.
    std::fs::write(dir.path().join("audit.log.1"), format!("{}\n", lines[0])).unwrap();
    std::fs::write(
        dir.path().join("audit.log"),
        format!("{}\n", lines[1..].join("\n")),
    )
    .unwrap();
    let out = run(auditspan(dir.path()).args(["import", "audit.log", "audit.log.1"]));
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 20);
    assert!(
        out.stdout
            .lines()
            .all(|l| l.contains("\"auditspan.outcome\":\"paired\""))
    );
    assert!(
        out.stderr
            .contains("2 file(s), 40 lines: 40 events, 0 invalid"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("20 spans (paired 20, response_missing 0, request_missing 0)"),
        "{}",
        out.stderr
    );
    assert!(
        !dir.path()
            .join("auditspan-import-deadletter.jsonl")
            .exists()
    );

    let out = run(auditspan(dir.path())
        .arg("import")
        .arg(fixture("authored-bad.jsonl")));
    assert!(
        out.success,
        "rejected lines do not fail an import: {}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("21 invalid (not_json 15, bad_type 2, no_request_id 3, bad_time 1)"),
        "{}",
        out.stderr
    );
    let dl = std::fs::read_to_string(dir.path().join("auditspan-import-deadletter.jsonl")).unwrap();
    assert_eq!(dl.lines().count(), 21);

    let out = run(auditspan(dir.path()).args(["import", "no-such-file.log"]));
    assert!(!out.success);
    assert!(out.stderr.contains("no-such-file.log"), "{}", out.stderr);
}

/// `auditspan health` answers 0 while the daemon serves `/healthz` (and, with `--ready`,
/// `/readyz`), and 1 with a message naming the URL once nothing answers.
#[test]
fn health_asks_the_running_daemon() {
    let mut daemon = crate::support::Daemon::start_default();
    let addr = daemon.metrics_addr().to_string();
    let dir = daemon.dir().to_owned();
    let ask = |ready: bool| {
        let mut command = auditspan(&dir);
        command.args(["health", "--metrics-listen", &addr]);
        if ready {
            command.arg("--ready");
        }
        run(&mut command)
    };
    let healthy = ask(false);
    assert!(healthy.success, "{}", healthy.stderr);
    assert!(
        healthy.stdout.contains("/healthz: 200"),
        "{}",
        healthy.stdout
    );
    daemon.wait_until(crate::support::DEADLINE, "ready", || ask(true).success);

    daemon.sigterm();
    assert!(daemon.wait_exit(crate::support::DEADLINE).success());
    let gone = ask(false);
    assert!(!gone.success);
    assert!(
        gone.stderr.contains(&format!("http://{addr}/healthz")),
        "{}",
        gone.stderr
    );
}

/// Start-up errors that wrap an OS error name it exactly once (not once in the message and
/// again as its cause), exit 1, and say what failed: the data directory, a socket path,
/// an address in use for an input and for the metrics server.
#[test]
fn start_errors_name_each_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cases = [
        (
            "data_dir = \"file/data\"\n[metrics]\nlisten = \"\"\n".to_owned(),
            "data directory file/data: Not a directory (os error 20)",
        ),
        (
            "data_dir = \"data\"\n[[input]]\npath = \"missing/a.sock\"\n[metrics]\nlisten = \"\"\n"
                .to_owned(),
            "socket missing/a.sock: No such file or directory (os error 2)",
        ),
        (
            format!(
                "data_dir = \"data\"\n[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
                 [metrics]\nlisten = \"\"\n"
            ),
            "cannot listen on 127.0.0.1:",
        ),
        (
            format!("data_dir = \"data\"\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"),
            "metrics server on 127.0.0.1:",
        ),
    ];
    for (config, expected) in cases {
        std::fs::write(dir.path().join("c.toml"), &config).unwrap();
        let out = run(auditspan(dir.path()).args(["run", "--config", "c.toml"]));
        assert!(!out.success, "{config}: {}", out.stderr);
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with("auditspan: error: "))
            .unwrap_or_else(|| panic!("{config}: no error line in {}", out.stderr));
        assert!(line.contains(expected), "{config}: {line}");
        assert_eq!(line.matches("(os error").count(), 1, "{config}: {line}");
    }
}

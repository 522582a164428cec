//! What the HTTP sinks' tests share: a scripted HTTP receiver on loopback, compact audit
//! traffic, and the outage scenario every HTTP sink must pass.
//!
//! [`Receiver`] is an actix-web server on its own thread that records every request
//! (method, path, headers, body gunzipped when it came gzipped) and answers with what the
//! test's script returns. The script runs on a blocking thread, so it may wait (to hold a
//! sink in the middle of an export). Stopping it closes the port: a sink sees connection
//! refused, as with a backend that is down.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, http::StatusCode, web,
};
use serde_json::Value;

use crate::support::{DEADLINE, Daemon, default_config};

/// Largest request body the receiver takes (the sinks' batches are far smaller).
const MAX_BODY: usize = 64 << 20;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body, gunzipped when `Content-Encoding: gzip` said so.
    pub body: Vec<u8>,
    pub gzipped: bool,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics naming the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {}: the body is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `status` with a JSON body.
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap(),
        }
    }

    /// `status` with a plain-text body.
    pub fn text(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// The test's answer to each request.
pub type Script = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct State {
    script: Script,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// A running receiver; dropping it stops it.
pub struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    /// A receiver on a free loopback port.
    pub fn start(script: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script)
    }

    /// A receiver on `addr` (a port the test reserved with [`free_port`]).
    pub fn start_on(
        addr: SocketAddr,
        script: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Receiver {
        let script: Script = Arc::new(script);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(State {
            script,
            requests: Arc::clone(&requests),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .app_data(web::PayloadConfig::new(MAX_BODY))
                        .default_service(web::to(handle))
                })
                .workers(1)
                .disable_signals()
                .shutdown_timeout(1)
                .bind(addr);
                match server {
                    Err(e) => tx.send(Err(e)).unwrap(),
                    Ok(server) => {
                        let bound = server.addrs()[0];
                        let server = server.run();
                        tx.send(Ok((bound, server.handle()))).unwrap();
                        server.await.ok();
                    }
                }
            });
        });
        let (addr, handle) = rx
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("the receiver cannot listen on {addr}: {e}"));
        Receiver {
            addr,
            requests,
            handle,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Stops listening (the port is closed when this returns).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            actix_web::rt::System::new().block_on(self.handle.stop(false));
            thread.join().unwrap();
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn handle(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let gzipped = headers
        .iter()
        .any(|(n, v)| n == "content-encoding" && v.contains("gzip"));
    let body = if gzipped {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .expect("a gzip body that gunzips");
        out
    } else {
        body.to_vec()
    };
    let recorded = Request {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or_else(String::new, |p| p.to_string()),
        headers,
        body,
        gzipped,
    };
    state.requests.lock().unwrap().push(recorded.clone());
    let script = Arc::clone(&state.script);
    let reply = match web::block(move || script(&recorded)).await {
        Ok(reply) => reply,
        Err(_) => Reply::text(500, "the test script panicked"),
    };
    let mut response = HttpResponse::build(StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in reply.headers {
        response.insert_header((name, value));
    }
    response.body(reply.body)
}

/// A loopback address nothing listens on (bound once and closed), for a backend that is
/// down until the test starts a [`Receiver`] there.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `shared/` beside the repository (schemas and fixtures).
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// The draft-07 validator of `shared/schemas/{name}`, formats checked.
pub fn schema(name: &str) -> jsonschema::Validator {
    let path = shared_dir().join("schemas").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft7::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{path:?} does not compile: {e}"))
}

/// Panics listing every way `instance` breaks `validator`.
pub fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks the schema:\n{}\n{instance}",
        errors.join("\n")
    );
}

/// The schema's own examples: `valid-*.json` pass, `invalid-*.json` fail (so a validator
/// that accepted everything would show here).
pub fn assert_schema_examples(validator: &jsonschema::Validator, folder: &str) {
    let dir = shared_dir().join("schemas/fixtures").join(folder);
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let instance: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        if name.starts_with("valid-") {
            assert_valid(validator, &instance, &name);
        } else if name.starts_with("invalid-") {
            assert!(!validator.is_valid(&instance), "{name} passes the schema");
        } else {
            continue;
        }
        checked += 1;
    }
    assert!(checked >= 5, "schema examples missing in {dir:?}");
}

/// Result of one `auditspan import`.
pub struct Imported {
    /// The stdout sink's spans.
    pub spans: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// `auditspan import --config <config> <fixture>` in a temporary directory, with `env`
/// set; panics unless it succeeds.
pub fn import_fixture(config: &str, fixture: &str, env: &[(&str, &str)]) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let mut command = crate::support::auditspan(dir.path());
    command
        .args(["import", "--config", "c.toml"])
        .arg(shared_dir().join("fixtures/vault-audit").join(fixture))
        .envs(env.iter().copied());
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "import of {fixture} failed:\n{stderr}"
    );
    let spans = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Imported {
        spans,
        stdout,
        stderr,
    }
}

/// Fixture files every HTTP sink receives in its fixture test: the real OpenBao session
/// (traceparent, errors, unicode), the authored pairs, the awkward ones, and every
/// version's format (`"error": ""` on success).
pub const FIXTURES: [&str; 4] = [
    "openbao-2.7.2-dev-session.jsonl",
    "authored-basic.jsonl",
    "authored-edge.jsonl",
    "authored-versions.jsonl",
];

/// `start_time_unix_nano` and `end_time_unix_nano` of a stdout span.
pub fn span_times(span: &Value) -> (i64, i64) {
    let time = |key: &str| span[key].as_str().unwrap().parse::<i64>().unwrap();
    (time("start_time_unix_nano"), time("end_time_unix_nano"))
}

// ---- Traffic -------------------------------------------------------------------------

/// The request id of pair `n`.
pub fn request_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A compact request/response pair for request id `request_id(n)`, the request at
/// `2025-03-11T14:00:00Z + 2n ms` and the response 1 ms later (one event clock, so nothing
/// expires on event time).
pub fn audit_pair(n: u64) -> String {
    audit_pair_with(n, r#"{"v":"hmac-sha256:00"}"#)
}

/// [`audit_pair`] with `data` (a JSON object) as the response's `data`.
pub fn audit_pair_with(n: u64, data: &str) -> String {
    let id = request_id(n);
    let time = |millis: u64| {
        let secs = millis / 1000;
        format!(
            "2025-03-11T{:02}:{:02}:{:02}.{:03}Z",
            14 + secs / 3600,
            secs / 60 % 60,
            secs % 60,
            millis % 1000
        )
    };
    let request = format!(
        r#"{{"time":"{}","type":"request","auth":{{"display_name":"t","policies":["default"]}},"request":{{"id":"{id}","operation":"read","mount_point":"kv/","path":"kv/data/x","remote_address":"127.0.0.1","remote_port":40000,"namespace":{{"id":"root"}}}}}}"#,
        time(2 * n)
    );
    let response = format!(
        r#"{{"time":"{}","type":"response","auth":{{"display_name":"t","policies":["default"]}},"request":{{"id":"{id}","operation":"read","mount_point":"kv/","path":"kv/data/x","namespace":{{"id":"root"}}}},"response":{{"mount_type":"kv","data":{data}}}}}"#,
        time(2 * n + 1)
    );
    format!("{request}\n{response}\n")
}

/// Writes pairs `range` to the daemon's socket in one write.
pub fn send_pairs(daemon: &Daemon, range: std::ops::Range<u64>) {
    send_text(daemon, &range.map(audit_pair).collect::<String>());
}

/// Writes `text` (audit lines) to the daemon's socket in one write.
pub fn send_text(daemon: &Daemon, text: &str) {
    let mut conn = daemon.connect();
    conn.set_write_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(text.as_bytes())
        .unwrap_or_else(|e| daemon.fail(&format!("writing events to the socket: {e}")));
}

/// `default_config` (unix input, metrics, data dir) plus a stdout sink and `sink`, a
/// `[[sink]]` table of the sink under test.
pub fn config_with_sink(dir: &std::path::Path, sink: &str) -> String {
    format!(
        "{}\n[[sink]]\ntype = \"stdout\"\n\n{sink}",
        default_config(dir)
    )
}

/// The dead-letter records of the daemon's data directory.
pub fn dead_letters(daemon: &Daemon) -> Vec<Value> {
    std::fs::read_to_string(daemon.dir().join("data/deadletter.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Receiver down (port closed) → spans wait on disk while the stdout sink delivers them →
/// receiver up → every span arrives exactly once. `sink(addr)` is the `[[sink]]` table (named
/// `name`) pointing at `addr`; `ids(request)` lists the `vault.request.id` of every span a
/// request carried; `reply(request)` acknowledges all of them.
pub fn outage_then_delivery(
    name: &str,
    sink: impl Fn(SocketAddr) -> String,
    ids: fn(&Request) -> Vec<String>,
    reply: fn(&Request) -> Reply,
) {
    let addr = free_port();
    let daemon = Daemon::start_with(|dir| config_with_sink(dir, &sink(addr)));
    let label = [("sink", name)];
    let lag = |daemon: &Daemon| daemon.metrics().get("auditspan_sink_lag_spans", &label);
    let queued = |daemon: &Daemon| daemon.metrics().get("auditspan_queue_spans", &[]);

    send_pairs(&daemon, 0..10);
    daemon.wait_for_spans(10);
    daemon.wait_until(DEADLINE, "10 spans waiting for the sink", || {
        lag(&daemon) == 10.0
    });
    send_pairs(&daemon, 10..25);
    daemon.wait_for_spans(25);
    daemon.wait_until(DEADLINE, "25 spans waiting for the sink", || {
        lag(&daemon) == 25.0 && queued(&daemon) == 25.0
    });
    let m = daemon.metrics();
    assert!(
        m.get(
            "auditspan_sink_failed_exports_total",
            &[("sink", name), ("reason", "connect")]
        ) >= 1.0,
        "connection failures are counted"
    );
    assert_eq!(m.get("auditspan_sink_exported_spans_total", &label), 0.0);
    assert_eq!(
        m.get("auditspan_sink_lag_spans", &[("sink", "stdout")]),
        0.0,
        "stdout delivered everything while {name} was down"
    );

    let receiver = Receiver::start_on(addr, reply);
    daemon.wait_until(DEADLINE, "the queue to drain", || {
        lag(&daemon) == 0.0 && queued(&daemon) == 0.0
    });
    let mut seen: HashMap<String, usize> = HashMap::new();
    for request in receiver.requests() {
        for id in ids(&request) {
            *seen.entry(id).or_default() += 1;
        }
    }
    for n in 0..25 {
        assert_eq!(
            seen.get(&request_id(n)).copied(),
            Some(1),
            "span {n} arrives exactly once: {seen:?}"
        );
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(
        daemon
            .metrics()
            .get("auditspan_sink_exported_spans_total", &label),
        25.0
    );
    assert!(
        daemon.try_exit_status().is_none(),
        "the daemon is still running"
    );
}

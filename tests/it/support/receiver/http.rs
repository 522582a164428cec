//! A scripted HTTP receiver on loopback, and what the HTTP sinks' tests (Zipkin,
//! Honeycomb) share besides: the fixtures each receives, and the outage scenario every HTTP
//! sink must pass.
//!
//! [`Receiver`] is an actix-web server on its own thread that records every request
//! (method, path, headers, body gunzipped when it came gzipped) and answers with what the
//! test's script returns. The script runs on a blocking thread, so it may wait (to hold a
//! sink in the middle of an export). Stopping it closes the port: a sink sees connection
//! refused, as with a backend that is down.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer, dev::ServerHandle, http::StatusCode, web,
};
use serde_json::Value;

use super::{Headers, free_port, gunzip};
use crate::support::{DEADLINE, Daemon, config_with_sink, request_id, send_pairs};

/// Largest request body the receiver takes (the sinks' batches are far smaller).
const MAX_BODY: usize = 64 << 20;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Headers,
    /// The body, gunzipped when `Content-Encoding: gzip` said so.
    pub body: Vec<u8>,
    pub gzipped: bool,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
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
    let headers = Headers::collect(
        request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    );
    let gzipped = headers.gzip("content-encoding");
    let body = if gzipped {
        gunzip(&body)
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

// ---- What every HTTP sink's tests run ----------------------------------------------------

/// Fixture files every HTTP sink receives in its fixture test: the real OpenBao session
/// (traceparent, errors, unicode), the authored pairs, the awkward ones, and every
/// version's format (`"error": ""` on success).
pub const FIXTURES: [&str; 4] = [
    "openbao-2.7.2-dev-session.jsonl",
    "authored-basic.jsonl",
    "authored-edge.jsonl",
    "authored-versions.jsonl",
];

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

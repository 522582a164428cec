//! OTLP test receivers built from `opentelemetry-proto`: a tonic `TraceServiceServer`
//! (OTLP/gRPC) and an actix-web endpoint decoding protobuf bodies (OTLP/HTTP), both on
//! loopback, each on its own threads inside the test process.
//!
//! A [`Receiver`] records every request (headers, whether it came gzip-compressed, the
//! decoded `ExportTraceServiceRequest`, the path, when it arrived and how it was answered)
//! and answers as told: a script of [`Answer`]s consumed one per request (then `Ok`), and
//! a poison value — a request holding a span whose `request.path` is that value is refused
//! as invalid (gRPC `INVALID_ARGUMENT`, HTTP 400), whatever the script says.
//!
//! Also here: [`as_stdout_json`], which writes a received span the way the stdout sink
//! does, so that tests compare what the OTLP receiver got with what stdout printed for the
//! same input.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value as Any},
    trace::v1::Span,
};
use prost::Message;
use serde_json::{Map, Value, json};
use tonic::codec::CompressionEncoding;

use auditspan::sink::otlp::rpc::RpcStatus;

use super::{Headers, gunzip};

/// Which OTLP transport a receiver speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    /// The sink's `protocol` value.
    pub fn config_value(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http/protobuf",
        }
    }
}

/// How the receiver answers one request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// Success without `partial_success`.
    Ok,
    /// Success, with `partial_success.rejected_spans`.
    Partial { rejected: i64, message: String },
    /// Failure: `grpc` for the gRPC receiver, `http` for the HTTP one; `retry_after` as
    /// `google.rpc.RetryInfo` (gRPC) or `Retry-After` in whole seconds (HTTP).
    Fail {
        grpc: tonic::Code,
        http: u16,
        retry_after: Option<Duration>,
    },
}

impl Answer {
    /// gRPC `INVALID_ARGUMENT` / HTTP 400.
    pub fn invalid() -> Answer {
        Answer::Fail {
            grpc: tonic::Code::InvalidArgument,
            http: 400,
            retry_after: None,
        }
    }

    fn delivered(&self) -> bool {
        !matches!(self, Answer::Fail { .. })
    }
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: Headers,
    /// Whether the body came gzip-compressed (`grpc-encoding` / `Content-Encoding`).
    pub gzip: bool,
    /// The HTTP path (`/opentelemetry.proto.collector.trace.v1.TraceService/Export` for
    /// gRPC).
    pub path: String,
    pub request: ExportTraceServiceRequest,
    pub answer: Answer,
}

impl Received {
    /// The first value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// Every span of the request.
    pub fn spans(&self) -> impl Iterator<Item = &Span> {
        self.request
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .flat_map(|ss| ss.spans.iter())
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    poison: Option<String>,
}

type Shared = Arc<Mutex<State>>;

impl State {
    fn answer(&mut self, request: &ExportTraceServiceRequest) -> Answer {
        let poisoned = self.poison.as_ref().is_some_and(|poison| {
            request
                .resource_spans
                .iter()
                .flat_map(|rs| rs.scope_spans.iter())
                .flat_map(|ss| ss.spans.iter())
                .any(|span| {
                    span.attributes.iter().any(|kv| {
                        kv.key == "request.path"
                            && kv.value.as_ref().and_then(|v| v.value.as_ref())
                                == Some(&Any::StringValue(poison.clone()))
                    })
                })
        });
        if poisoned {
            return Answer::invalid();
        }
        self.script.pop_front().unwrap_or(Answer::Ok)
    }
}

fn response(answer: &Answer) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse {
        partial_success: match answer {
            Answer::Partial { rejected, message } => Some(ExportTracePartialSuccess {
                rejected_spans: *rejected,
                error_message: message.clone(),
            }),
            _ => None,
        },
    }
}

/// A running receiver; stopped when dropped.
pub struct Receiver {
    pub protocol: Protocol,
    pub addr: SocketAddr,
    state: Shared,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Receiver {
    /// A receiver on an ephemeral loopback port.
    pub fn start(protocol: Protocol) -> Receiver {
        Self::start_on(protocol, "127.0.0.1:0".parse().unwrap())
    }

    /// A receiver on `addr` (e.g. a port an earlier test step found free).
    pub fn start_on(protocol: Protocol, addr: SocketAddr) -> Receiver {
        Self::start_with(protocol, addr, None)
    }

    /// A gRPC receiver on an ephemeral loopback port serving TLS with this PEM certificate
    /// chain and key.
    pub fn start_grpc_tls(cert_pem: &[u8], key_pem: &[u8]) -> Receiver {
        // Already installed by an earlier call: fine.
        rustls::crypto::aws_lc_rs::default_provider()
            .install_default()
            .ok();
        let identity = tonic::transport::Identity::from_pem(cert_pem, key_pem);
        Self::start_with(
            Protocol::Grpc,
            "127.0.0.1:0".parse().unwrap(),
            Some(identity),
        )
    }

    fn start_with(
        protocol: Protocol,
        addr: SocketAddr,
        tls: Option<tonic::transport::Identity>,
    ) -> Receiver {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("binding {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let state = Shared::default();
        let stop = match protocol {
            Protocol::Grpc => serve_grpc(listener, state.clone(), tls),
            Protocol::Http => serve_http(listener, state.clone()),
        };
        Receiver {
            protocol,
            addr,
            state,
            stop: Some(stop),
        }
    }

    /// What the sink's `endpoint` should be: the server for gRPC, the traces URL for HTTP.
    pub fn endpoint(&self) -> String {
        match self.protocol {
            Protocol::Grpc => format!("http://{}", self.addr),
            Protocol::Http => format!("http://{}/v1/traces", self.addr),
        }
    }

    /// Answers the next requests so, in order (then `Ok` again).
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Forgets the answers [`Receiver::script`] queued: every next request succeeds.
    pub fn clear_script(&self) {
        self.state.lock().unwrap().script.clear();
    }

    /// Refuses as invalid every request holding a span with this `request.path`.
    pub fn poison(&self, request_path: &str) {
        self.state.lock().unwrap().poison = Some(request_path.to_owned());
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The spans of the requests answered with success (`Ok` or `Partial`), in order.
    pub fn delivered(&self) -> Vec<Span> {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.answer.delivered())
            .flat_map(|r| r.spans().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// How many spans were delivered so far.
    pub fn delivered_count(&self) -> usize {
        self.state
            .lock()
            .unwrap()
            .received
            .iter()
            .filter(|r| r.answer.delivered())
            .map(|r| r.spans().count())
            .sum()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

struct Grpc {
    state: Shared,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let headers = Headers::collect(
            request
                .metadata()
                .clone()
                .into_headers()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_bytes())),
        );
        let gzip = headers.gzip("grpc-encoding");
        let request = request.into_inner();
        let mut state = self.state.lock().unwrap();
        let answer = state.answer(&request);
        state.received.push(Received {
            at: Instant::now(),
            headers,
            gzip,
            path: "/opentelemetry.proto.collector.trace.v1.TraceService/Export".to_owned(),
            request,
            answer: answer.clone(),
        });
        match answer {
            Answer::Fail {
                grpc, retry_after, ..
            } => Err(match retry_after {
                None => tonic::Status::new(grpc, "scripted failure"),
                Some(delay) => tonic::Status::with_details(
                    grpc,
                    "scripted failure",
                    RpcStatus::with_retry_delay(grpc as i32, "scripted failure", delay)
                        .encode_to_vec()
                        .into(),
                ),
            }),
            other => Ok(tonic::Response::new(response(&other))),
        }
    }
}

/// Serves gRPC (over TLS with `tls`) on its own runtime; the returned closure stops it.
fn serve_grpc(
    listener: TcpListener,
    state: Shared,
    tls: Option<tonic::transport::Identity>,
) -> Box<dyn FnOnce() + Send> {
    listener.set_nonblocking(true).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let service = TraceServiceServer::new(Grpc { state })
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(64 << 20);
    runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let mut server = tonic::transport::Server::builder();
        if let Some(identity) = tls {
            server = server
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .unwrap();
        }
        server
            .serve_with_incoming_shutdown(service, incoming, async {
                stop_rx.await.ok();
            })
            .await
            .unwrap();
    });
    Box::new(move || {
        stop_tx.send(()).ok();
        runtime.shutdown_timeout(Duration::from_secs(5));
    })
}

/// Serves OTLP/HTTP on any path (recorded) with actix-web on its own thread; the returned
/// closure stops it.
fn serve_http(listener: TcpListener, state: Shared) -> Box<dyn FnOnce() + Send> {
    use actix_web::{App, HttpServer, web};
    let (handle_tx, handle_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(state.clone()))
                    .app_data(web::PayloadConfig::new(64 << 20))
                    .default_service(web::to(http_export))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            handle_tx.send(server.handle()).unwrap();
            server.await.unwrap();
        });
    });
    let handle = handle_rx.recv().unwrap();
    Box::new(move || {
        actix_rt::System::new().block_on(handle.stop(false));
        thread.join().unwrap();
    })
}

async fn http_export(
    request: actix_web::HttpRequest,
    body: actix_web::web::Bytes,
    state: actix_web::web::Data<Shared>,
) -> actix_web::HttpResponse {
    use actix_web::{HttpResponse, http::StatusCode};
    let headers = Headers::collect(
        request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
    );
    let gzip = headers.gzip("content-encoding");
    let bytes = if gzip { gunzip(&body) } else { body.to_vec() };
    let protobuf = headers.get("content-type") == Some("application/x-protobuf");
    let Ok(decoded) = ExportTraceServiceRequest::decode(bytes.as_slice()).map_err(|_| ()) else {
        return HttpResponse::BadRequest().body("not an ExportTraceServiceRequest");
    };
    if !protobuf {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    let mut state = state.lock().unwrap();
    let answer = state.answer(&decoded);
    state.received.push(Received {
        at: Instant::now(),
        headers,
        gzip,
        path: request.path().to_owned(),
        request: decoded,
        answer: answer.clone(),
    });
    match answer {
        Answer::Fail {
            http, retry_after, ..
        } => {
            let mut reply = HttpResponse::build(StatusCode::from_u16(http).unwrap());
            reply.content_type("application/x-protobuf");
            if let Some(delay) = retry_after {
                reply.insert_header(("Retry-After", delay.as_secs().to_string()));
            }
            let status = RpcStatus {
                code: 0,
                message: format!("scripted failure {http}"),
                details: vec![],
            };
            reply.body(status.encode_to_vec())
        }
        other => HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .body(response(&other).encode_to_vec()),
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An attribute value as the stdout sink writes it (typed JSON).
pub fn json_value(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        None => Value::Null,
        Some(Any::StringValue(s)) => json!(s),
        Some(Any::BoolValue(b)) => json!(b),
        Some(Any::IntValue(i)) => json!(i),
        Some(Any::DoubleValue(f)) => json!(f),
        Some(Any::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| json_value(Some(v))).collect())
        }
        Some(other) => panic!("an attribute type auditspan never sends: {other:?}"),
    }
}

/// Attributes as a JSON object; panics on a repeated key.
pub fn json_attributes(attributes: &[KeyValue]) -> Value {
    let mut map = Map::new();
    for kv in attributes {
        let previous = map.insert(kv.key.clone(), json_value(kv.value.as_ref()));
        assert!(previous.is_none(), "attribute {} sent twice", kv.key);
    }
    Value::Object(map)
}

/// A received span (with the resource of its request) written as the stdout sink writes
/// a span, so that the two compare field for field. Kind and status map back to the
/// stdout names only for the values auditspan sends; anything else shows as is.
pub fn as_stdout_json(span: &Span, resource: &[KeyValue]) -> Value {
    let status = match &span.status {
        None => json!({"code": "unset"}),
        Some(s) if s.code == 0 && s.message.is_empty() => json!({"code": "unset"}),
        Some(s) if s.code == 2 => json!({"code": "error", "message": s.message}),
        Some(s) => json!({"code": s.code, "message": s.message}),
    };
    let duration = span.end_time_unix_nano as i64 - span.start_time_unix_nano as i64;
    json!({
        "trace_id": hex(&span.trace_id),
        "span_id": hex(&span.span_id),
        "parent_span_id": if span.parent_span_id.is_empty() { Value::Null } else { json!(hex(&span.parent_span_id)) },
        "name": span.name,
        "kind": if span.kind == 2 { json!("server") } else { json!(span.kind) },
        "start_time_unix_nano": span.start_time_unix_nano.to_string(),
        "end_time_unix_nano": span.end_time_unix_nano.to_string(),
        "duration_ms": duration as f64 / 1e6,
        "status": status,
        "attributes": json_attributes(&span.attributes),
        "resource": json_attributes(resource),
    })
}

/// Every span delivered to `receiver`, as [`as_stdout_json`] writes it, with the checks
/// every request must pass: one resource, one scope named `auditspan` with our version,
/// and the flags the encoder sets (sampled, parent remoteness known, remote parent).
pub fn delivered_as_stdout_json(receiver: &Receiver) -> Vec<Value> {
    let mut out = Vec::new();
    for received in receiver.received() {
        if !received.answer.delivered() {
            continue;
        }
        let request = &received.request;
        assert_eq!(request.resource_spans.len(), 1, "one ResourceSpans");
        let rs = &request.resource_spans[0];
        assert_eq!(rs.scope_spans.len(), 1, "one ScopeSpans");
        let scope = rs.scope_spans[0].scope.as_ref().unwrap();
        assert_eq!(scope.name, "auditspan");
        assert_eq!(scope.version, env!("CARGO_PKG_VERSION"));
        let resource = &rs.resource.as_ref().unwrap().attributes;
        for span in &rs.scope_spans[0].spans {
            let expected_flags = if span.parent_span_id.is_empty() {
                0x101
            } else {
                0x301
            };
            assert_eq!(span.flags, expected_flags, "flags of {span:?}");
            out.push(as_stdout_json(span, resource));
        }
    }
    out
}

/// Asserts that two lists of spans hold the same spans, in any order, naming the first
/// difference.
pub fn assert_same_spans(expected: &[Value], actual: &[Value]) {
    let sorted = |spans: &[Value]| {
        let mut lines: Vec<String> = spans.iter().map(|s| s.to_string()).collect();
        lines.sort();
        lines
    };
    let (expected, actual) = (sorted(expected), sorted(actual));
    if expected == actual {
        return;
    }
    let missing: Vec<&String> = expected.iter().filter(|e| !actual.contains(e)).collect();
    let extra: Vec<&String> = actual.iter().filter(|a| !expected.contains(a)).collect();
    panic!(
        "{} spans expected, {} received\nfirst missing: {}\nfirst unexpected: {}",
        expected.len(),
        actual.len(),
        missing.first().map_or("none", |s| s.as_str()),
        extra.first().map_or("none", |s| s.as_str()),
    );
}

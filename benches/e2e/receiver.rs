//! Local backends for `--sink`: each acknowledges at once, as a healthy collector on
//! loopback would, so the bench measures auditspan's side of the export.
//!
//! - OTLP/gRPC: a tonic `TraceService` (tonic decodes each request, as a collector does).
//! - OTLP/HTTP, Zipkin: an HTTP server that reads the body and answers 200 / 202 without
//!   decoding it.
//! - Honeycomb: reads the (gzip) JSON array, counts its events, answers one 202 per event.
//!
//! While [`Receiver::hold`] is set, every request is answered as temporarily unavailable
//! (gRPC UNAVAILABLE, HTTP 503), so the daemon keeps its spans queued: that is how the
//! bench fills the queue before timing a drain.

use std::{
    io::Read,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, Result};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

/// The sink under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    Stdout,
    OtlpGrpc,
    OtlpHttp,
    Zipkin,
    Honeycomb,
}

impl SinkKind {
    /// The `[[sink]]` entry for a receiver at `addr` (none for stdout, the default sink).
    pub fn config(self, addr: SocketAddr) -> String {
        let head = "[[sink]]\nname = \"bench\"\nmax_retry_delay = \"100ms\"\n";
        match self {
            SinkKind::Stdout => String::new(),
            SinkKind::OtlpGrpc => {
                format!(
                    "{head}type = \"otlp\"\nprotocol = \"grpc\"\nendpoint = \"http://{addr}\"\n"
                )
            }
            SinkKind::OtlpHttp => format!(
                "{head}type = \"otlp\"\nprotocol = \"http/protobuf\"\nendpoint = \"http://{addr}/v1/traces\"\n"
            ),
            SinkKind::Zipkin => {
                format!("{head}type = \"zipkin\"\nendpoint = \"http://{addr}/api/v2/spans\"\n")
            }
            SinkKind::Honeycomb => format!(
                "{head}type = \"honeycomb\"\nendpoint = \"http://{addr}\"\ndataset = \"bench\"\napi_key = \"bench\"\n"
            ),
        }
    }

    /// The sink's name in the daemon's metrics.
    pub fn sink_name(self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            _ => "bench",
        }
    }
}

/// A running receiver. Its threads end with the process.
pub struct Receiver {
    pub addr: SocketAddr,
    hold: Arc<AtomicBool>,
    /// Requests answered with success.
    pub requests: Arc<AtomicU64>,
}

impl Receiver {
    pub fn start(kind: SinkKind) -> Result<Receiver> {
        let hold = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a receiver")?;
        let addr = listener.local_addr()?;
        let state = State {
            hold: Arc::clone(&hold),
            requests: Arc::clone(&requests),
        };
        match kind {
            SinkKind::Stdout => {}
            SinkKind::OtlpGrpc => {
                listener.set_nonblocking(true)?;
                std::thread::spawn(move || serve_grpc(listener, state));
            }
            SinkKind::OtlpHttp | SinkKind::Zipkin | SinkKind::Honeycomb => {
                std::thread::spawn(move || serve_http(listener, state, kind));
            }
        }
        Ok(Receiver {
            addr,
            hold,
            requests,
        })
    }

    /// While true, every request is refused as temporarily unavailable.
    pub fn hold(&self, hold: bool) {
        self.hold.store(hold, Ordering::SeqCst);
    }
}

#[derive(Clone)]
struct State {
    hold: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for State {
    async fn export(
        &self,
        _request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.hold.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("held by the bench"));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn serve_grpc(listener: std::net::TcpListener, state: State) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        // Without TCP_NODELAY, Nagle and delayed ACKs hold each answer ~40 ms.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        // Adaptive flow-control windows, as gRPC-Go (the Collector) has: with h2's fixed
        // 64 KiB window a 2 MB request waits on a round trip per 64 KiB.
        tonic::transport::Server::builder()
            .http2_adaptive_window(Some(true))
            .add_service(
                TraceServiceServer::new(state)
                    .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
            )
            .serve_with_incoming(incoming)
            .await?;
        Ok(())
    })
}

fn serve_http(listener: std::net::TcpListener, state: State, kind: SinkKind) -> Result<()> {
    actix_rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(state.clone()))
                .app_data(web::PayloadConfig::new(64 << 20))
                .default_service(web::to(
                    move |state: web::Data<State>,
                          body: web::Bytes,
                          req: actix_web::HttpRequest| {
                        answer(state, body, req, kind)
                    },
                ))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run()
        .await?;
        Ok(())
    })
}

async fn answer(
    state: web::Data<State>,
    body: web::Bytes,
    req: actix_web::HttpRequest,
    kind: SinkKind,
) -> HttpResponse {
    if state.hold.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    state.requests.fetch_add(1, Ordering::Relaxed);
    match kind {
        SinkKind::Zipkin => HttpResponse::Accepted().finish(),
        SinkKind::Honeycomb => {
            let gzip = req
                .headers()
                .get("content-encoding")
                .is_some_and(|v| v.as_bytes() == b"gzip");
            let events = count_events(&body, gzip).unwrap_or(0);
            let mut answer = String::with_capacity(events * 16 + 2);
            answer.push('[');
            for i in 0..events {
                if i > 0 {
                    answer.push(',');
                }
                answer.push_str("{\"status\":202}");
            }
            answer.push(']');
            HttpResponse::Ok()
                .content_type("application/json")
                .body(answer)
        }
        _ => HttpResponse::Ok()
            .content_type("application/x-protobuf")
            .finish(),
    }
}

/// Events in a Honeycomb batch body.
fn count_events(body: &[u8], gzip: bool) -> Result<usize> {
    let events: Vec<serde::de::IgnoredAny> = if gzip {
        let mut text = Vec::with_capacity(body.len() * 8);
        flate2::read::GzDecoder::new(body).read_to_end(&mut text)?;
        serde_json::from_slice(&text)?
    } else {
        serde_json::from_slice(body)?
    };
    Ok(events.len())
}

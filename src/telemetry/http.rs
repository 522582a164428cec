//! The HTTP server on `metrics.listen`:
//! - `GET /metrics`: the Prometheus text exposition (format 0.0.4): the recorder's metrics,
//!   then the `process_*` metrics read at that moment ([`super::process`]);
//! - `GET /healthz`: 200 `ok` while the process serves;
//! - `GET /readyz`: 200 `{"ready":true}`, or 503 with a one-line JSON reason
//!   ([`super::ready`]);
//! - anything else, another method included: 404.
//!
//! It runs on its own single worker thread and never sends a message into the pipeline, so
//! a slow scrape or a flood of requests cannot slow it down, and a busy pipeline cannot
//! make a probe time out.
//!
//! Bounds, so that a bad client costs little: no handler reads a request body (one sent
//! anyway is discarded as it streams in, never buffered whole); actix-http answers a
//! request head over 128 KiB or with more than 96 headers with 431 and closes; a client
//! that has not sent its whole head within [`CLIENT_REQUEST_TIMEOUT`] gets 408 and is
//! closed; idle keep-alive connections close after [`KEEP_ALIVE`]; at most
//! [`MAX_CONNECTIONS`] connections are served at once, further ones wait in the listen
//! backlog.

use std::{net::SocketAddr, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, http::header::ContentType, web};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::info;

use super::ready::Readiness;

/// Connections served at once (one worker). Scrapers and probes need a handful.
pub const MAX_CONNECTIONS: usize = 256;
/// Time a client has to send its request head.
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a closing connection gets to shut down cleanly.
pub const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Idle time after which a keep-alive connection is closed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Connections the kernel queues while [`MAX_CONNECTIONS`] are being served.
const BACKLOG: u32 = 256;

/// Binds `addr` (port 0 picks a free port) and starts serving. Returns the bound address
/// and the handle that stops the server.
pub fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
    readiness: Readiness,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(handle.clone()))
            .app_data(web::Data::new(readiness.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .max_connections(MAX_CONNECTIONS)
    .backlog(BACKLOG)
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
    .keep_alive(KEEP_ALIVE)
    .disable_signals()
    .bind(addr)?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let stop = server.handle();
    actix_rt::spawn(server);
    info!(addr = %bound, "Serving metrics.");
    Ok((bound, stop))
}

async fn metrics(handle: web::Data<PrometheusHandle>) -> HttpResponse {
    let mut body = handle.render();
    if !body.is_empty() && !body.ends_with('\n') {
        body.push('\n');
    }
    super::process::render(&mut body);
    HttpResponse::Ok()
        .content_type(ContentType(mime_text_plain_004()))
        .body(body)
}

fn mime_text_plain_004() -> actix_web::mime::Mime {
    "text/plain; version=0.0.4; charset=utf-8"
        .parse()
        .unwrap_or(actix_web::mime::TEXT_PLAIN_UTF_8)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    match readiness.check() {
        Ok(()) => HttpResponse::Ok()
            .content_type(ContentType::json())
            .body("{\"ready\":true}\n"),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .content_type(ContentType::json())
            .body(format!(
                "{}\n",
                serde_json::json!({"ready": false, "reason": reason})
            )),
    }
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().body("not found: try /metrics, /healthz or /readyz\n")
}

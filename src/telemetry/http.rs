//! The HTTP server on `metrics.listen`: `GET /metrics` (Prometheus text exposition) and
//! `GET /healthz`. It runs on its own single worker thread and never touches the pipeline.

use std::net::SocketAddr;

use actix_web::{App, HttpResponse, HttpServer, dev::ServerHandle, http::header::ContentType, web};
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::info;

/// Binds `addr` (port 0 picks a free port) and starts serving. Returns the bound address
/// and the handle that stops the server.
pub fn serve(
    addr: SocketAddr,
    handle: PrometheusHandle,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(handle.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
    })
    .workers(1)
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
    HttpResponse::Ok()
        .content_type(ContentType(mime_text_plain_004()))
        .body(handle.render())
}

fn mime_text_plain_004() -> actix_web::mime::Mime {
    "text/plain; version=0.0.4; charset=utf-8"
        .parse()
        .unwrap_or(actix_web::mime::TEXT_PLAIN_UTF_8)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

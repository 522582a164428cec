//! The http input: the target of OpenBao's `http` audit device, which POSTs each audit
//! entry as its own request (no retry; a non-2xx answer or no answer is a failed write).
//!
//! `POST /v1/audit` takes one event per line (OpenBao sends one; other clients may send
//! many). With `ack = "commit"` (the default) the answer is 2xx only once every event of
//! the body is durable: the events go to the correlator as one [`Ingest`] carrying a
//! commit receipt, which the correlator answers once the group commit holding their spans
//! or waiting entries has been fsynced. So an entry OpenBao was told is written cannot be
//! lost by a crash of auditspan (DESIGN invariant 3). `ack = "received"` answers once the
//! lines are parsed and the correlator has taken the events (the loss window of the
//! socket inputs, for a lower latency).
//!
//! Answers, in the order they are checked:
//!
//! | case | answer |
//! |---|---|
//! | a path other than `/v1/audit` | 404 |
//! | another method | 405, `Allow: POST` |
//! | missing or wrong `Authorization: Bearer` token | 401, `WWW-Authenticate: Bearer` (counted: `input_errors_total{reason="unauthorized"}`) |
//! | the queue refuses writes (full disk, sled failure, `overflow = "block"` at the limit) | 503, `Retry-After: 1`; the body is not read |
//! | body past `max_line_bytes` (+1 for its newline) | 413, after the body's first 4 KiB are dead-lettered as one `too_long` line |
//! | body not complete within [`BODY_TIMEOUT`] | 408 (counted: `reason="body_timeout"`) |
//! | an empty body | 400 |
//! | an invalid line | 400, once it is dead-lettered (and the body's valid events committed) |
//! | the commit fails or takes longer than [`COMMIT_TIMEOUT`] | 503 (the events may still be committed later: a retry then makes a duplicate, never a loss) |
//! | otherwise | 200 `{"accepted": N}` |
//!
//! Every answer is counted in `auditspan_input_http_responses_total{input,code}`, except
//! those actix-http gives on its own (431 for an oversized head, 408 for a head not sent
//! within [`CLIENT_REQUEST_TIMEOUT`]).
//!
//! Decisions:
//! - The token is compared in constant time (`subtle`, on SHA-256 digests, so its length
//!   does not leak either) and never logged.
//! - Each client IP address is its own stream, with its own event clock: one OpenBao
//!   server posts over several keep-alive connections at once, which share its clock;
//!   two servers do not (see [`super::peers`]).
//! - Bounds, as for `/metrics`: at most [`MAX_CONNECTIONS`] connections at once (further
//!   ones wait in the listen backlog), request heads of at most 128 KiB / 96 headers
//!   (actix-http's limits), [`CLIENT_REQUEST_TIMEOUT`] to send the head, [`BODY_TIMEOUT`]
//!   for the body. Idle keep-alive connections close after [`KEEP_ALIVE`], longer than
//!   Go's default idle timeout (90 s), so that OpenBao closes first and never posts on a
//!   connection the server is closing (that post would fail, and is not retried).
//! - HTTP/1.1, one worker thread per core (at most 4), parsing on the worker that read
//!   the request.

use std::{
    cell::RefCell,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix::prelude::*;
use actix_web::{
    App, HttpRequest, HttpResponse, HttpServer,
    http::{StatusCode, header},
    web,
};
use futures_util::StreamExt;
use memchr::memchr;
use metrics::Counter;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::{
    Frame, InputContext, LineHandler, ListenerError, TOO_LONG_HEAD_BYTES, peers::PeerStreams,
};
use crate::{
    config::{Ack, HttpAuth, HttpInput, InputConfig, TlsFiles},
    correlate::{Correlator, Ingest, InputId, Source},
    deadletter::{DeadLetter, WriteLines},
    queue::actor::QueueState,
    telemetry::{metrics as m, ready::InputReporter},
};

/// The one endpoint.
pub const AUDIT_PATH: &str = "/v1/audit";
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Connections the kernel queues while [`MAX_CONNECTIONS`] are being served.
const BACKLOG: u32 = 256;
/// Time a client has to send its request head (then 408, by actix-http).
pub const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to send its whole body once the head arrived (then 408).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time after which a keep-alive connection is closed.
pub const KEEP_ALIVE: Duration = Duration::from_secs(120);
/// The longest wait for the commit holding a request's events (then 503).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// At shutdown, how long requests in flight may take to be answered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Status codes counted from the start (at zero), so that alerts see them.
const COUNTED_CODES: [u16; 9] = [200, 400, 401, 404, 405, 408, 413, 500, 503];

/// A bound http input, with its token and TLS settings read.
pub struct Bound {
    address: SocketAddr,
    listener: std::net::TcpListener,
    tls: Option<rustls::ServerConfig>,
    /// SHA-256 of the bearer token; `None` with `auth = "none"`.
    token: Option<[u8; 32]>,
    ack: Ack,
}

/// Binds the http input `config` describes, reading its token variable and TLS files, so
/// that a missing token or a bad certificate stops the daemon at start.
pub fn bind(config: &InputConfig, settings: &HttpInput) -> Result<Bound, ListenerError> {
    let token = match &settings.auth {
        HttpAuth::None => None,
        HttpAuth::BearerEnv(var) => match std::env::var(var) {
            Ok(token) if !token.is_empty() => Some(Sha256::digest(token.as_bytes()).into()),
            _ => {
                return Err(ListenerError::AuthToken {
                    input: config.name.clone(),
                    var: var.clone(),
                });
            }
        },
    };
    let tls = match &settings.tls {
        Some(files) => Some(tls_config(&config.name, files)?),
        None => None,
    };
    let bind_err = |source| ListenerError::Bind {
        input: config.name.clone(),
        address: settings.address,
        cause: source,
    };
    let listener = std::net::TcpListener::bind(settings.address).map_err(bind_err)?;
    listener.set_nonblocking(true).map_err(bind_err)?;
    let address = listener.local_addr().map_err(bind_err)?;
    Ok(Bound {
        address,
        listener,
        tls,
        token,
        ack: settings.ack,
    })
}

/// A rustls server config from PEM files (aws-lc-rs, TLS 1.2 and 1.3).
fn tls_config(input: &str, files: &TlsFiles) -> Result<rustls::ServerConfig, ListenerError> {
    let error = |path: &Path, reason: String| ListenerError::Tls {
        input: input.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| error(path, e.to_string()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(&files.cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| error(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(error(&files.cert, "holds no certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?)
        .map_err(|e| error(&files.key, format!("not a PEM private key: {e}")))?;
    rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| error(&files.cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| error(&files.key, format!("does not go with the certificate: {e}")))
}

/// What every worker shares.
struct State {
    name: Arc<str>,
    input: InputId,
    token: Option<[u8; 32]>,
    ack: Ack,
    max_line_bytes: usize,
    correlator: Addr<Correlator>,
    deadletter: Addr<DeadLetter>,
    queue_state: watch::Receiver<QueueState>,
    peers: Mutex<PeerStreams<IpAddr>>,
    unauthorized: Counter,
    body_timeout: Counter,
    responses: [Counter; COUNTED_CODES.len()],
}

impl State {
    /// Counts `response` by its status code.
    fn count(&self, response: HttpResponse) -> HttpResponse {
        let code = response.status().as_u16();
        match COUNTED_CODES.iter().position(|c| *c == code) {
            Some(i) => self.responses[i].increment(1),
            None => m::input_http_responses(&self.name, code).increment(1),
        }
        response
    }
}

/// Serves until shutdown, then answers the requests in flight (up to a few seconds).
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    let Bound {
        address,
        listener,
        tls,
        token,
        ack,
    } = bound;
    for reason in [m::INPUT_ERROR_UNAUTHORIZED, m::INPUT_ERROR_BODY_TIMEOUT] {
        m::input_errors(&ctx.name, reason).increment(0);
    }
    let state = Arc::new(State {
        name: Arc::clone(&ctx.name),
        input: ctx.id,
        token,
        ack,
        max_line_bytes: ctx.max_line_bytes,
        correlator: ctx.correlator.clone(),
        deadletter: ctx.deadletter.clone(),
        queue_state: ctx.queue_state.clone(),
        peers: Mutex::new(PeerStreams::new(ctx.correlator.clone())),
        unauthorized: m::input_errors(&ctx.name, m::INPUT_ERROR_UNAUTHORIZED),
        body_timeout: m::input_errors(&ctx.name, m::INPUT_ERROR_BODY_TIMEOUT),
        responses: COUNTED_CODES.map(|code| {
            let counter = m::input_http_responses(&ctx.name, code);
            counter.increment(0);
            counter
        }),
    });
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let factory_state = Arc::clone(&state);
    let factory_ctx = ctx.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(Arc::clone(&factory_state)))
            // One line handler per worker thread: handlers borrow it only between awaits.
            .app_data(web::Data::new(RefCell::new(factory_ctx.line_handler())))
            .route(AUDIT_PATH, web::post().to(post))
            .route(AUDIT_PATH, web::route().to(method_not_allowed))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .max_connections(MAX_CONNECTIONS)
    .backlog(BACKLOG)
    .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(KEEP_ALIVE)
    .shutdown_timeout(SHUTDOWN_GRACE.as_secs())
    .disable_signals();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config),
        None => server.listen(listener),
    };
    let server = match server {
        Ok(server) => server.run(),
        Err(err) => {
            warn!(input = %ctx.name, %address, error = %err, "Could not serve.");
            return;
        }
    };
    let handle = server.handle();
    let serving = actix_rt::spawn(server);
    info!(input = %ctx.name, %address, scheme, "Listening.");
    ready.listening(true);
    ctx.shutdown.signalled().await;
    ready.listening(false);
    handle.stop(true).await;
    serving.await.ok();
    if let Ok(mut peers) = state.peers.lock() {
        peers.close_all();
    }
    info!(input = %ctx.name, "Stopped listening.");
}

async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
    lines: web::Data<RefCell<LineHandler>>,
) -> HttpResponse {
    let response = answer(&req, payload, &state, &lines).await;
    state.count(response)
}

/// A JSON answer `{"error": message}` (or any body) with `status`.
fn reply(status: StatusCode, body: serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(header::ContentType::json())
        .body(format!("{body}\n"))
}

fn error(status: StatusCode, message: &str) -> HttpResponse {
    reply(status, serde_json::json!({ "error": message }))
}

async fn answer(
    req: &HttpRequest,
    mut payload: web::Payload,
    state: &State,
    lines: &RefCell<LineHandler>,
) -> HttpResponse {
    if let Some(expected) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| bearer_token(v.as_bytes()));
        let ok = given.is_some_and(|token| {
            let digest: [u8; 32] = Sha256::digest(token).into();
            bool::from(digest.ct_eq(expected))
        });
        if !ok {
            state.unauthorized.increment(1);
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .content_type(header::ContentType::json())
                .body("{\"error\":\"missing or wrong bearer token\"}\n");
        }
    }
    if !state.queue_state.borrow().accepting {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .content_type(header::ContentType::json())
            .body("{\"error\":\"the queue does not take writes now\"}\n");
    }

    // A line of max_line_bytes and its newline.
    let limit = state.max_line_bytes.saturating_add(1);
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut body = web::BytesMut::new();
    let mut too_long = declared.filter(|len| *len > limit);
    let read = tokio::time::timeout(BODY_TIMEOUT, async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk?;
            if too_long.is_some() || body.len() + chunk.len() > limit {
                let room = TOO_LONG_HEAD_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..room.min(chunk.len())]);
                let seen = body.len() + chunk.len().saturating_sub(room);
                too_long = Some(too_long.unwrap_or(0).max(seen));
                if body.len() >= TOO_LONG_HEAD_BYTES {
                    break;
                }
                continue;
            }
            body.extend_from_slice(&chunk);
        }
        Ok::<(), actix_web::error::PayloadError>(())
    })
    .await;
    let read_at = Instant::now();
    match read {
        Err(_) => {
            state.body_timeout.increment(1);
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            );
        }
        Ok(Err(err)) => {
            return error(StatusCode::BAD_REQUEST, &format!("reading the body: {err}"));
        }
        Ok(Ok(())) => {}
    }
    if let Some(len) = too_long {
        let head = body[..TOO_LONG_HEAD_BYTES.min(body.len())].to_vec();
        let rejected = {
            let mut lines = lines.borrow_mut();
            lines.handle(Frame::TooLong { head, len });
            lines.take().1
        };
        state.deadletter.send(WriteLines(rejected)).await.ok();
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the body is longer than max_line_bytes ({})",
                state.max_line_bytes
            ),
        );
    }
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, "empty body");
    }

    let (events, rejected) = {
        let mut lines = lines.borrow_mut();
        let mut rest = &body[..];
        while !rest.is_empty() {
            let (line, next) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > state.max_line_bytes {
                let head = line[..TOO_LONG_HEAD_BYTES.min(line.len())].to_vec();
                lines.handle(Frame::TooLong {
                    head,
                    len: line.len(),
                });
            } else {
                lines.handle(Frame::Line(line));
            }
            rest = next;
        }
        lines.take()
    };
    let accepted = events.len();
    let invalid = rejected.len();
    if !rejected.is_empty() && state.deadletter.send(WriteLines(rejected)).await.is_err() {
        warn!(input = %state.name, "The dead-letter writer is gone; rejected lines dropped.");
    }
    if !events.is_empty() {
        let stream = match (req.peer_addr(), state.peers.lock()) {
            (Some(peer), Ok(mut peers)) => {
                peers.sweep(read_at);
                peers.stream(&peer.ip(), read_at)
            }
            _ => super::new_stream(),
        };
        let source = Source {
            input: state.input,
            stream,
        };
        let mut ingest = Ingest::events(source, events, read_at);
        let receipt = match state.ack {
            Ack::Commit => {
                let (tx, rx) = oneshot::channel();
                ingest.committed = Some(tx);
                Some(rx)
            }
            Ack::Received => None,
        };
        if state.correlator.send(ingest).await.is_err() {
            return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
        }
        if let Some(receipt) = receipt {
            match tokio::time::timeout(COMMIT_TIMEOUT, receipt).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(failed))) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, &failed.to_string());
                }
                Ok(Err(_)) => {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline is stopping");
                }
                Err(_) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the commit did not finish in time",
                    );
                }
            }
        }
    }
    if invalid > 0 {
        return reply(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "invalid lines; they are in the dead-letter file",
                "accepted": accepted,
                "rejected": invalid,
            }),
        );
    }
    reply(StatusCode::OK, serde_json::json!({ "accepted": accepted }))
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

async fn method_not_allowed(state: web::Data<State>) -> HttpResponse {
    state.count(
        HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .content_type(header::ContentType::json())
            .body("{\"error\":\"only POST\"}\n"),
    )
}

async fn not_found(state: web::Data<State>) -> HttpResponse {
    state.count(error(
        StatusCode::NOT_FOUND,
        &format!("not found: the endpoint is POST {AUDIT_PATH}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }
}

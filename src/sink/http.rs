//! The HTTP client stack every HTTP sink shares (OTLP/HTTP, Zipkin, Honeycomb): one
//! reqwest client per sink with rustls (system roots plus `ca_file`), the sink's timeout
//! and static headers, and the rules that turn an HTTP answer into an export result.
//!
//! Invariant: no error message built here contains a header value (API keys travel in
//! headers), only names, statuses and the backend's own body text, cut short.

use std::{
    io::Write,
    time::{Duration, SystemTime},
};

use flate2::{Compression as Level, write::GzEncoder};
use reqwest::{
    StatusCode,
    header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER},
};

use super::{ExportFailure, FailureReason, SinkError};
use crate::config::{Compression, Connection};

/// Longest piece of a backend's error body quoted in a log line.
const MAX_BODY_QUOTE: usize = 512;

/// The longest `Retry-After` honoured: a longer wish, or an HTTP date far ahead from a
/// backend whose clock is wrong, would stall the sink for as long; past this the sink's
/// own backoff takes over again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Builds the client for one sink. `extra` are headers the sink adds itself (e.g.
/// `X-Honeycomb-Team`), resolved like the configured ones. Errors name the header or file,
/// never a value.
pub fn client(
    connection: &Connection,
    default_timeout: Duration,
    extra: &[(&str, String)],
) -> Result<reqwest::Client, SinkError> {
    let mut headers = HeaderMap::new();
    let configured = connection
        .headers
        .iter()
        .map(|(name, secret)| {
            let value = secret.resolve().map_err(|reason| SinkError::Secret {
                setting: format!("header {name}"),
                reason,
            })?;
            Ok((name.as_str(), value))
        })
        .collect::<Result<Vec<_>, SinkError>>()?;
    let header_error = |name: &str, reason: &str| SinkError::Header {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    for (name, value) in extra.iter().map(|(n, v)| (*n, v.clone())).chain(configured) {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| header_error(name, "not a valid header name"))?;
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| header_error(name, "the value is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(header, value);
    }
    let mut builder = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(connection.timeout.unwrap_or(default_timeout))
        .connect_timeout(connection.timeout.unwrap_or(default_timeout))
        .user_agent(concat!("auditspan/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &connection.ca_file {
        for cert in ca_certificates(path)?.1 {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| {
        SinkError::Client(format!("cannot build the HTTP client: {}", error_chain(&e)))
    })
}

/// Reads a `ca_file`: its PEM text and the certificates in it; a file without any
/// certificate is an error. Errors name the file.
pub fn ca_certificates(
    path: &std::path::Path,
) -> Result<(Vec<u8>, Vec<reqwest::Certificate>), SinkError> {
    let ca_error = |reason: String| SinkError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(format!("cannot be read: {e}")))?;
    let certs =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(error_chain(&e)))?;
    if certs.is_empty() {
        return Err(ca_error("holds no PEM certificate".to_owned()));
    }
    Ok((pem, certs))
}

/// `body` gzip-compressed when `compression` asks for it; the `Content-Encoding` to send.
pub fn compress(compression: Compression, body: Vec<u8>) -> (Vec<u8>, Option<&'static str>) {
    match compression {
        Compression::None => (body, None),
        Compression::Gzip => {
            let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Level::fast());
            // Writing to a Vec cannot fail.
            if encoder.write_all(&body).is_err() {
                return (body, None);
            }
            match encoder.finish() {
                Ok(gz) => (gz, Some("gzip")),
                Err(_) => (body, None),
            }
        }
    }
}

/// A request that got no answer: timeout or connection failure, for all `len` spans.
pub fn transport_failure(err: &reqwest::Error, len: usize) -> ExportFailure {
    let reason = if err.is_timeout() {
        FailureReason::Timeout
    } else {
        FailureReason::Connect
    };
    ExportFailure::all(reason, error_chain(err), len)
}

/// What a non-2xx status means for a whole request of `len` spans (OTLP/HTTP rules, which
/// Zipkin and Honeycomb follow too): 429, 502, 503, 504 are retried honouring
/// `Retry-After`; 400 is a rejection of the batch; other 4xx are configuration errors
/// (401, 403, 404, 413...) and retried, so that fixing the backend or the key lets the
/// spans through; other 5xx are retried.
pub fn status_failure(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    len: usize,
) -> ExportFailure {
    let message = format!("HTTP {status}: {}", quote_body(body));
    if status == StatusCode::BAD_REQUEST {
        return ExportFailure::batch_rejected(message);
    }
    ExportFailure::all(FailureReason::Retryable, message, len)
        .with_retry_after(retry_after(headers))
}

/// `Retry-After`, as the delay from now; see [`retry_after_at`].
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    retry_after_at(headers, SystemTime::now())
}

/// `Retry-After` at `now` (RFC 9110 §10.2.3): delay-seconds, or an HTTP date in any of its
/// three forms (IMF-fixdate, RFC 850, asctime), as the delay from `now` (zero once it has
/// passed), at most [`MAX_RETRY_AFTER`]. `None` when absent or unreadable (the backoff
/// applies).
pub fn retry_after_at(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// The start of a response body, as text, for a log line.
pub fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_BODY_QUOTE)]);
    let text = text.trim();
    if body.len() > MAX_BODY_QUOTE {
        format!("{text}…")
    } else {
        text.to_owned()
    }
}

/// An error with its causes: the top level alone ("error sending request", "transport
/// error") hides the reason (connection refused, certificate unknown...).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_retry_or_rejection() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        let f = status_failure(StatusCode::TOO_MANY_REQUESTS, &headers, b"slow down", 3);
        assert_eq!(f.reason, FailureReason::Retryable);
        assert_eq!(f.retry(), [0, 1, 2]);
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(f.message, "HTTP 429 Too Many Requests: slow down");

        let f = status_failure(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"bad span", 3);
        assert!(f.is_whole_batch_invalid());
        assert_eq!(f.reason, FailureReason::Rejected);

        let f = status_failure(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"", 2);
        assert_eq!(f.reason, FailureReason::Retryable);
        assert_eq!(f.retry(), [0, 1]);
    }

    /// `Retry-After` as seconds or as an HTTP date in each of its three forms, relative to
    /// now; past dates mean now; unreadable values and wishes past an hour are not taken
    /// as they stand.
    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let at = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after_at(&headers, now)
        };
        assert_eq!(at("120"), Some(Duration::from_secs(120)));
        assert_eq!(at(" 7 "), Some(Duration::from_secs(7)));
        for date in [
            "Sun, 06 Nov 1994 08:50:07 GMT",
            "Sunday, 06-Nov-94 08:50:07 GMT",
            "Sun Nov  6 08:50:07 1994",
        ] {
            assert_eq!(at(date), Some(Duration::from_secs(30)), "{date}");
        }
        assert_eq!(at("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("Wed, 06 Nov 2024 08:49:37 GMT"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("99999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("soon"), None);
        assert_eq!(at("-5"), None);
        assert_eq!(retry_after_at(&HeaderMap::new(), now), None);
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"{\"a\":1}".repeat(100);
        let (gz, encoding) = compress(Compression::Gzip, body.clone());
        assert_eq!(encoding, Some("gzip"));
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, body);
        assert_eq!(compress(Compression::None, body.clone()), (body, None));
    }

    #[test]
    fn missing_header_secret_names_the_variable() {
        let connection = Connection {
            headers: vec![(
                "authorization".to_owned(),
                crate::config::Secret::Env("AUDITSPAN_TEST_SURELY_UNSET".to_owned()),
            )],
            ..Connection::default()
        };
        let err = client(&connection, Duration::from_secs(1), &[]).unwrap_err();
        assert!(matches!(err, SinkError::Secret { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains("AUDITSPAN_TEST_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn bad_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let connection = Connection {
            ca_file: Some(path.clone()),
            ..Connection::default()
        };
        let err = client(&connection, Duration::from_secs(1), &[]).unwrap_err();
        assert!(matches!(err, SinkError::CaFile { .. }), "{err:?}");
        let err = err.to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}

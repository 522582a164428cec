//! Rules between sections: a configuration whose values are each fine but that cannot
//! work together is refused, with a message naming both keys (issue #14 item 6).
//!
//! Only what cannot work is refused; a combination that merely works less well is
//! accepted and described in `docs/configuration.md` ("Combinations"). Refused:
//! - `queue.max_bytes` smaller than what one span of `parse.max_span_bytes` takes in the
//!   queue: the queue could not hold a single largest span within its bound (with
//!   `drop_oldest` each such span would push out everything before it, with `block` it
//!   would stop the inputs after each one).
//! - a sink whose `endpoint` is this daemon's own `metrics.listen`: it would send every
//!   span to auditspan's metrics server, which answers 404, and retry them forever.
//!
//! The file is checked on its own ([`super::from_toml_str`]); an override of
//! `metrics.listen` is checked again when it is applied.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use super::error::ConfigError;
use super::validate::{Ctx, MAX_SPAN_BYTES_LIMIT};
use super::{Config, SinkKind};

/// What a span's fields besides its attributes (ids, name, times, status message, the
/// encoding's own bytes) may add in the queue: the queue's largest span
/// ([`crate::queue::MAX_SPAN_BYTES`]) less the largest `parse.max_span_bytes`.
const SPAN_FIELDS_BYTES: u64 = (crate::queue::MAX_SPAN_BYTES - MAX_SPAN_BYTES_LIMIT) as u64;

/// Where the values the rules name are in the file (`None`: not given, or no file).
#[derive(Debug, Default)]
pub(super) struct Positions {
    pub(super) max_bytes: Option<Range<usize>>,
    pub(super) max_span_bytes: Option<Range<usize>>,
    /// One per `[[sink]]`, in order.
    pub(super) sink_endpoints: Vec<Option<Range<usize>>>,
}

/// The most queue bytes one span of `max_span_bytes` attributes takes.
pub(super) fn queue_bytes_for_one_span(max_span_bytes: usize) -> u64 {
    max_span_bytes as u64 + SPAN_FIELDS_BYTES
}

impl Ctx<'_> {
    /// Checks the rules between sections of a config built from this file.
    pub(super) fn coherent(&self, config: &Config, at: &Positions) -> Result<(), ConfigError> {
        let need = queue_bytes_for_one_span(config.parse.max_span_bytes);
        if config.queue.max_bytes < need {
            return Err(self.invalid(
                at.max_bytes.clone().or_else(|| at.max_span_bytes.clone()),
                "queue.max_bytes",
                format!(
                    "{} bytes cannot hold one span of parse.max_span_bytes ({} bytes, up to \
                     {need} bytes in the queue with the span's other fields); raise \
                     queue.max_bytes to at least {need} bytes or lower parse.max_span_bytes",
                    config.queue.max_bytes, config.parse.max_span_bytes
                ),
            ));
        }
        if let Some((n, endpoint, listen)) = own_metrics_endpoint(config) {
            return Err(self.invalid(
                at.sink_endpoints.get(n).cloned().flatten(),
                &format!("sink #{}.endpoint", n + 1),
                own_metrics_reason(endpoint, listen),
            ));
        }
        Ok(())
    }
}

/// The first sink (index, endpoint, metrics address) whose configured endpoint is the
/// daemon's own metrics server. Endpoints that come from defaults or `OTEL_*` variables
/// are not known here and not checked.
pub(super) fn own_metrics_endpoint(config: &Config) -> Option<(usize, &str, SocketAddr)> {
    let listen = config.metrics.listen?;
    config.sinks.iter().enumerate().find_map(|(n, sink)| {
        let endpoint = match &sink.kind {
            SinkKind::Stdout => None,
            SinkKind::Otlp(c) => c.connection.endpoint.as_deref(),
            SinkKind::Zipkin(c) => c.connection.endpoint.as_deref(),
            SinkKind::Honeycomb(c) => c.connection.endpoint.as_deref(),
        }?;
        reaches(endpoint, listen).then_some((n, endpoint, listen))
    })
}

/// Why a sink at `endpoint` cannot work beside a metrics server at `listen`.
pub(super) fn own_metrics_reason(endpoint: &str, listen: SocketAddr) -> String {
    format!(
        "\"{endpoint}\" is this daemon's own metrics.listen ({listen}): the sink would send \
         its spans to auditspan's metrics server, which refuses them, forever"
    )
}

/// Whether a request to `endpoint` (an `http`/`https` URL, as validated) connects to a
/// server listening on `listen`. Only names that need no lookup count: IP addresses and
/// `localhost`.
fn reaches(endpoint: &str, listen: SocketAddr) -> bool {
    let Ok(url) = url::Url::parse(endpoint) else {
        return false;
    };
    if url.port_or_known_default() != Some(listen.port()) {
        return false;
    }
    let listen_ip = listen.ip();
    let accepts = |ip: IpAddr| listen_ip == ip || (listen_ip.is_unspecified() && ip.is_loopback());
    match url.host() {
        Some(url::Host::Ipv4(ip)) => accepts(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => accepts(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => {
            listen_ip.is_loopback() || listen_ip.is_unspecified()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_that_reach_the_metrics_server() {
        let local: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        let v6: SocketAddr = "[::1]:9464".parse().unwrap();
        assert!(reaches("http://127.0.0.1:9464/v1/traces", local));
        assert!(reaches("http://localhost:9464", local));
        assert!(reaches("http://LOCALHOST:9464/api/v2/spans", v6));
        assert!(reaches("http://127.0.0.1:9464", any));
        assert!(reaches("http://[::1]:9464", v6));
        assert!(
            !reaches("http://127.0.0.1:4318/v1/traces", local),
            "another port"
        );
        assert!(!reaches("http://127.0.0.2:9464", local), "another address");
        assert!(
            !reaches("http://collector:9464", local),
            "a name is not looked up"
        );
        assert!(!reaches("https://127.0.0.1", local), "443 by default");
        assert!(reaches("http://127.0.0.1", "127.0.0.1:80".parse().unwrap()));
    }
}

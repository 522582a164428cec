//! Backends on loopback, inside the test process: [`http`], a scripted HTTP receiver (the
//! Zipkin and Honeycomb sinks' backend), and [`otlp`], OTLP receivers over gRPC and
//! HTTP/protobuf. Both record what arrived; what they record of a request the same way is
//! here: its [`Headers`], a gzip body unpacked ([`gunzip`]), and [`free_port`] for a
//! backend that is down until the test starts it.

pub mod http;
pub mod otlp;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};

/// A request's headers as a receiver saw them: names lower-case, values as text
/// (invalid UTF-8 replaced), in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// From (name, raw value) pairs, as actix-web's and tonic's header maps iterate.
    pub fn collect<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Headers {
        Headers(
            headers
                .into_iter()
                .map(|(name, value)| {
                    (
                        name.to_ascii_lowercase(),
                        String::from_utf8_lossy(value).into_owned(),
                    )
                })
                .collect(),
        )
    }

    /// The first value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the content coding header `name` (`content-encoding`, `grpc-encoding`) is
    /// gzip.
    pub fn gzip(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
    }

    /// Every (name, value), in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// A gzip body unpacked; panics when it does not gunzip (a sink that says gzip sends gzip).
pub fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a gzip body that gunzips");
    out
}

/// A loopback address nothing listens on right now (bound once and closed), for a backend
/// that is down until the test starts a receiver there.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

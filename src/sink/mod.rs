//! Sinks: where spans go. A [`Sink`] only encodes and sends a batch; its
//! [`worker::SinkWorker`] owns the rest (cursor, batching, retries, acknowledgement).
//!
//! Only stdout exists so far; OTLP, Zipkin and Honeycomb come next.

pub mod stdout;
pub mod worker;

use std::future::Future;

use crate::span::Span;

/// A backend. `export` delivers the batch or says which spans failed and why.
pub trait Sink: Send + 'static {
    /// The configured name: the key of the sink's cursor and its metric label.
    fn name(&self) -> &str;

    fn export(
        &mut self,
        spans: &[Span],
    ) -> impl Future<Output = Result<(), worker::ExportFailure>> + Send;
}

/// The resource every span of this process carries (DESIGN "Span contract").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub service_name: String,
    pub instance_id: String,
    pub host_name: String,
}

impl Resource {
    /// `(key, value)` pairs in the order sinks write them.
    pub fn attributes(&self) -> [(&'static str, &str); 3] {
        [
            ("service.name", &self.service_name),
            ("service.instance.id", &self.instance_id),
            ("host.name", &self.host_name),
        ]
    }
}

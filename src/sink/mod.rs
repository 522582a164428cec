//! Sinks: where spans go. A [`Sink`] only encodes and sends a batch and reads the
//! backend's answer; its [`worker::SinkWorker`] owns the rest (cursor, batching, retries,
//! splitting rejected batches, dead-lettering, acknowledgement).

pub mod honeycomb;
pub mod http;
pub mod json;
pub mod otlp;
pub mod stdout;
pub mod worker;
pub mod zipkin;

use std::future::Future;

use crate::span::Span;

pub use worker::{ExportFailure, Exported, FailureReason};

/// A backend. `export` delivers the batch or says which spans failed and why.
///
/// Contract: `Ok` means the backend acknowledged the whole request (a backend may still
/// report some spans as dropped, [`Exported::rejected`]); `Err` says, per span index, what
/// to retry and what was rejected for good, or that the request as a whole was refused as
/// invalid ([`ExportFailure::batch_rejected`]). A sink never retries by itself.
pub trait Sink: Send + 'static {
    /// The configured name: the key of the sink's cursor and its metric label.
    fn name(&self) -> &str;

    fn export(
        &mut self,
        spans: &[Span],
    ) -> impl Future<Output = Result<Exported, ExportFailure>> + Send;
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

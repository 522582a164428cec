//! Sinks: where spans go. Each sink is an actor that takes [`SpanBatch`]es
//! (`crate::correlate::SpanBatch`) and answers once the batch is delivered.
//!
//! Only stdout exists so far; the durable queue will sit between the correlator and the
//! sinks and drive them from per-sink cursors.

pub mod stdout;

/// Why a sink could not deliver a batch.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing to the sink's output failed (e.g. stdout closed).
    #[error("write to {sink} failed: {source}")]
    Write {
        sink: String,
        #[source]
        source: std::io::Error,
    },
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

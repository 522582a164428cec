//! CPU cost of the Vault request metrics per span, what the correlator pays on its hot path.
//!
//! `cargo run --release --example vault_metrics_cost`
//!
//! Installs the real Prometheus recorder, then records 2,000,000 paired spans (64 distinct
//! spans: 20 mount points, half of them in a namespace, every seventh an error, each with
//! 60 other attributes ahead of the namespace key) through `VaultRequests::record`, running
//! the recorder's upkeep every 100,000 spans as its thread would; then the same with no
//! namespace attribute at all (the root namespace: the key scan goes through every
//! attribute). Prints nanoseconds per span. Compare with the daemon's CPU time per span
//! (the end-to-end bench, `cargo bench --bench e2e`: about 2 × the CPU time per event).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use auditspan::{
    attr::{AttrValue, Attributes},
    span::{Outcome, Span, Status},
    telemetry::{metrics as m, vault::VaultRequests},
};

const SPANS: usize = 2_000_000;
const UPKEEP_EVERY: usize = 100_000;

fn main() {
    let handle = m::install().unwrap();
    let spans: Vec<Span> = (0..64u64)
        .map(|i| {
            let mut attributes: Attributes = (0..60)
                .map(|k| {
                    (
                        format!("response.data.key_{k}"),
                        AttrValue::Str("hmac-sha256:abcdef".into()),
                    )
                })
                .collect();
            attributes.push_str("request.operation", "read").unwrap();
            if i % 2 == 0 {
                attributes
                    .push_str("request.namespace.path", "team-a/")
                    .unwrap();
            }
            Span {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent_span_id: None,
                name: format!("read mount{}/", i % 20),
                start_unix_nano: 0,
                end_unix_nano: 1_234_567,
                status: if i % 7 == 0 {
                    Status::Error("permission denied".into())
                } else {
                    Status::Unset
                },
                outcome: Outcome::Paired,
                attributes,
            }
        })
        .collect();
    let mut vault = VaultRequests::new(500);
    let run = |vault: &mut VaultRequests, spans: &[Span]| {
        let started = Instant::now();
        for i in 0..SPANS {
            vault.record(&spans[i % spans.len()]);
            if i % UPKEEP_EVERY == 0 {
                handle.run_upkeep();
            }
        }
        started.elapsed().as_nanos() as f64 / SPANS as f64
    };
    println!(
        "{:.0} ns per span (half in a namespace)",
        run(&mut vault, &spans)
    );
    let root: Vec<Span> = spans
        .iter()
        .cloned()
        .map(|mut s| {
            s.attributes.truncate(61);
            s
        })
        .collect();
    println!(
        "{:.0} ns per span (root namespace: every key scanned)",
        run(&mut vault, &root)
    );
}

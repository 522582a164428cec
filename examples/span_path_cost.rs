//! CPU per event of each stage of the durable path, on one thread, from a real audit log:
//! parse, pair, encode into a commit, commit to a queue (data file + sled batch, fsynced),
//! window by window as the daemon does them; then read back, and the stdout sink's JSON
//! written from the stored bytes or from decoded spans. What the end-to-end bench (`benches/e2e`) measures as one number, taken apart.
//! Each stage is timed by the wall clock of this one thread (the commit's includes its
//! fsync waits), so run it on a quiet machine; for numbers that do not depend on the
//! machine's load, run it under `valgrind --tool=callgrind` and compare the instructions of
//! `parse_line`, `Pairing::ingest`, `encode_span`, `QueueStore::commit`,
//! `QueueStore::read_into` and `encode_stored` (`callgrind_annotate --inclusive=yes`).
//!
//! `cargo run --release --example span_path_cost -- LOAD.jsonl [LINES] [DIR]` (LOAD: e.g.
//! `shared/tools/gen_audit.py` output; LINES: how many of its lines, default 100,000; DIR:
//! where to put the queue, default a temporary directory).
#![allow(clippy::unwrap_used)]

use std::{
    io::BufRead,
    time::{Duration, Instant},
};

use auditspan::{
    codec,
    config::Overflow,
    correlate::{Feed, Now, Pairing, Settings, Source, Step},
    event::{ParseLimits, Parsed, parse_line},
    queue::{Commit, QueueStore, StoreOptions},
    sink::{Resource, stdout},
    span::Span,
};

// As the daemon (src/main.rs): allocation costs are part of what is measured.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Spans per commit: what a 5 ms window holds at ~68,000 spans/s.
const WINDOW: usize = 340;

fn main() {
    let mut args = std::env::args().skip(1);
    let load = args
        .next()
        .expect("usage: span_path_cost LOAD.jsonl [LINES] [DIR]");
    let lines: usize = args.next().map_or(100_000, |n| n.parse().unwrap());
    let base = args.next().map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir_in(base.unwrap_or_else(std::env::temp_dir)).unwrap();

    let text: Vec<Vec<u8>> = std::io::BufReader::new(std::fs::File::open(&load).unwrap())
        .split(b'\n')
        .take(lines)
        .map(Result::unwrap)
        .collect();
    let events = text.len();

    let limits = ParseLimits::default();
    let mut pairing = Pairing::new(
        Settings {
            pair_timeout: Duration::from_secs(10),
            join_traceparent: true,
            max_attributes: 256,
            max_span_bytes: 256 << 10,
        },
        Feed::Live,
    );
    let mut store = QueueStore::open(
        tmp.path(),
        StoreOptions {
            min_free_bytes: 0,
            ..StoreOptions::new(u64::MAX, Overflow::DropOldest)
        },
    )
    .unwrap();
    store.set_sinks(&["stdout".to_owned()]).unwrap();
    // As the daemon runs: a window of lines is parsed, paired, encoded into one commit and
    // committed, and the next window reuses the buffers; each stage's time is summed.
    let mut times = [Duration::ZERO; 4];
    let mut spans: Vec<Span> = Vec::with_capacity(WINDOW);
    let mut commit = Commit::default();
    let (mut n, mut encoded_bytes) = (0, 0);
    for lines in text.chunks(2 * WINDOW) {
        let start = Instant::now();
        let parsed: Vec<_> = lines
            .iter()
            .filter_map(|line| match parse_line(line, "", &limits) {
                Ok(Parsed::Event(event)) => Some(*event),
                _ => None,
            })
            .collect();
        times[0] += start.elapsed();
        let start = Instant::now();
        // The correlator reads the clock once per batch.
        let now = Now::read();
        for event in parsed {
            if let Step::Span(span) = pairing.ingest(Source::from(0), event, now) {
                spans.push(*span);
            }
        }
        times[1] += start.elapsed();
        let start = Instant::now();
        commit.spans.clear();
        for span in spans.drain(..) {
            commit.spans.push_with(|out| codec::encode_span(&span, out));
        }
        times[2] += start.elapsed();
        n += commit.spans.len();
        encoded_bytes += commit.spans.byte_len();
        let start = Instant::now();
        store.commit(&commit).unwrap();
        times[3] += start.elapsed();
    }
    let report = |what: &str, elapsed: Duration, per: usize, unit: &str| {
        println!(
            "{what:<44} {:>7.2} µs per {unit} ({per} in {:.2} s)",
            elapsed.as_secs_f64() * 1e6 / per as f64,
            elapsed.as_secs_f64()
        );
    };
    report("parse (flatten)", times[0], events, "event");
    report("pair (build spans)", times[1], events, "event");
    report("encode into commits", times[2], n, "span");
    println!(
        "  {n} spans, {:.0} bytes per span encoded",
        encoded_bytes as f64 / n as f64
    );
    report(
        "commit (data file + sled batch, fsynced)",
        times[3],
        n,
        "span",
    );

    let start = Instant::now();
    let mut batches = Vec::new();
    let mut cursor = 0;
    loop {
        let batch = store.read(cursor, 512, 8 << 20).unwrap();
        let Some(last) = batch.last_seq() else { break };
        cursor = last;
        batches.push(batch);
    }
    report("read (512 at a time)", start.elapsed(), n, "span");

    let resource = Resource {
        service_name: "vault".into(),
        instance_id: "i-1".into(),
        host_name: "host".into(),
    };
    let resource_json =
        br#"{"service.name":"vault","service.instance.id":"i-1","host.name":"host"}"#;
    let mut out = Vec::with_capacity(4 << 20);
    let start = Instant::now();
    let mut written = 0;
    for batch in &batches {
        out.clear();
        for (_, span) in batch.iter() {
            stdout::encode_stored(span, resource_json, &mut out).unwrap();
        }
        written += out.len();
    }
    report(
        "stdout JSON from the stored bytes",
        start.elapsed(),
        n,
        "span",
    );
    println!("  {:.0} bytes per line", written as f64 / n as f64);

    let start = Instant::now();
    for batch in &batches {
        out.clear();
        for (_, span) in batch.iter() {
            let span = codec::decode_span(span).unwrap();
            stdout::encode(&span, &resource, &mut out);
        }
    }
    report("stdout JSON from decoded spans", start.elapsed(), n, "span");
}

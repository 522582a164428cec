//! The end-to-end bench (`e2e`): throughput of the real daemon, measured from outside.
//!
//! What it measures: how fast a release `auditspan` turns a realistic audit stream arriving
//! on its unix socket into spans (stdout sink, to `/dev/null`), its peak memory, and how
//! that compares with the cost of merely reading the same bytes from the same sockets.
//!
//! How:
//! 1. The load is `shared/tools/gen_audit.py` output (`--pairs` pairs, seed 7), or any
//!    audit log given with `--load`. It is read into memory and dealt onto
//!    `--connections` buffers by `request.id`, so that both events of a pair travel on one
//!    connection, as they do from one audit device (each connection keeps its own event
//!    clock in the correlator). The expected counts come from the file
//!    itself: every line is one received event, every distinct `request.id` one span.
//! 2. Baseline: an in-process reader accepts the same number of unix-socket connections
//!    and reads and discards; the writers send the same buffers. Time runs from the first
//!    byte written to the last byte read.
//! 3. The daemon (the `auditspan` cargo built for this bench, `CARGO_BIN_EXE_auditspan`)
//!    starts through the tests' support (`tests/it/support`, `Daemon`) with a temporary
//!    config: one unix input, its data dir in the daemon's temporary directory, metrics on
//!    an ephemeral port (learnt from its `Serving metrics. addr=` log line), stdout to
//!    `/dev/null`. The writers send as fast as the socket takes it (or at `--rate` events
//!    per second); `/metrics` is polled until `auditspan_events_received_total` and
//!    the sum of `auditspan_spans_created_total` reach the expected counts. Time runs from
//!    the first byte written to the first scrape that shows everything; the poll interval
//!    (20 ms) bounds the error.
//!    Polling then goes on until `auditspan_queue_committed_sequence` and the stdout sink's
//!    `auditspan_sink_exported_spans_total` reach the spans created: the commit rate and
//!    the delivery rate, which equal the span rate only while the queue and the sink keep
//!    up.
//! 4. Peak RSS is `VmHWM` from `/proc/<pid>/status`; then the daemon gets SIGTERM and must
//!    exit 0.
//! 5. With `--outage-secs N`, a second, fresh daemon writes its stdout into a pipe that the
//!    bench does not read for N seconds (or until every span is committed, if that takes
//!    longer) while the same load is sent: the spans pile up in the queue. At the end of
//!    the outage it records the queue's size on disk (`<data_dir>/queue`, walked: allocated
//!    blocks and file lengths) and `auditspan_queue_bytes`, each per queued span; then it
//!    reads and discards the pipe and times the drain until `auditspan_sink_lag_spans`
//!    of the stdout sink is 0, and measures the queue on disk again (segments every sink
//!    passed are deleted whole, so it shrinks back to about one segment).
//!
//! A load with unpaired ids (a request without its response or the reverse) gets their
//! spans only `pair_timeout` after the stream goes idle (10 s of wall time by default).
//! The clock then stops at the last paired span (the commit and delivery times are those
//! of the spans made by then), and with `--connections 1` the bench configures
//! `pair_timeout = "1s"` so the run ends promptly. Not with more connections: measured
//! when the event clock was one per input (before issue #14 made live expiry wall-clock
//! only), a 1 s timeout split ~10 % of the pairs in a 4-connection test; `--pair-timeout`
//! overrides.
//!
//! 6. With `--sink otlp-grpc|otlp-http|zipkin|honeycomb`, the daemon exports to a local
//!    receiver (`receiver.rs`) that acknowledges at once; a second daemon then commits the
//!    whole load while the receiver refuses it, and the drain of the queue into the
//!    receiver is timed with the daemon's CPU time: the sink's own throughput and cost.
//! 7. With `--metrics-cost N`, only this runs: N rounds, each starting one daemon with
//!    metrics on (`metrics.listen` on a port, so the recorder is installed and every metric,
//!    the Vault request metrics included, is recorded) and one with metrics off
//!    (`listen = ""`: no recorder, no Vault request bookkeeping), in alternating order. Both
//!    are measured the same way, without any scrape: stdout is a pipe the bench reads (the
//!    stdout sink, whatever `--sink` says), and the clock runs from the first byte written
//!    to the line that completes the paired spans (`expected spans − unpaired ids`). It
//!    prints each run, the medians of the delivered spans/s and of the daemon's CPU time
//!    per event, and the cost of metrics as the difference of the medians.
//! 8. With `--soak-minutes N`, only the soak test runs (`soak.rs`): N minutes at a fixed
//!    rate against an OTLP/HTTP backend that fails 1% of requests and has outages, with a
//!    SIGKILL and restart of the daemon every few minutes; it reports the spans lost (of
//!    those committed: must be 0), duplicates, and RSS and open files over time.
//!
//! 9. With `--files N`, only this runs: the file and fifo inputs against the unix socket
//!    on the same load, N rounds, throughput and write → span latency (`files.rs`).
//!
//! Run: `cargo bench --bench e2e -- [--pairs N] [--connections N] [--sink KIND] [--rate N]
//! [--load FILE] [--outage-secs N] [--pair-timeout DURATION] [--metrics-cost ROUNDS]
//! [--files ROUNDS] [--inputs ROUNDS]`, or
//! `cargo bench --bench e2e -- --soak-minutes N [--soak-rate N] [--soak-kill-every MIN]
//! [--soak-outage-every MIN] [--soak-outage-secs S] [--soak-fail-percent P]`
//! (`docs/benchmarks.md`). `cargo bench` builds the `auditspan` binary with the same
//! profile first, so the numbers are never those of a stale daemon. Under `cargo test
//! --all-targets` (no `--bench` argument) it measures nothing and exits at once.
//!
//! The daemon is started, scraped and awaited with the tests' support (`#[path]` below);
//! the local receivers (`receiver.rs`) are the bench's own, since the tests' receivers
//! record every request for assertions, which costs the memory and CPU a throughput
//! measurement must not spend beside the daemon.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../../tests/it/support/mod.rs"]
mod support;

mod files;
mod inputs;
mod receiver;
mod soak;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde::Deserialize;

use support::{Daemon, Metrics, Options, Stdout, poll_until, shared_dir, toml_string};

/// The median of `values` (the mean of the middle two for an even count); NaN for none.
fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// How long the daemon gets to exit cleanly after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The default sink's name; the outage run measures it.
const SINK: &str = "stdout";

/// `correlate.pair_timeout` for a load with unpaired ids (the default is 10 s).
const SHORT_PAIR_TIMEOUT: &str = "1s";

#[derive(Parser, Debug)]
#[command(about = "Measures auditspan's end-to-end throughput on a unix socket.")]
struct Args {
    /// Request/response pairs to generate (ignored with --load).
    #[arg(long, default_value_t = 200_000)]
    pairs: u64,
    /// Unix-socket connections to spread the load over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Use this audit log instead of generating one.
    #[arg(long)]
    load: Option<PathBuf>,
    /// Give up when the daemon has not produced every span within this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// Also measure a stdout outage: a second daemon whose stdout is not read for this many
    /// seconds while the load is sent, then the drain of its queue.
    #[arg(long)]
    outage_secs: Option<u64>,
    /// `correlate.pair_timeout` for the daemon (e.g. "1s"); default: 1s when the load has
    /// unpaired ids and --connections is 1, else the daemon's default (10s) (see the
    /// module doc).
    #[arg(long)]
    pair_timeout: Option<String>,
    /// The sink to measure. Other than stdout, a local receiver that acknowledges at once
    /// gets the spans (stdout still goes to /dev/null), and a second run times the sink
    /// alone: the receiver answers "unavailable" while the load is committed, then the
    /// drain of the queue is timed.
    #[arg(long, value_enum, default_value_t = receiver::SinkKind::Stdout)]
    sink: receiver::SinkKind,
    /// Send at most this many events per second in all (spread over the connections)
    /// instead of as fast as the sockets take them: memory and latency at a given load
    /// rather than at saturation.
    #[arg(long)]
    rate: Option<u64>,
    /// `queue.segment_bytes` for the daemon (e.g. "64MiB"); default: the daemon's (8 MiB).
    #[arg(long)]
    segment_bytes: Option<String>,
    /// Instead of the usual report, compare throughput with metrics on and off over this
    /// many rounds (one daemon of each per round) and print the medians.
    #[arg(long)]
    metrics_cost: Option<usize>,
    /// Instead of the usual report, compare the file and fifo inputs with the unix socket
    /// on the same load over this many rounds, throughput and latency (`files.rs`).
    #[arg(long)]
    files: Option<usize>,
    /// Soak mode instead (`--soak-minutes N`, `soak.rs`): kills, outages, and the count of
    /// spans lost.
    #[command(flatten)]
    soak: soak::SoakArgs,
    /// Instead of the usual report, compare every input type with the unix socket on the
    /// same load over this many rounds (`inputs.rs`).
    #[arg(long)]
    inputs: Option<usize>,
    /// Events per second for the datagram inputs (and the unix run beside them) with
    /// --inputs.
    #[arg(long, default_value_t = 40_000)]
    inputs_rate: u64,
    /// Instead of the usual report, measure the latency of this many OpenBao `kv get`
    /// requests per audit device (socket, http with ack = commit / received) and round
    /// (`inputs.rs`; rounds: --inputs, default 3).
    #[arg(long)]
    bao_latency: Option<usize>,
    /// Added by `cargo bench`; without it (`cargo test`) nothing is measured.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs bench targets too,
    // without it (and perhaps with libtest's options), and must not start a measurement.
    if !std::env::args().any(|arg| arg == "--bench") {
        eprintln!("e2e: not measuring without --bench; run `cargo bench --bench e2e`");
        return Ok(());
    }
    let args = Args::parse();
    ensure!(args.connections > 0, "--connections must be at least 1");
    if let Some(requests) = args.bao_latency {
        return inputs::measure_bao_latency(requests, args.inputs.unwrap_or(3).max(1));
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; `cargo bench` builds the meaningful one");
    }
    if let Some(minutes) = args.soak.soak_minutes {
        return soak::run(&args.soak, minutes);
    }
    let work = tempfile::Builder::new()
        .prefix("auditspan-bench-")
        .tempdir()
        .context("creating a temporary directory")?;

    let load_path = match &args.load {
        Some(path) => path.clone(),
        None => generate_load(args.pairs, &work.path().join("load.jsonl"))?,
    };
    let mut load = Load::read(&load_path, args.connections)?;
    load.pair_timeout = args.pair_timeout.clone().or_else(|| {
        (load.unpaired() > 0 && args.connections == 1).then(|| SHORT_PAIR_TIMEOUT.to_owned())
    });
    eprintln!(
        "load: {} lines, {:.1} MB, {} expected spans, {} connections",
        load.lines,
        mb(load.bytes),
        load.expected_spans,
        args.connections
    );

    if load.unpaired() > 0 {
        eprintln!(
            "{} ids are unpaired; pair_timeout = {}",
            load.unpaired(),
            load.pair_timeout.as_deref().unwrap_or("10s (default)")
        );
    }

    ensure!(
        args.outage_secs.is_none() || args.sink == receiver::SinkKind::Stdout,
        "--outage-secs measures the stdout sink; leave out --sink"
    );
    ensure!(
        args.metrics_cost.is_none() || args.sink == receiver::SinkKind::Stdout,
        "--metrics-cost times the stdout sink; leave out --sink"
    );
    let receiver = receiver::Receiver::start(args.sink)?;
    load.sink = args.sink;
    load.rate = args.rate;
    load.sink_config = args.sink.config(receiver.addr);
    load.segment_bytes = args.segment_bytes.clone();
    let timeout = Duration::from_secs(args.timeout_secs);
    if let Some(rounds) = args.metrics_cost {
        return measure_metrics_cost(&load, rounds.max(1), timeout);
    }
    if let Some(rounds) = args.files {
        return files::measure(&load, rounds.max(1), timeout);
    }
    if let Some(rounds) = args.inputs {
        return inputs::measure(&load_path, &load, rounds.max(1), args.inputs_rate, timeout);
    }
    let baseline = measure_baseline(&load, &work.path().join("baseline.sock"))?;
    // Each daemon's queue lives in its own temporary directory, removed when the daemon is
    // dropped at the end of its measurement (the outage run wants the disk space).
    let daemon = measure_daemon(&load, timeout)?;
    let outage = match args.outage_secs {
        Some(secs) => Some(measure_outage(&load, Duration::from_secs(secs), timeout)?),
        None => None,
    };
    let drain = match args.sink {
        receiver::SinkKind::Stdout => None,
        _ => Some(measure_drain(&load, &receiver, timeout)?),
    };
    print_report(&load_path, &load, &baseline, &daemon);
    if let Some(drain) = &drain {
        print_drain_report(&load, drain);
    }
    if let Some(outage) = &outage {
        print_outage_report(&load, outage);
    }
    Ok(())
}

/// Runs `gen_audit.py` (from the `shared/` folder beside the repository) into `out`.
fn generate_load(pairs: u64, out: &Path) -> Result<PathBuf> {
    let script = shared_dir().join("tools/gen_audit.py");
    ensure!(
        script.is_file(),
        "{} not found; pass --load FILE",
        script.display()
    );
    eprintln!("generating {pairs} pairs with {} ...", script.display());
    let status = Command::new("python3")
        .arg(&script)
        .args(["-n", &pairs.to_string(), "--seed", "7", "-o"])
        .arg(out)
        .status()
        .context("running python3")?;
    ensure!(status.success(), "{} failed: {status}", script.display());
    Ok(out.to_owned())
}

/// The load in memory, already dealt onto the connections.
struct Load {
    /// One buffer per connection: every `connections`-th line, in order.
    per_connection: Vec<Vec<u8>>,
    lines: u64,
    bytes: u64,
    /// Distinct `request.id`s, the socket device's test message excepted (it is ignored).
    expected_spans: u64,
    /// Of those, ids with only a request line (→ `response_missing`) and with only a
    /// response line (→ `request_missing`).
    only_request: u64,
    only_response: u64,
    /// `correlate.pair_timeout` for the daemon, if not its default.
    pair_timeout: Option<String>,
    /// The sink measured, and its `[[sink]]` entry (empty: the default stdout sink).
    sink: receiver::SinkKind,
    sink_config: String,
    /// Events per second over all connections (`--rate`); `None`: as fast as possible.
    rate: Option<u64>,
    /// `queue.segment_bytes`, if not the daemon's default.
    segment_bytes: Option<String>,
}

impl Load {
    fn unpaired(&self) -> u64 {
        self.only_request + self.only_response
    }
}

/// The few fields of an audit event that decide whether it makes a span.
#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(borrow, default, rename = "type")]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    request: Option<RequestProbe<'a>>,
}

/// Bits of the halves an id was seen with.
const SEEN_REQUEST: u8 = 1;
const SEEN_RESPONSE: u8 = 2;

#[derive(Deserialize)]
struct RequestProbe<'a> {
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    path: Option<std::borrow::Cow<'a, str>>,
}

impl Load {
    fn read(path: &Path, connections: usize) -> Result<Load> {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut per_connection =
            vec![Vec::with_capacity(data.len() / connections + 1); connections];
        let mut ids: HashMap<String, u8> = HashMap::new();
        let mut lines = 0u64;
        for (i, line) in data.split_inclusive(|b| *b == b'\n').enumerate() {
            lines += 1;
            // A line that is not a valid event makes no span; the daemon counts it too.
            let Ok(event) = serde_json::from_slice::<EventProbe>(line) else {
                per_connection[i % connections].extend_from_slice(line);
                continue;
            };
            // Both events of a pair go to the same connection, as one audit device sends
            // them: each connection is one device's stream.
            let target = match event.request.as_ref().and_then(|r| r.id.as_deref()) {
                Some(id) => id.bytes().fold(0usize, |h, b| {
                    h.wrapping_mul(31).wrapping_add(usize::from(b))
                }),
                None => i,
            };
            per_connection[target % connections].extend_from_slice(line);
            if let Some(RequestProbe { id: Some(id), path }) = event.request
                && path.as_deref() != Some("sys/audit/test")
                && !id.is_empty()
            {
                let seen = match event.kind.as_deref() {
                    Some("request") => SEEN_REQUEST,
                    Some("response") => SEEN_RESPONSE,
                    _ => 0,
                };
                *ids.entry(id.into_owned()).or_default() |= seen;
            }
        }
        ensure!(lines > 0, "{} is empty", path.display());
        // A stream must end in a newline, or its last line is never framed.
        for buffer in &mut per_connection {
            if buffer.last().is_some_and(|b| *b != b'\n') {
                buffer.push(b'\n');
            }
        }
        let count = |bits: u8| ids.values().filter(|seen| **seen == bits).count() as u64;
        Ok(Load {
            per_connection,
            lines,
            bytes: data.len() as u64,
            expected_spans: ids.len() as u64,
            only_request: count(SEEN_REQUEST),
            only_response: count(SEEN_RESPONSE),
            pair_timeout: None,
            sink: receiver::SinkKind::Stdout,
            sink_config: String::new(),
            rate: None,
            segment_bytes: None,
        })
    }
}

/// Writes each buffer to its own connection from its own thread, all at once.
fn write_all_connections(load: &Load, connect: impl Fn() -> Result<UnixStream>) -> Result<()> {
    let streams = (0..load.per_connection.len())
        .map(|_| connect())
        .collect::<Result<Vec<_>>>()?;
    std::thread::scope(|scope| {
        let writers: Vec<_> = streams
            .into_iter()
            .zip(&load.per_connection)
            .map(|(mut stream, buffer)| {
                scope.spawn(move || -> Result<()> {
                    match load.rate {
                        None => stream.write_all(buffer).context("writing to the socket")?,
                        Some(rate) => {
                            let per_connection =
                                (rate as f64 / load.per_connection.len() as f64).max(1.0);
                            write_paced(&mut stream, buffer, per_connection)?;
                        }
                    }
                    stream
                        .shutdown(std::net::Shutdown::Write)
                        .context("closing the socket")?;
                    Ok(())
                })
            })
            .collect();
        writers
            .into_iter()
            .try_for_each(|writer| match writer.join() {
                Ok(result) => result,
                Err(_) => bail!("a writer thread panicked"),
            })
    })
}

/// Writes `buffer` at `lines_per_sec`, in slices of whole lines sent every 10 ms.
fn write_paced(stream: &mut UnixStream, buffer: &[u8], lines_per_sec: f64) -> Result<()> {
    const TICK: Duration = Duration::from_millis(10);
    let per_tick = (lines_per_sec * TICK.as_secs_f64()).ceil().max(1.0) as usize;
    let start = Instant::now();
    let mut rest = buffer;
    let mut ticks = 0u32;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(per_tick - 1)
            .map_or(rest.len(), |(i, _)| i + 1);
        stream
            .write_all(&rest[..end])
            .context("writing to the socket")?;
        rest = &rest[end..];
        ticks += 1;
        if let Some(wait) = (start + TICK * ticks).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

struct BaselineResult {
    elapsed: Duration,
}

/// Same bytes, same number of unix-socket connections, to a reader that only discards.
fn measure_baseline(load: &Load, socket: &Path) -> Result<BaselineResult> {
    let listener = UnixListener::bind(socket).context("binding the baseline socket")?;
    let connections = load.per_connection.len();
    let acceptor: JoinHandle<Result<u64>> = std::thread::spawn(move || {
        let readers: Vec<JoinHandle<std::io::Result<u64>>> = (0..connections)
            .map(|_| {
                let (mut stream, _) = listener.accept()?;
                Ok(std::thread::spawn(move || {
                    let mut buffer = vec![0u8; 256 * 1024];
                    let mut total = 0u64;
                    loop {
                        match stream.read(&mut buffer)? {
                            0 => return Ok(total),
                            n => total += n as u64,
                        }
                    }
                }))
            })
            .collect::<std::io::Result<_>>()?;
        let mut total = 0;
        for reader in readers {
            total += reader
                .join()
                .map_err(|_| anyhow::anyhow!("a reader panicked"))??;
        }
        Ok(total)
    });
    let start = Instant::now();
    write_all_connections(load, || Ok(UnixStream::connect(socket)?))?;
    let read = acceptor
        .join()
        .map_err(|_| anyhow::anyhow!("the acceptor panicked"))??;
    let elapsed = start.elapsed();
    ensure!(
        read == load.bytes,
        "baseline read {read} of {} bytes",
        load.bytes
    );
    Ok(BaselineResult { elapsed })
}

struct DaemonResult {
    elapsed: Duration,
    writers_done: Duration,
    peak_rss_kib: u64,
    /// CPU time the daemon used (user + system), start-up included.
    cpu: Duration,
    outcomes: BTreeMap<String, f64>,
    invalid: f64,
    ignored: f64,
    /// Spans created by `elapsed` (all of them unless the load has unpaired ids).
    created: f64,
    /// When `auditspan_queue_committed_sequence` reached `created`.
    committed_at: Duration,
    /// When the stdout sink had acknowledged `created` spans.
    delivered_at: Duration,
    /// `auditspan_commit_latency_seconds` quantiles 0.5 and 0.99: from reading an event off
    /// the socket to its span (or waiting entry) being committed.
    commit_latency: (f64, f64),
}

/// Starts a daemon on the bench's config (one unix input, `load`'s sink, `pair_timeout`
/// and `segment_bytes`) with `stdout`; with `metrics` false the endpoint, and so the
/// recorder, is off. Returns once its socket accepts, before any clock starts.
fn start_daemon(load: &Load, stdout: Stdout, metrics: bool) -> Daemon {
    let mut extra = match &load.pair_timeout {
        Some(timeout) => format!(
            "\n[correlate]\npair_timeout = {}\n",
            toml::Value::String(timeout.clone())
        ),
        None => String::new(),
    };
    if let Some(bytes) = &load.segment_bytes {
        extra.push_str(&format!(
            "\n[queue]\nsegment_bytes = {}\n",
            toml::Value::String(bytes.clone())
        ));
    }
    Options::default().stdout(stdout).start(|dir| {
        format!(
            "data_dir = {data}\n\n[[input]]\ntype = \"unix\"\nname = \"unix\"\npath = {socket}\n\n\
             {sink}\n[metrics]\nlisten = {listen}\n{extra}",
            data = toml_string(&dir.join("data")),
            socket = toml_string(&dir.join("auditspan.sock")),
            sink = load.sink_config,
            listen = if metrics { "\"127.0.0.1:0\"" } else { "\"\"" },
        )
    })
}

/// SIGTERM, then waits for the exit, which must be clean (status 0).
fn stop(daemon: &mut Daemon) -> Result<()> {
    daemon.sigterm();
    let status = daemon.wait_exit(STOP_TIMEOUT);
    ensure!(
        status.success(),
        "the daemon exited with {status} after SIGTERM\n{}",
        daemon.stderr_tail()
    );
    Ok(())
}

/// Every line received, every expected span created and nothing waiting for its partner
/// (a pair split by `pair_timeout` makes two spans, so the count alone is not enough).
fn all_created(scrape: &Metrics, load: &Load) -> bool {
    scrape.sum("auditspan_events_received_total") >= load.lines as f64
        && scrape.sum("auditspan_spans_created_total") >= load.expected_spans as f64
        && scrape.sum("auditspan_correlator_pending") == 0.0
}

/// Every line received and every pair made (or, if a pair was split, every span made).
fn pairs_done(scrape: &Metrics, load: &Load) -> bool {
    let paired = (load.expected_spans - load.unpaired()) as f64;
    (scrape.sum("auditspan_events_received_total") >= load.lines as f64
        && scrape.sum_matching("auditspan_spans_created_total", &[("outcome", "paired")]) >= paired)
        || all_created(scrape, load)
}

/// Polls `/metrics` until `done` holds; returns the time since `start` of the first scrape
/// that shows it, and that scrape. Fails when `timeout` has passed since `start` (naming
/// the progress so far), or when the daemon has died (the scrape fails).
fn wait_for(
    daemon: &Daemon,
    start: Instant,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Metrics) -> bool,
) -> (Duration, Metrics) {
    let mut last = None;
    let finished = poll_until(timeout.saturating_sub(start.elapsed()), || {
        let scrape = daemon.metrics();
        let finished = done(&scrape);
        last = Some((start.elapsed(), scrape));
        finished
    });
    // `poll_until` calls its condition at least once.
    let (elapsed, scrape) = last.unwrap();
    if !finished {
        daemon.fail(&format!(
            "after {timeout:?}, still waiting for {what}: {}",
            progress(&scrape)
        ));
    }
    (elapsed, scrape)
}

/// The spans `sink` has not had acknowledged yet.
fn sink_lag(scrape: &Metrics, sink: &str) -> f64 {
    scrape.sum_matching("auditspan_sink_lag_spans", &[("sink", sink)])
}

/// The counters a timeout message needs.
fn progress(scrape: &Metrics) -> String {
    format!(
        "{} events received, {} spans created, {} committed, stdout sink lag {}",
        scrape.sum("auditspan_events_received_total"),
        scrape.sum("auditspan_spans_created_total"),
        scrape.sum("auditspan_queue_committed_sequence"),
        sink_lag(scrape, SINK)
    )
}

/// Spans the sink `sink` has had acknowledged.
fn exported(scrape: &Metrics, sink: &str) -> f64 {
    scrape.sum_matching("auditspan_sink_exported_spans_total", &[("sink", sink)])
}

/// Starts the daemon, pushes the load through it and waits for every span.
fn measure_daemon(load: &Load, timeout: Duration) -> Result<DaemonResult> {
    let mut daemon = start_daemon(load, Stdout::Null, true);

    let start = Instant::now();
    write_all_connections(load, || Ok(daemon.connect()))?;
    let writers_done = start.elapsed();

    // The clock stops once every line is in and every pair made; the unpaired halves
    // become spans only after `pair_timeout`, which is no measure of throughput. (A pair
    // split by the timeout never completes; then the clock stops with the last span.)
    let (elapsed, at_elapsed) = wait_for(&daemon, start, timeout, "every pair", |s| {
        pairs_done(s, load)
    });
    // Spans are committed and delivered in the order they were made.
    let created = at_elapsed.sum("auditspan_spans_created_total");
    let (committed_at, _) = wait_for(&daemon, start, timeout, "the last commit", |s| {
        s.sum("auditspan_queue_committed_sequence") >= created
    });
    let sink = load.sink.sink_name();
    let (delivered_at, _) = wait_for(&daemon, start, timeout, "the sink", |s| {
        exported(s, sink) >= created
    });
    let (_, scrape) = wait_for(&daemon, start, timeout, "every span", |s| {
        all_created(s, load)
    });
    let pid = daemon.pid();
    let peak_rss_kib = vm_hwm_kib(pid)?;
    let cpu = cpu_time(pid)?;

    stop(&mut daemon)?;
    Ok(DaemonResult {
        elapsed,
        writers_done,
        peak_rss_kib,
        cpu,
        outcomes: scrape.by_label("auditspan_spans_created_total", "outcome"),
        invalid: scrape.sum("auditspan_events_invalid_total"),
        ignored: scrape.sum("auditspan_events_ignored_total"),
        created,
        committed_at,
        delivered_at,
        commit_latency: (
            scrape.histogram_quantile("auditspan_commit_latency_seconds", 0.5),
            scrape.histogram_quantile("auditspan_commit_latency_seconds", 0.99),
        ),
    })
}

/// One run of `--metrics-cost`: the time until the paired spans were on stdout, and the
/// daemon's CPU time by then.
struct DeliveryRun {
    metrics: bool,
    elapsed: Duration,
    cpu: Duration,
}

/// Starts a daemon with metrics on or off, sends the load and reads stdout until the
/// paired spans are there; no scrape happens.
fn measure_delivery(load: &Load, metrics: bool, timeout: Duration) -> Result<DeliveryRun> {
    let mut daemon = start_daemon(load, Stdout::Pipe, metrics);
    let mut stdout = daemon.take_stdout();
    let target = load.expected_spans - load.unpaired();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Instant>();
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buffer = vec![0u8; 1 << 20];
        let mut lines = 0u64;
        let mut sent = false;
        loop {
            let n = stdout.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
            if !sent && lines >= target {
                done_tx.send(Instant::now()).ok();
                sent = true;
            }
        }
    });
    let start = Instant::now();
    write_all_connections(load, || Ok(daemon.connect()))?;
    let done = done_rx.recv_timeout(timeout).with_context(|| {
        format!(
            "{target} spans not on stdout within {timeout:?}\n{}",
            daemon.stderr_tail()
        )
    })?;
    let cpu = cpu_time(daemon.pid())?;
    stop(&mut daemon)?;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?
        .context("reading the daemon's stdout")?;
    Ok(DeliveryRun {
        metrics,
        elapsed: done - start,
        cpu,
    })
}

/// `--metrics-cost`: `rounds` × (metrics on, metrics off), alternating which goes first.
fn measure_metrics_cost(load: &Load, rounds: usize, timeout: Duration) -> Result<()> {
    let mut runs = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for metrics in order {
            let run = measure_delivery(load, metrics, timeout)?;
            eprintln!(
                "round {}: metrics {:<3} {:.2} s, {:.0} spans/s, {:.2} µs CPU per event",
                round + 1,
                if metrics { "on" } else { "off" },
                run.elapsed.as_secs_f64(),
                spans_per_sec(load, &run),
                cpu_per_event(load, &run)
            );
            runs.push(run);
        }
    }
    let median = |metrics: bool, f: &dyn Fn(&DeliveryRun) -> f64| {
        let values: Vec<f64> = runs
            .iter()
            .filter(|r| r.metrics == metrics)
            .map(f)
            .collect();
        median(values)
    };
    let rate_on = median(true, &|r| spans_per_sec(load, r));
    let rate_off = median(false, &|r| spans_per_sec(load, r));
    let cpu_on = median(true, &|r| cpu_per_event(load, r));
    let cpu_off = median(false, &|r| cpu_per_event(load, r));
    println!();
    println!(
        "auditspan e2e bench --metrics-cost: {} lines, {} paired spans, {} connections, {rounds} rounds",
        load.lines,
        load.expected_spans - load.unpaired(),
        load.per_connection.len()
    );
    println!(
        "  {:<14} {:>16} {:>22}",
        "metrics", "spans/s (median)", "CPU µs/event (median)"
    );
    println!("  {:<14} {:>16.0} {:>22.2}", "on", rate_on, cpu_on);
    println!("  {:<14} {:>16.0} {:>22.2}", "off", rate_off, cpu_off);
    println!(
        "  cost of metrics: {:.1}% of throughput, {:.1}% more CPU per event",
        100.0 * (rate_off - rate_on) / rate_off,
        100.0 * (cpu_on - cpu_off) / cpu_off
    );
    Ok(())
}

fn spans_per_sec(load: &Load, run: &DeliveryRun) -> f64 {
    (load.expected_spans - load.unpaired()) as f64 / run.elapsed.as_secs_f64()
}

fn cpu_per_event(load: &Load, run: &DeliveryRun) -> f64 {
    run.cpu.as_secs_f64() * 1e6 / load.lines as f64
}

struct OutageResult {
    /// How long stdout went unread: `--outage-secs`, or longer if committing every span
    /// took longer.
    outage: Duration,
    writers_done: Duration,
    /// Every event received and every pair made and committed, the sink blocked, and the
    /// spans committed by then.
    committed_at: Duration,
    committed_spans: f64,
    /// At the end of the outage: `auditspan_queue_spans`, the stdout sink's lag,
    /// `auditspan_queue_bytes`, and `<data_dir>/queue` on disk.
    queued_spans: f64,
    lag: f64,
    queue_bytes: f64,
    disk: DiskUsage,
    /// VmHWM at the end of the outage.
    outage_rss_kib: u64,
    /// From the first read of stdout to the first scrape with a lag of 0.
    drain: Duration,
    /// VmHWM after the drain.
    peak_rss_kib: u64,
    /// `<data_dir>/queue` on disk once the sink has everything (segments every sink
    /// passed are deleted whole).
    disk_after: DiskUsage,
    cpu: Duration,
    /// What the bench read from stdout, up to the daemon's exit.
    stdout_lines: u64,
    stdout_bytes: u64,
}

/// A fresh daemon whose stdout is a pipe nobody reads for `outage` while the load is sent;
/// then the pipe is read and discarded until the sink's lag is 0.
fn measure_outage(load: &Load, outage: Duration, timeout: Duration) -> Result<OutageResult> {
    let mut daemon = start_daemon(load, Stdout::Pipe, true);
    let stdout = daemon.take_stdout();
    eprintln!(
        "outage: stdout unread for {} s while the load is sent ...",
        outage.as_secs()
    );

    let start = Instant::now();
    write_all_connections(load, || Ok(daemon.connect()))?;
    let writers_done = start.elapsed();
    let committed = |s: &Metrics| {
        s.sum("auditspan_queue_committed_sequence") >= s.sum("auditspan_spans_created_total")
    };
    let (committed_at, at_committed) =
        wait_for(&daemon, start, timeout, "every pair committed", |s| {
            pairs_done(s, load) && committed(s)
        });
    // The unpaired halves' spans too, before the outage ends.
    wait_for(&daemon, start, timeout, "every span committed", |s| {
        all_created(s, load) && committed(s)
    });
    // The outage itself: stdout stays unread until `outage` has passed (longer if the
    // commits took longer), and the daemon must live through it.
    if poll_until(outage.saturating_sub(start.elapsed()), || {
        daemon.try_exit_status().is_some()
    }) {
        bail!(
            "the daemon exited during the outage\n{}",
            daemon.stderr_tail()
        );
    }
    let outage = start.elapsed();
    let scrape = daemon.metrics();
    let disk = disk_usage(&daemon.dir().join("data").join("queue"))?;
    let pid = daemon.pid();
    let outage_rss_kib = vm_hwm_kib(pid)?;
    let lag = sink_lag(&scrape, SINK);

    eprintln!("outage over: {lag} spans queued; draining ...");
    let drain_start = Instant::now();
    let reader = discard(stdout);
    let (drain, _) = wait_for(&daemon, drain_start, timeout, "the drain", |s| {
        sink_lag(s, SINK) == 0.0
    });
    let peak_rss_kib = vm_hwm_kib(pid)?;
    let cpu = cpu_time(pid)?;
    let disk_after = disk_usage(&daemon.dir().join("data").join("queue"))?;

    stop(&mut daemon)?;
    let (stdout_lines, stdout_bytes) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the stdout reader panicked"))?
        .context("reading the daemon's stdout")?;
    Ok(OutageResult {
        outage,
        writers_done,
        committed_at,
        committed_spans: at_committed.sum("auditspan_queue_committed_sequence"),
        queued_spans: scrape.sum("auditspan_queue_spans"),
        lag,
        queue_bytes: scrape.sum("auditspan_queue_bytes"),
        disk,
        outage_rss_kib,
        drain,
        peak_rss_kib,
        disk_after,
        cpu,
        stdout_lines,
        stdout_bytes,
    })
}

/// Reads `out` to its end on a thread of its own, counting lines and bytes.
fn discard(mut out: ChildStdout) -> JoinHandle<std::io::Result<(u64, u64)>> {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 1 << 20];
        let (mut lines, mut bytes) = (0u64, 0u64);
        loop {
            match out.read(&mut buffer)? {
                0 => return Ok((lines, bytes)),
                n => {
                    bytes += n as u64;
                    lines += buffer[..n].iter().filter(|b| **b == b'\n').count() as u64;
                }
            }
        }
    })
}

/// The size of a directory tree: allocated (`st_blocks` × 512, what `du` shows) and
/// apparent (file lengths, what `du --apparent-size` shows).
#[derive(Debug, Clone, Copy, Default)]
struct DiskUsage {
    allocated: u64,
    apparent: u64,
}

fn disk_usage(path: &Path) -> Result<DiskUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut total = DiskUsage::default();
    let mut pending = vec![path.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            }
            total.allocated += meta.blocks() * 512;
            total.apparent += meta.len();
        }
    }
    Ok(total)
}

struct DrainResult {
    spans: f64,
    elapsed: Duration,
    /// Daemon CPU time during the drain: the sink's own cost (plus the queue reads).
    cpu: Duration,
    requests: u64,
}

/// The sink alone: the load is committed while the receiver refuses everything, then the
/// receiver accepts and the drain is timed until the sink has acknowledged every span.
fn measure_drain(
    load: &Load,
    receiver: &receiver::Receiver,
    timeout: Duration,
) -> Result<DrainResult> {
    receiver.hold(true);
    let mut daemon = start_daemon(load, Stdout::Null, true);
    let start = Instant::now();
    write_all_connections(load, || Ok(daemon.connect()))?;
    let (_, scrape) = wait_for(&daemon, start, timeout, "every span", |s| {
        all_created(s, load)
            && s.sum("auditspan_queue_committed_sequence") >= s.sum("auditspan_spans_created_total")
    });
    let spans = scrape.sum("auditspan_spans_created_total");
    let sink = load.sink.sink_name();
    let pid = daemon.pid();
    let requests_before = receiver.requests.load(std::sync::atomic::Ordering::Relaxed);
    let cpu_before = cpu_time(pid)?;
    let start = Instant::now();
    receiver.hold(false);
    let (elapsed, _) = wait_for(&daemon, start, timeout, "the drain", |s| {
        exported(s, sink) >= spans
    });
    let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
    let requests = receiver.requests.load(std::sync::atomic::Ordering::Relaxed) - requests_before;
    stop(&mut daemon)?;
    Ok(DrainResult {
        spans,
        elapsed,
        cpu,
        requests,
    })
}

fn print_drain_report(load: &Load, drain: &DrainResult) {
    println!();
    println!(
        "  sink {:?} alone: {} queued spans drained in {:.2} s: {:.0} spans/s, {} requests",
        load.sink,
        drain.spans,
        drain.elapsed.as_secs_f64(),
        drain.spans / drain.elapsed.as_secs_f64(),
        drain.requests
    );
    println!(
        "  daemon CPU during the drain: {:.2} s, {:.1} ms per 10k spans ({:.0}% of one core)",
        drain.cpu.as_secs_f64(),
        drain.cpu.as_secs_f64() * 1e3 * 1e4 / drain.spans.max(1.0),
        100.0 * drain.cpu.as_secs_f64() / drain.elapsed.as_secs_f64()
    );
}

/// Peak resident set size of `pid`, from the kernel's own high-water mark.
fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM")?;
    let kib = line.split_whitespace().nth(1).context("malformed VmHWM")?;
    Ok(kib.parse()?)
}

/// User + system CPU time of `pid` so far (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces; the fields after it may not.
    let after_name = stat.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("no utime")?.parse::<u64>()?
        + fields.get(12).context("no stime")?.parse::<u64>()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.context("no CLK_TCK")?;
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

fn print_report(path: &Path, load: &Load, baseline: &BaselineResult, daemon: &DaemonResult) {
    let rate = |count: u64, elapsed: Duration| count as f64 / elapsed.as_secs_f64();
    let events_daemon = rate(load.lines, daemon.elapsed);
    let events_baseline = rate(load.lines, baseline.elapsed);
    println!();
    println!("auditspan e2e bench: {}", path.display());
    println!(
        "  {} lines, {:.1} MB, {} expected spans, {} unix connections",
        load.lines,
        mb(load.bytes),
        load.expected_spans,
        load.per_connection.len()
    );
    if load.unpaired() > 0 {
        println!(
            "  {} unpaired ids ({} request only, {} response only); pair_timeout = {}; \
             elapsed ends at the last paired span, their spans come after it",
            load.unpaired(),
            load.only_request,
            load.only_response,
            load.pair_timeout.as_deref().unwrap_or("10s (default)")
        );
    }
    println!();
    println!(
        "  {:<20} {:>10} {:>12} {:>12} {:>10}",
        "", "elapsed", "events/s", "spans/s", "MB/s"
    );
    println!(
        "  {:<20} {:>8.2} s {:>12.0} {:>12.0} {:>10.1}",
        "auditspan",
        daemon.elapsed.as_secs_f64(),
        events_daemon,
        rate(load.expected_spans, daemon.elapsed),
        mb(load.bytes) / daemon.elapsed.as_secs_f64()
    );
    println!(
        "  {:<20} {:>8.2} s {:>12.0} {:>12} {:>10.1}",
        "baseline (discard)",
        baseline.elapsed.as_secs_f64(),
        events_baseline,
        "-",
        mb(load.bytes) / baseline.elapsed.as_secs_f64()
    );
    println!(
        "  {:<20} {:>10} {:>11.1}%",
        "auditspan/baseline",
        "",
        100.0 * events_daemon / events_baseline
    );
    println!();
    println!(
        "  peak RSS (VmHWM)     {:.1} MiB",
        daemon.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "  commit latency       p50 {:.1} ms, p99 {:.1} ms (socket read → committed)",
        daemon.commit_latency.0 * 1e3,
        daemon.commit_latency.1 * 1e3
    );
    println!(
        "  daemon CPU time      {:.2} s ({:.1} µs per event, {:.0}% of one core)",
        daemon.cpu.as_secs_f64(),
        daemon.cpu.as_secs_f64() * 1e6 / load.lines as f64,
        100.0 * daemon.cpu.as_secs_f64() / daemon.elapsed.as_secs_f64()
    );
    println!(
        "  writers done after   {:.2} s",
        daemon.writers_done.as_secs_f64()
    );
    let outcomes: Vec<String> = daemon
        .outcomes
        .iter()
        .map(|(outcome, n)| format!("{outcome} {n}"))
        .collect();
    println!("  spans by outcome     {}", outcomes.join(", "));
    println!(
        "  invalid / ignored    {} / {}",
        daemon.invalid, daemon.ignored
    );
    let outcome = |name: &str| daemon.outcomes.get(name).copied().unwrap_or(0.0);
    let paired = load.expected_spans - load.unpaired();
    if outcome("paired") != paired as f64
        || outcome("response_missing") != load.only_request as f64
        || outcome("request_missing") != load.only_response as f64
    {
        println!(
            "  note: the file pairs as paired {paired}, response_missing {}, request_missing {}",
            load.only_request, load.only_response
        );
    }
    println!();
    println!(
        "  {:<20} {:>10} {:>10} {:>12}",
        "spans", "count", "done at", "spans/s"
    );
    let delivered_label = format!("delivered ({})", load.sink.sink_name());
    for (what, at) in [
        ("created", daemon.elapsed),
        ("committed (queue)", daemon.committed_at),
        (delivered_label.as_str(), daemon.delivered_at),
    ] {
        println!(
            "  {:<20} {:>10} {:>8.2} s {:>12.0}",
            what,
            daemon.created,
            at.as_secs_f64(),
            daemon.created / at.as_secs_f64()
        );
    }
    println!(
        "  (committed: auditspan_queue_committed_sequence; equal rates mean the queue and \
         the sink kept up)"
    );
}

fn print_outage_report(load: &Load, outage: &OutageResult) {
    let per_span = |bytes: f64| bytes / outage.queued_spans.max(1.0);
    println!();
    println!(
        "  stdout outage: not read for {:.1} s while the load was sent, then drained",
        outage.outage.as_secs_f64()
    );
    println!(
        "    load in, sink blocked  {:.2} s (writers done {:.2} s): {:.0} events/s, {:.0} spans/s committed",
        outage.committed_at.as_secs_f64(),
        outage.writers_done.as_secs_f64(),
        load.lines as f64 / outage.committed_at.as_secs_f64(),
        outage.committed_spans / outage.committed_at.as_secs_f64()
    );
    println!(
        "    queued at outage end   {} spans (stdout sink lag {})",
        outage.queued_spans, outage.lag
    );
    println!(
        "    queue on disk          {:.1} MB allocated = {:.0} B/span; {:.1} MB apparent = {:.0} B/span",
        mb(outage.disk.allocated),
        per_span(outage.disk.allocated as f64),
        mb(outage.disk.apparent),
        per_span(outage.disk.apparent as f64)
    );
    println!(
        "    auditspan_queue_bytes  {:.1} MB = {:.0} B/span; disk allocated / queue_bytes = {:.2}",
        outage.queue_bytes / 1e6,
        per_span(outage.queue_bytes),
        outage.disk.allocated as f64 / outage.queue_bytes.max(1.0)
    );
    println!(
        "    drain                  {} spans in {:.2} s = {:.0} spans/s",
        outage.lag,
        outage.drain.as_secs_f64(),
        outage.lag / outage.drain.as_secs_f64()
    );
    println!(
        "    queue on disk, drained {:.1} MB allocated, {:.1} MB apparent",
        mb(outage.disk_after.allocated),
        mb(outage.disk_after.apparent)
    );
    println!(
        "    stdout read            {} lines, {:.1} MB",
        outage.stdout_lines,
        mb(outage.stdout_bytes)
    );
    println!(
        "    peak RSS (VmHWM)       {:.1} MiB at outage end, {:.1} MiB after the drain",
        outage.outage_rss_kib as f64 / 1024.0,
        outage.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "    daemon CPU time        {:.2} s",
        outage.cpu.as_secs_f64()
    );
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

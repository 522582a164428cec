//! Soak mode (`--soak-minutes N`): the daemon for N minutes at a fixed rate against a
//! backend that fails, goes away and comes back, while the daemon itself is killed with
//! SIGKILL and restarted; then the count of what was lost (issue #14 item 7).
//!
//! - **Traffic**: one writer on the daemon's unix socket sends `--soak-rate` events per
//!   second (each a request and its response, unique request ids, dated now), paced in
//!   10 ms slices. While the daemon is down its connection fails; the writer reconnects
//!   and the pairs it could not write are counted as not sent (a write that failed half
//!   way is counted apart: the daemon may have read part of it).
//! - **Backend**: an OTLP/HTTP receiver (below) that decodes every request and records the
//!   `vault.request.id` of each span it acknowledges. It answers 503 to
//!   `--soak-fail-percent` of the requests, and to all of them during an outage of
//!   `--soak-outage-secs` every `--soak-outage-every` minutes.
//! - **Witness**: the daemon's second sink is stdout, read by the bench. A sink only ever
//!   gets spans after the commit that holds them was flushed, and stdout never fails, so
//!   the ids that appear there are the committed ones (after a kill they are replayed).
//! - **Crashes**: every `--soak-kill-every` minutes SIGKILL, then a restart on the same
//!   data directory.
//! - **Samples** every `--soak-sample-secs`: the daemon's RSS (`VmRSS`) and open files
//!   (`/proc/<pid>/fd`), the queue's spans, each sink's lag.
//!
//! At the end the writer stops, the backend is up, and the bench waits until nothing is
//! pending and both sinks have everything; then it reports spans lost (committed, i.e. on
//! stdout, but never acknowledged by the backend: must be 0), duplicates at the backend,
//! what the kills cost before commit, and RSS and open files over time, per run of the
//! daemon. It fails (exit 1) when a committed span was lost or the daemon did not exit 0
//! on SIGTERM.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ChildStdout;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::{Context, Result, bail, ensure};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;

use crate::support::{Daemon, Metrics, Options, Stdout, poll_until, toml_string, traffic::Event};

/// The OTLP sink's name (its metric label).
const SINK: &str = "soak";
/// The longest wait for the final drain, and for a daemon to exit after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);
/// The writer's pacing slice.
const TICK: Duration = Duration::from_millis(10);

/// Soak mode's options (`cargo bench --bench e2e -- --soak-minutes 30 ...`).
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Run the soak test for this many minutes (fractions allowed) instead of measuring
    /// throughput.
    #[arg(long)]
    pub soak_minutes: Option<f64>,
    /// Events per second the soak writes (half requests, half responses).
    #[arg(long, default_value_t = 2000)]
    pub soak_rate: u64,
    /// Minutes between two SIGKILLs of the daemon (each followed by a restart).
    #[arg(long, default_value_t = 5.0)]
    pub soak_kill_every: f64,
    /// Minutes between the starts of two backend outages.
    #[arg(long, default_value_t = 3.0)]
    pub soak_outage_every: f64,
    /// How long each backend outage lasts, in seconds.
    #[arg(long, default_value_t = 30)]
    pub soak_outage_secs: u64,
    /// Percent of the backend's requests answered 503 outside outages.
    #[arg(long, default_value_t = 1.0)]
    pub soak_fail_percent: f64,
    /// Seconds between two samples of RSS, open files and the queue.
    #[arg(long, default_value_t = 10)]
    pub soak_sample_secs: u64,
}

/// Runs the soak test for `minutes` and prints its report.
pub fn run(args: &SoakArgs, minutes: f64) -> Result<()> {
    ensure!(minutes > 0.0, "--soak-minutes must be positive");
    ensure!(
        args.soak_rate >= 2,
        "--soak-rate must be at least 2 events/s"
    );
    let duration = Duration::from_secs_f64(minutes * 60.0);
    let kill_every = Duration::from_secs_f64(args.soak_kill_every * 60.0);
    let outage_every = Duration::from_secs_f64(args.soak_outage_every * 60.0);
    let outage_length = Duration::from_secs(args.soak_outage_secs);
    ensure!(
        outage_length < outage_every,
        "an outage must end before the next begins"
    );
    let backend = Backend::start(args.soak_fail_percent)?;
    eprintln!(
        "soak: {minutes} min at {} events/s; backend {} fails {}% of requests and is out for \
         {} s every {:.1} min; SIGKILL every {:.1} min",
        args.soak_rate,
        backend.addr,
        args.soak_fail_percent,
        args.soak_outage_secs,
        args.soak_outage_every,
        args.soak_kill_every
    );

    let mut daemon = Options::default()
        .stdout(Stdout::Pipe)
        .start(|dir| config(dir, backend.addr));
    let committed: Ids = Ids::default();
    let mut witnesses = vec![read_ids(daemon.take_stdout(), committed.clone())];
    let writer = Writer::start(daemon.socket().to_owned(), args.soak_rate);

    let start = Instant::now();
    let mut run = 1;
    let mut samples = Vec::new();
    let mut next_sample = Duration::ZERO;
    let mut next_kill = kill_every;
    let mut kills = Vec::new();
    let mut outages = 0;
    let mut dropped = 0.0;
    while start.elapsed() < duration {
        let now = start.elapsed();
        let in_outage = now.as_nanos() % outage_every.as_nanos() < outage_length.as_nanos()
            && now >= outage_every;
        if in_outage != backend.state.outage.load(Ordering::SeqCst) {
            backend.state.outage.store(in_outage, Ordering::SeqCst);
            if in_outage {
                outages += 1;
            }
            eprintln!(
                "soak: {:>6.1} s backend {}",
                now.as_secs_f64(),
                if in_outage { "down" } else { "up" }
            );
        }
        if now >= next_kill {
            // The queue's drop counter dies with the process: read it first.
            dropped += dropped_spans(&daemon);
            let down = Instant::now();
            daemon.sigkill();
            daemon.restart();
            witnesses.push(read_ids(daemon.take_stdout(), committed.clone()));
            kills.push(down.elapsed());
            run += 1;
            next_kill += kill_every;
            eprintln!(
                "soak: {:>6.1} s SIGKILL, restarted in {:.2} s (run {run})",
                now.as_secs_f64(),
                down.elapsed().as_secs_f64()
            );
        }
        if now >= next_sample {
            if let Some(sample) = Sample::take(&daemon, run, now) {
                eprintln!("soak: {sample}");
                samples.push(sample);
            }
            next_sample += Duration::from_secs(args.soak_sample_secs.max(1));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    let traffic = writer.stop();
    backend.state.outage.store(false, Ordering::SeqCst);
    eprintln!("soak: traffic stopped; draining");
    let drained_in = drain(&daemon)?;
    let end = Sample::take(&daemon, run, start.elapsed());
    dropped += dropped_spans(&daemon);
    let status = {
        daemon.sigterm();
        daemon.wait_exit(DRAIN_TIMEOUT)
    };
    for witness in witnesses {
        witness
            .join()
            .map_err(|_| anyhow::anyhow!("a stdout reader panicked"))?;
    }
    let report = Report {
        minutes,
        rate: args.soak_rate,
        traffic,
        committed: committed.snapshot(),
        delivered: backend.state.delivered.lock().unwrap().clone(),
        backend_requests: backend.state.requests.load(Ordering::SeqCst),
        backend_refused: backend.state.refused.load(Ordering::SeqCst),
        outages,
        kills,
        samples: samples.into_iter().chain(end).collect(),
        drained_in,
        dropped,
        clean_exit: status.success(),
    };
    report.print();
    ensure!(
        report.lost() == 0 && report.dropped == 0.0,
        "{} committed spans never reached the backend, {} dropped by the queue",
        report.lost(),
        report.dropped
    );
    ensure!(
        report.clean_exit,
        "the daemon exited with {status} after SIGTERM"
    );
    Ok(())
}

/// The daemon's config: one unix input, the stdout witness, the OTLP/HTTP sink.
fn config(dir: &Path, backend: SocketAddr) -> String {
    format!(
        "data_dir = {data}\n\n[[input]]\ntype = \"unix\"\nname = \"unix\"\npath = {socket}\n\n\
         [[sink]]\ntype = \"stdout\"\n\n\
         [[sink]]\ntype = \"otlp\"\nname = \"{SINK}\"\nprotocol = \"http/protobuf\"\n\
         endpoint = \"http://{backend}/v1/traces\"\nmax_retry_delay = \"5s\"\n\n\
         [metrics]\nlisten = \"127.0.0.1:0\"\n",
        data = toml_string(&dir.join("data")),
        socket = toml_string(&dir.join("auditspan.sock")),
    )
}

/// Waits until nothing waits in the correlator and both sinks have every committed span;
/// returns how long that took.
fn drain(daemon: &Daemon) -> Result<Duration> {
    let start = Instant::now();
    let done = poll_until(DRAIN_TIMEOUT, || {
        Metrics::scrape(daemon.metrics_addr()).is_ok_and(|m| {
            m.get("auditspan_correlator_pending", &[]) == 0.0
                && m.get("auditspan_sink_lag_spans", &[("sink", SINK)]) == 0.0
                && m.get("auditspan_sink_lag_spans", &[("sink", "stdout")]) == 0.0
        })
    });
    if !done {
        bail!(
            "the queue did not drain within {DRAIN_TIMEOUT:?}\n{}",
            daemon.stderr_tail()
        );
    }
    Ok(start.elapsed())
}

/// `auditspan_queue_dropped_spans_total` of the running daemon (0 when it cannot be read).
fn dropped_spans(daemon: &Daemon) -> f64 {
    Metrics::scrape(daemon.metrics_addr())
        .map(|m| m.get("auditspan_queue_dropped_spans_total", &[]))
        .unwrap_or(0.0)
}

/// The pair number in a request id written by [`Writer`] (`support::request_id`).
fn pair_number(id: &str) -> Option<u64> {
    u64::from_str_radix(id.rsplit('-').next()?, 16).ok()
}

/// Request ids seen, with how many times each was seen.
#[derive(Clone, Default)]
struct Ids(Arc<Mutex<HashMap<u64, u32>>>);

impl Ids {
    fn add(&self, n: u64) {
        *self.0.lock().unwrap().entry(n).or_default() += 1;
    }

    fn snapshot(&self) -> HashMap<u64, u32> {
        self.0.lock().unwrap().clone()
    }
}

/// Reads one run's stdout to its end, adding the request id of every complete line (a
/// line cut by SIGKILL is left out: its span is written again after the restart).
fn read_ids(stdout: ChildStdout, ids: Ids) -> JoinHandle<()> {
    const MARKER: &str = "\"vault.request.id\":\"";
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if !line.ends_with('\n') => return,
                Ok(_) => {
                    let id = line
                        .find(MARKER)
                        .and_then(|at| line[at + MARKER.len()..].split('"').next())
                        .and_then(pair_number);
                    if let Some(n) = id {
                        ids.add(n);
                    }
                }
            }
        }
    })
}

/// What the writer did.
#[derive(Debug, Default, Clone, Copy)]
struct Traffic {
    /// Pairs due at the rate over the run.
    due: u64,
    /// Written whole.
    sent: u64,
    /// In a write that failed part way (the daemon died under it).
    torn: u64,
    /// Not written: the daemon was down.
    skipped: u64,
}

/// Writes pairs at a fixed rate on its own thread until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Traffic>,
}

impl Writer {
    fn start(socket: PathBuf, rate: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let pairs_per_sec = rate as f64 / 2.0;
        let thread = std::thread::spawn(move || {
            let mut traffic = Traffic::default();
            let mut conn: Option<UnixStream> = None;
            let start = Instant::now();
            let mut buffer = String::new();
            while !stopping.load(Ordering::SeqCst) {
                let due = (start.elapsed().as_secs_f64() * pairs_per_sec) as u64;
                if due > traffic.due {
                    let pairs = traffic.due..due;
                    traffic.due = due;
                    if conn.is_none() {
                        conn = UnixStream::connect(&socket).ok();
                        if let Some(c) = &conn {
                            c.set_write_timeout(Some(Duration::from_secs(10))).ok();
                        }
                    }
                    match &mut conn {
                        None => traffic.skipped += pairs.end - pairs.start,
                        Some(c) => {
                            buffer.clear();
                            let now = jiff::Timestamp::now();
                            let at =
                                |ms: i64| (now + jiff::SignedDuration::from_millis(ms)).to_string();
                            for n in pairs.clone() {
                                let id = crate::support::request_id(n);
                                buffer += &Event::request(&id, 0).dated(&at(0)).line();
                                buffer += &Event::response(&id, 0).dated(&at(1)).line();
                            }
                            if c.write_all(buffer.as_bytes()).is_ok() {
                                traffic.sent += pairs.end - pairs.start;
                            } else {
                                traffic.torn += pairs.end - pairs.start;
                                conn = None;
                            }
                        }
                    }
                }
                std::thread::sleep(TICK);
            }
            traffic
        });
        Writer { stop, thread }
    }

    fn stop(self) -> Traffic {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// One sample of the daemon's resources and queue.
struct Sample {
    at: Duration,
    run: u32,
    rss_kib: u64,
    open_files: usize,
    queue_spans: f64,
    lag_backend: f64,
    lag_stdout: f64,
}

impl Sample {
    /// `None` while the daemon cannot be read (it is restarting).
    fn take(daemon: &Daemon, run: u32, at: Duration) -> Option<Sample> {
        let pid = daemon.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())?;
        let open_files = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
        let m = Metrics::scrape(daemon.metrics_addr()).ok()?;
        Some(Sample {
            at,
            run,
            rss_kib,
            open_files,
            queue_spans: m.get("auditspan_queue_spans", &[]),
            lag_backend: m.get("auditspan_sink_lag_spans", &[("sink", SINK)]),
            lag_stdout: m.get("auditspan_sink_lag_spans", &[("sink", "stdout")]),
        })
    }
}

impl std::fmt::Display for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6.0} s  run {:>2}  RSS {:>6.1} MiB  open files {:>3}  queue {:>7}  lag backend {:>7}  lag stdout {:>5}",
            self.at.as_secs_f64(),
            self.run,
            self.rss_kib as f64 / 1024.0,
            self.open_files,
            self.queue_spans,
            self.lag_backend,
            self.lag_stdout
        )
    }
}

struct Report {
    minutes: f64,
    rate: u64,
    traffic: Traffic,
    /// Ids on stdout (committed), with how often each appeared there.
    committed: HashMap<u64, u32>,
    /// Ids the backend acknowledged, with how often.
    delivered: HashMap<u64, u32>,
    backend_requests: u64,
    backend_refused: u64,
    outages: u32,
    /// How long each SIGKILL + restart took.
    kills: Vec<Duration>,
    samples: Vec<Sample>,
    drained_in: Duration,
    /// Spans the queue dropped (overflow): neither sink sees those, so they would escape
    /// the comparison; 0 with the default 1 GiB queue.
    dropped: f64,
    clean_exit: bool,
}

impl Report {
    /// Committed spans the backend never acknowledged.
    fn lost(&self) -> usize {
        self.committed
            .keys()
            .filter(|n| !self.delivered.contains_key(n))
            .count()
    }

    fn print(&self) {
        let extra = |ids: &HashMap<u64, u32>| ids.values().map(|c| u64::from(c - 1)).sum::<u64>();
        let t = self.traffic;
        println!();
        println!(
            "auditspan soak: {} min at {} events/s, {} SIGKILLs, {} backend outages",
            self.minutes,
            self.rate,
            self.kills.len(),
            self.outages
        );
        println!(
            "  pairs: {} due, {} written, {} in writes torn by a kill, {} not written (daemon down)",
            t.due, t.sent, t.torn, t.skipped
        );
        let not_committed = (0..t.due)
            .filter(|n| !self.committed.contains_key(n))
            .count() as u64;
        println!(
            "  committed (seen on the stdout sink): {} spans; {} pairs written or torn never committed (the kill -9 window: read, not yet committed, or in the socket buffer)",
            self.committed.len(),
            not_committed.saturating_sub(t.skipped)
        );
        println!(
            "  delivered to the backend: {} spans, {} duplicates (sent again after a kill); stdout duplicates {}",
            self.delivered.len(),
            extra(&self.delivered),
            extra(&self.committed)
        );
        println!(
            "  LOST (committed, never acknowledged by the backend): {}; dropped by the queue (overflow): {}",
            self.lost(),
            self.dropped
        );
        println!(
            "  backend: {} requests, {} answered 503; final drain {:.1} s; SIGTERM exit {}",
            self.backend_requests,
            self.backend_refused,
            self.drained_in.as_secs_f64(),
            if self.clean_exit { "0" } else { "NOT 0" }
        );
        if !self.kills.is_empty() {
            let max = self.kills.iter().max().copied().unwrap_or_default();
            println!(
                "  kill -9 + restart: at most {:.2} s until the socket accepted again",
                max.as_secs_f64()
            );
        }
        println!("  per run of the daemon (RSS and open files must stay flat):");
        let mut runs: Vec<u32> = self.samples.iter().map(|s| s.run).collect();
        runs.dedup();
        for run in runs {
            let of_run: Vec<&Sample> = self.samples.iter().filter(|s| s.run == run).collect();
            let (Some(first), Some(last)) = (of_run.first(), of_run.last()) else {
                continue;
            };
            let max_rss = of_run.iter().map(|s| s.rss_kib).max().unwrap_or(0);
            let (min_fd, max_fd) = of_run.iter().fold((usize::MAX, 0), |(lo, hi), s| {
                (lo.min(s.open_files), hi.max(s.open_files))
            });
            println!(
                "    run {run:>2}: {:>5.0}–{:>5.0} s, RSS {:.1} → {:.1} MiB (max {:.1}), open files {min_fd}–{max_fd}, {} samples",
                first.at.as_secs_f64(),
                last.at.as_secs_f64(),
                first.rss_kib as f64 / 1024.0,
                last.rss_kib as f64 / 1024.0,
                max_rss as f64 / 1024.0,
                of_run.len()
            );
        }
        println!("  samples:");
        for sample in &self.samples {
            println!("    {sample}");
        }
    }
}

/// The soak's backend: OTLP/HTTP on loopback, recording what it acknowledges.
struct Backend {
    addr: SocketAddr,
    state: Arc<BackendState>,
}

struct BackendState {
    /// Every request is answered 503 while set.
    outage: AtomicBool,
    /// Requests answered 503 outside outages, in ten-thousandths.
    fail_per_10k: u64,
    requests: AtomicU64,
    refused: AtomicU64,
    /// Pair numbers of the spans of every acknowledged request, with how often.
    delivered: Mutex<HashMap<u64, u32>>,
}

impl Backend {
    fn start(fail_percent: f64) -> Result<Backend> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the backend")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(BackendState {
            outage: AtomicBool::new(false),
            fail_per_10k: (fail_percent * 100.0).round() as u64,
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            delivered: Mutex::new(HashMap::new()),
        });
        let served = Arc::clone(&state);
        std::thread::spawn(move || -> Result<()> {
            actix_rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(web::Data::from(Arc::clone(&served)))
                        .app_data(web::PayloadConfig::new(64 << 20))
                        .default_service(web::to(answer))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)?
                .run()
                .await?;
                Ok(())
            })
        });
        Ok(Backend { addr, state })
    }
}

/// 503 during an outage and for `fail_per_10k` of the requests (spread evenly by a hash of
/// the request's number); otherwise decode, record, 200.
async fn answer(state: web::Data<BackendState>, body: web::Bytes) -> HttpResponse {
    let n = state.requests.fetch_add(1, Ordering::SeqCst);
    let roll = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    if state.outage.load(Ordering::SeqCst) || roll % 10_000 < state.fail_per_10k {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return HttpResponse::ServiceUnavailable().finish();
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body.as_ref()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut delivered = state.delivered.lock().unwrap();
    for span in request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
    {
        let id = span
            .attributes
            .iter()
            .find(|a| a.key == "vault.request.id")
            .and_then(|a| a.value.as_ref()?.value.as_ref());
        if let Some(AnyValue::StringValue(id)) = id
            && let Some(n) = pair_number(id)
        {
            *delivered.entry(n).or_default() += 1;
        }
    }
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

//! `auditspan-bench`: end-to-end throughput of the real daemon, measured from outside.
//!
//! What it measures: how fast a release `auditspan` turns a realistic audit stream arriving
//! on its unix socket into spans (stdout sink, to `/dev/null`), its peak memory, and how
//! that compares with the cost of merely reading the same bytes from the same sockets.
//!
//! How:
//! 1. The load is `shared/tools/gen_audit.py` output (`--pairs` pairs, seed 7), or any
//!    audit log given with `--load`. It is read into memory and dealt round-robin by line
//!    onto `--connections` buffers (the correlator pairs across the connections of one
//!    input, as it must when Vault reconnects). The expected counts come from the file
//!    itself: every line is one received event, every distinct `request.id` one span.
//! 2. Baseline: an in-process reader accepts the same number of unix-socket connections
//!    and reads and discards; the writers send the same buffers. Time runs from the first
//!    byte written to the last byte read.
//! 3. The daemon (the `auditspan` beside this executable) starts with a temporary config:
//!    one unix input, its data dir in a temporary directory, metrics on an ephemeral port
//!    (learnt from its `Serving metrics. addr=` log line). The writers send as fast as the
//!    socket takes it; `/metrics` is polled until `auditspan_events_received_total` and
//!    the sum of `auditspan_spans_created_total` reach the expected counts. Time runs from
//!    the first byte written to the first scrape that shows everything; the poll interval
//!    (20 ms) bounds the error.
//! 4. Peak RSS is `VmHWM` from `/proc/<pid>/status`; then the daemon gets SIGTERM and must
//!    exit 0.
//!
//! Run: `cargo run --release --bin auditspan-bench -- [--pairs N] [--connections N]
//! [--load FILE]`. When run through cargo it first builds the `auditspan` binary of the same
//! profile, so the numbers are never those of a stale daemon.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::Deserialize;

/// How often `/metrics` is polled while the daemon catches up.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What the daemon logs once its metrics endpoint is bound (followed by `IP:PORT`).
const METRICS_LOG_MARKER: &str = "Serving metrics. addr=";

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
    /// The daemon to measure (default: `auditspan` beside this executable).
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Give up when the daemon has not produced every span within this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.connections > 0, "--connections must be at least 1");
    let work = TempDir::new()?;

    let load_path = match &args.load {
        Some(path) => path.clone(),
        None => generate_load(args.pairs, &work.path.join("load.jsonl"))?,
    };
    let load = Load::read(&load_path, args.connections)?;
    eprintln!(
        "load: {} lines, {:.1} MB, {} expected spans, {} connections",
        load.lines,
        mb(load.bytes),
        load.expected_spans,
        args.connections
    );

    let baseline = measure_baseline(&load, &work.path.join("baseline.sock"))?;
    let daemon_bin = daemon_binary(args.daemon.as_deref())?;
    let daemon = measure_daemon(
        &daemon_bin,
        &load,
        &work.path,
        Duration::from_secs(args.timeout_secs),
    )?;
    print_report(&load_path, &load, &baseline, &daemon);
    Ok(())
}

/// Runs `gen_audit.py` (from the `shared/` folder beside the repository) into `out`.
fn generate_load(pairs: u64, out: &Path) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/gen_audit.py");
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
}

/// The few fields of an audit event that decide whether it makes a span.
#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(borrow, default)]
    request: Option<RequestProbe<'a>>,
}

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
        let mut ids = HashSet::new();
        let mut lines = 0u64;
        for (i, line) in data.split_inclusive(|b| *b == b'\n').enumerate() {
            per_connection[i % connections].extend_from_slice(line);
            lines += 1;
            // A line that is not a valid event makes no span; the daemon counts it too.
            let Ok(event) = serde_json::from_slice::<EventProbe>(line) else {
                continue;
            };
            if let Some(RequestProbe { id: Some(id), path }) = event.request
                && path.as_deref() != Some("sys/audit/test")
                && !id.is_empty()
            {
                ids.insert(id.into_owned());
            }
        }
        ensure!(lines > 0, "{} is empty", path.display());
        // A stream must end in a newline, or its last line is never framed.
        for buffer in &mut per_connection {
            if buffer.last().is_some_and(|b| *b != b'\n') {
                buffer.push(b'\n');
            }
        }
        Ok(Load {
            per_connection,
            lines,
            bytes: data.len() as u64,
            expected_spans: ids.len() as u64,
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
                    stream.write_all(buffer).context("writing to the socket")?;
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

/// The `auditspan` binary to measure. When this bench runs through `cargo run`, cargo
/// builds only the bench, so build the daemon of the same profile first.
fn daemon_binary(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let path = exe.with_file_name("auditspan");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--bin", "auditspan", "--manifest-path"]);
        build.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build.status().context("running cargo build")?;
        ensure!(status.success(), "building auditspan failed: {status}");
    }
    ensure!(
        path.is_file(),
        "{} not found; build it with `cargo build --release`",
        path.display()
    );
    if cfg!(debug_assertions) {
        eprintln!("warning: a debug build; use `cargo run --release` for meaningful numbers");
    }
    Ok(path)
}

struct DaemonResult {
    elapsed: Duration,
    writers_done: Duration,
    peak_rss_kib: u64,
    /// CPU time the daemon used (user + system), start-up included.
    cpu: Duration,
    outcomes: Vec<(String, f64)>,
    invalid: f64,
    ignored: f64,
}

/// Starts the daemon, pushes the load through it and waits for every span.
fn measure_daemon(bin: &Path, load: &Load, work: &Path, timeout: Duration) -> Result<DaemonResult> {
    let socket = work.join("auditspan.sock");
    let config = work.join("auditspan.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {data}\n\n[[input]]\ntype = \"unix\"\nname = \"unix\"\npath = {socket}\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            data = toml_string(&work.join("data")),
            socket = toml_string(&socket),
        ),
    )?;
    let mut daemon = DaemonProcess::start(bin, &config)?;
    let metrics_addr = daemon.wait_for_metrics_addr(Duration::from_secs(60))?;
    let connect = || -> Result<UnixStream> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match UnixStream::connect(&socket) {
                Ok(stream) => return Ok(stream),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e).context(format!("connecting to {}", socket.display()));
                }
                Err(_) => std::thread::sleep(POLL_INTERVAL),
            }
        }
    };
    // Wait until the socket accepts before the clock starts (the probe is an empty stream).
    drop(connect()?);

    let start = Instant::now();
    write_all_connections(load, connect)?;
    let writers_done = start.elapsed();

    let expected_received = load.lines as f64;
    let expected_spans = load.expected_spans as f64;
    let (elapsed, scrape) = loop {
        let scrape = Scrape::get(metrics_addr)?;
        let received = scrape.sum("auditspan_events_received_total");
        let spans = scrape.sum("auditspan_spans_created_total");
        if received >= expected_received && spans >= expected_spans {
            break (start.elapsed(), scrape);
        }
        if start.elapsed() > timeout {
            bail!(
                "after {timeout:?}: {received} of {expected_received} events received, {spans} \
                 of {expected_spans} spans\n{}",
                daemon.stderr_tail()
            );
        }
        if let Some(status) = daemon.child.try_wait()? {
            bail!("the daemon exited with {status}\n{}", daemon.stderr_tail());
        }
        std::thread::sleep(POLL_INTERVAL);
    };
    let peak_rss_kib = vm_hwm_kib(daemon.child.id())?;
    let cpu = cpu_time(daemon.child.id())?;

    let status = daemon.stop(Duration::from_secs(60))?;
    ensure!(
        status.success(),
        "the daemon exited with {status} after SIGTERM"
    );
    Ok(DaemonResult {
        elapsed,
        writers_done,
        peak_rss_kib,
        cpu,
        outcomes: {
            let mut outcomes = scrape.by_label("auditspan_spans_created_total", "outcome");
            outcomes.sort_by(|a, b| a.0.cmp(&b.0));
            outcomes
        },
        invalid: scrape.sum("auditspan_events_invalid_total"),
        ignored: scrape.sum("auditspan_events_ignored_total"),
    })
}

/// The daemon child, killed on drop (an error half-way must not leave it running).
struct DaemonProcess {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl DaemonProcess {
    fn start(bin: &Path, config: &Path) -> Result<DaemonProcess> {
        let mut child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stderr.take().context("the daemon's stderr pipe")?;
        let lines = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        Ok(DaemonProcess { child, stderr })
    }

    fn wait_for_metrics_addr(&mut self, timeout: Duration) -> Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .stderr
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find_map(|line| {
                    let at = line.find(METRICS_LOG_MARKER)? + METRICS_LOG_MARKER.len();
                    line[at..].split_whitespace().next().map(str::to_owned)
                });
            if let Some(addr) = found {
                return addr
                    .parse()
                    .with_context(|| format!("metrics address {addr:?}"));
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("the daemon exited with {status}\n{}", self.stderr_tail());
            }
            ensure!(
                Instant::now() < deadline,
                "no metrics address logged\n{}",
                self.stderr_tail()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn stop(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        kill(
            Pid::from_raw(i32::try_from(self.child.id())?),
            Signal::SIGTERM,
        )?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(
                Instant::now() < deadline,
                "no exit after SIGTERM\n{}",
                self.stderr_tail()
            );
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        // Already exited in the normal case; errors mean exactly that.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// One `/metrics` scrape: (name, raw label text, value) per sample.
struct Scrape(Vec<(String, String, f64)>);

impl Scrape {
    /// GET /metrics over a plain HTTP/1.0 connection: the bench binary cannot use the
    /// test-only HTTP client, and one request needs no more.
    fn get(addr: SocketAddr) -> Result<Scrape> {
        let mut stream = TcpStream::connect(addr).context("connecting to /metrics")?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: auditspan\r\n\r\n")?;
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .context("reading /metrics")?;
        let (head, body) = response
            .split_once("\r\n\r\n")
            .context("malformed HTTP response")?;
        ensure!(
            head.split_whitespace().nth(1) == Some("200"),
            "/metrics answered {head}"
        );
        let samples = body
            .lines()
            .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let value: f64 = value.parse().ok()?;
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, labels.trim_end_matches('}')),
                    None => (series, ""),
                };
                Some((name.to_owned(), labels.to_owned(), value))
            })
            .collect();
        Ok(Scrape(samples))
    }

    fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    /// (value of `label`, sample) for every sample of `name`.
    fn by_label(&self, name: &str, label: &str) -> Vec<(String, f64)> {
        let prefix = format!("{label}=\"");
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, labels, value)| {
                let text = labels
                    .split(',')
                    .find_map(|pair| pair.strip_prefix(&prefix))
                    .map(|v| v.trim_end_matches('"').to_owned())
                    .unwrap_or_default();
                (text, *value)
            })
            .collect()
    }
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
    println!("auditspan-bench: {}", path.display());
    println!(
        "  {} lines, {:.1} MB, {} expected spans, {} unix connections",
        load.lines,
        mb(load.bytes),
        load.expected_spans,
        load.per_connection.len()
    );
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
}

/// `path` as a quoted TOML string.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// A temporary directory removed on drop (`tempfile` is a test-only dependency).
struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("auditspan-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir { path })
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover directory in /tmp is harmless.
        std::fs::remove_dir_all(&self.path).ok();
    }
}

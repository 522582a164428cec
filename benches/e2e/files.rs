//! `--files ROUNDS`: the file inputs (issue #12) against the unix socket, on the same load.
//!
//! Throughput: the load (`--pairs`, in one stream: the per-connection buffers joined, so
//! both events of a pair stay in order) goes through one daemon per input kind, stdout to
//! `/dev/null`:
//! - `unix x1`: one unix-socket connection (one audit device's socket), written 128 KiB
//!   at a time; `unix x1 (one write)`: the same with the whole load in one `write_all`,
//!   as the main bench sends it;
//! - `unix xN`: `--connections` connections, as the main bench sends it;
//! - `file`: appended to the followed file as fast as the disk cache takes it, the daemon
//!   tailing it as it grows;
//! - `fifo`: written into the named pipe the daemon owns.
//!
//! The single-stream writers (unix x1, file, fifo) write 128 KiB at a time, as `cat` does.
//!
//! Time runs from the first byte written to the first scrape showing every line received
//! and every pair made (20 ms polls); CPU is the daemon's user + system time over the same
//! interval (start-up excluded). Each round runs every kind once, in an order rotated per
//! round (others build on this machine too: alternating spreads their noise); the report
//! gives each kind's median and range.
//!
//! Latency: then, per kind and round, a fresh daemon whose stdout the bench reads gets
//! [`LATENCY_PAIRS`] pairs one at a time ([`LATENCY_GAP`] apart); each pair's latency runs
//! from the write of its response line to its span's line on stdout, which the sink
//! writes only after the commit holding the span was fsynced: write → committed, plus the
//! sink's pick-up. The report gives p50 and p99 (median over rounds).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::support::{Daemon, Options, Stdout, toml_string};
use super::{Load, cpu_time, median, pairs_done, stop, wait_for, write_all_connections};

/// Bytes per write of the single-stream writers (unix x1, file, fifo), as `cat` writes.
/// (One write of the whole load into a pipe ran at a quarter of the speed: the kernel
/// then wakes the reader far less often.)
const WRITE_BYTES: usize = 128 * 1024;

/// Pairs of one latency run.
const LATENCY_PAIRS: u64 = 200;
/// Pause between two pairs of a latency run (load shaping: one pair in flight at a time).
const LATENCY_GAP: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unix1,
    /// One connection, the whole load in one `write_all` (as the main bench sends it).
    Unix1Whole,
    UnixN,
    File,
    Fifo,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Unix1,
        Kind::Unix1Whole,
        Kind::UnixN,
        Kind::File,
        Kind::Fifo,
    ];

    fn name(self, connections: usize) -> String {
        match self {
            Kind::Unix1 => "unix x1".to_owned(),
            Kind::Unix1Whole => "unix x1 (one write)".to_owned(),
            Kind::UnixN => format!("unix x{connections}"),
            Kind::File => "file".to_owned(),
            Kind::Fifo => "fifo".to_owned(),
        }
    }

    fn input(self, dir: &std::path::Path) -> String {
        match self {
            Kind::Unix1 | Kind::Unix1Whole | Kind::UnixN => format!(
                "[[input]]\ntype = \"unix\"\npath = {}\n",
                toml_string(&dir.join("auditspan.sock"))
            ),
            Kind::File => format!(
                "[[input]]\ntype = \"file\"\npath = {}\n",
                toml_string(&dir.join("audit.log"))
            ),
            Kind::Fifo => format!(
                "[[input]]\ntype = \"fifo\"\npath = {}\n",
                toml_string(&dir.join("audit.fifo"))
            ),
        }
    }
}

fn start(load: &Load, kind: Kind, stdout: Stdout) -> Daemon {
    let correlate = match &load.pair_timeout {
        Some(t) => format!("\n[correlate]\npair_timeout = \"{t}\"\n"),
        None => String::new(),
    };
    Options::default().stdout(stdout).start(|dir| {
        format!(
            "data_dir = {data}\n\n{input}\n{sink}\n[metrics]\nlisten = \"127.0.0.1:0\"\n{correlate}",
            data = toml_string(&dir.join("data")),
            input = kind.input(dir),
            sink = load.sink_config,
        )
    })
}

/// Writes `bytes` into the daemon's input of `kind` (the unix xN kind deals the load as
/// the main bench does).
fn write(load: &Load, daemon: &Daemon, kind: Kind, bytes: &[u8]) -> Result<()> {
    match kind {
        Kind::Unix1 => {
            let mut conn = daemon.connect();
            for chunk in bytes.chunks(WRITE_BYTES) {
                conn.write_all(chunk).context("writing to the socket")?;
            }
            conn.shutdown(std::net::Shutdown::Write)?;
        }
        Kind::Unix1Whole => {
            let mut conn = daemon.connect();
            conn.write_all(bytes).context("writing to the socket")?;
            conn.shutdown(std::net::Shutdown::Write)?;
        }
        Kind::UnixN => write_all_connections(load, || Ok(daemon.connect()))?,
        Kind::File => {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(daemon.dir().join("audit.log"))?;
            for chunk in bytes.chunks(WRITE_BYTES) {
                file.write_all(chunk)?;
            }
        }
        Kind::Fifo => {
            let mut fifo = OpenOptions::new()
                .write(true)
                .open(daemon.dir().join("audit.fifo"))?;
            for chunk in bytes.chunks(WRITE_BYTES) {
                fifo.write_all(chunk)?;
            }
        }
    }
    Ok(())
}

struct Run {
    kind: Kind,
    elapsed: Duration,
    cpu: Duration,
}

fn throughput(load: &Load, kind: Kind, all: &[u8], timeout: Duration) -> Result<Run> {
    let mut daemon = start(load, kind, Stdout::Null);
    let cpu_before = cpu_time(daemon.pid())?;
    let start = Instant::now();
    write(load, &daemon, kind, all)?;
    let (elapsed, _) = wait_for(&daemon, start, timeout, "every pair", |s| {
        pairs_done(s, load)
    });
    let cpu = cpu_time(daemon.pid())?.saturating_sub(cpu_before);
    stop(&mut daemon)?;
    Ok(Run { kind, elapsed, cpu })
}

/// Per pair: write → its span on stdout, in seconds, sorted.
fn latency(load: &Load, kind: Kind) -> Result<Vec<f64>> {
    let mut daemon = start(load, kind, Stdout::Pipe);
    let stdout = daemon.take_stdout();
    let (tx, rx) = mpsc::channel::<(String, Instant)>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let at = Instant::now();
            if let Some(i) = line.find("\"vault.request.id\":\"") {
                let rest = &line[i + 20..];
                let id = rest[..rest.find('"').unwrap_or(0)].to_owned();
                if tx.send((id, at)).is_err() {
                    break;
                }
            }
        }
    });
    let mut conn = match kind {
        Kind::Unix1 | Kind::Unix1Whole | Kind::UnixN => Some(daemon.connect()),
        _ => None,
    };
    let path = match kind {
        Kind::File => Some(daemon.dir().join("audit.log")),
        Kind::Fifo => Some(daemon.dir().join("audit.fifo")),
        _ => None,
    };
    let mut out: Box<dyn Write> = match (&mut conn, &path) {
        (Some(conn), _) => Box::new(conn.try_clone()?),
        (None, Some(path)) => Box::new(
            OpenOptions::new()
                .create(kind == Kind::File)
                .append(kind == Kind::File)
                .write(true)
                .open(path)?,
        ),
        _ => bail!("no input"),
    };
    let mut latencies = Vec::new();
    for n in 0..LATENCY_PAIRS {
        let id = super::support::request_id(1_000_000 + n);
        let request = super::support::Event::request(&id, 2 * n).line();
        let response = super::support::Event::response(&id, 2 * n + 1).line();
        out.write_all(request.as_bytes())?;
        out.write_all(response.as_bytes())?;
        let written = Instant::now();
        loop {
            let (seen, at) = rx
                .recv_timeout(Duration::from_secs(30))
                .context("a span did not come within 30 s")?;
            if seen == id {
                latencies.push((at - written).as_secs_f64());
                break;
            }
        }
        std::thread::sleep(LATENCY_GAP);
    }
    drop(out);
    drop(conn);
    stop(&mut daemon)?;
    reader.join().ok();
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `--files ROUNDS`.
pub fn measure(load: &Load, rounds: usize, timeout: Duration) -> Result<()> {
    let all: Vec<u8> = load.per_connection.concat();
    let connections = load.per_connection.len();
    let mut runs = Vec::new();
    let mut lat: Vec<(Kind, f64, f64)> = Vec::new();
    for round in 0..rounds {
        let mut order = Kind::ALL;
        order.rotate_left(round % Kind::ALL.len());
        for kind in order {
            let run = throughput(load, kind, &all, timeout)?;
            eprintln!(
                "round {}: {:<20} {:.2} s, {:.0} events/s, {:.2} µs CPU per event",
                round + 1,
                kind.name(connections),
                run.elapsed.as_secs_f64(),
                load.lines as f64 / run.elapsed.as_secs_f64(),
                run.cpu.as_secs_f64() * 1e6 / load.lines as f64
            );
            runs.push(run);
        }
        for kind in order {
            if matches!(kind, Kind::UnixN | Kind::Unix1Whole) {
                continue;
            }
            let l = latency(load, kind)?;
            let (p50, p99) = (quantile(&l, 0.5), quantile(&l, 0.99));
            eprintln!(
                "round {}: {:<20} write → span on stdout p50 {:.1} ms, p99 {:.1} ms",
                round + 1,
                kind.name(connections),
                p50 * 1e3,
                p99 * 1e3
            );
            lat.push((kind, p50, p99));
        }
    }
    println!();
    println!(
        "auditspan e2e bench --files: {} lines, {:.1} MB, {} paired spans, {rounds} rounds",
        load.lines,
        load.bytes as f64 / 1e6,
        load.expected_spans - load.unpaired()
    );
    println!(
        "  {:<20} {:>22} {:>24}",
        "input", "events/s median (range)", "CPU µs/event median (range)"
    );
    for kind in Kind::ALL {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| load.lines as f64 / r.elapsed.as_secs_f64())
            .collect();
        let cpus: Vec<f64> = runs
            .iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.cpu.as_secs_f64() * 1e6 / load.lines as f64)
            .collect();
        let range = |v: &[f64]| {
            (
                v.iter().copied().fold(f64::INFINITY, f64::min),
                v.iter().copied().fold(0.0, f64::max),
            )
        };
        let (rl, rh) = range(&rates);
        let (cl, ch) = range(&cpus);
        println!(
            "  {:<20} {:>8.0} ({:.0}–{:.0}) {:>10.2} ({:.2}–{:.2})",
            kind.name(connections),
            median(rates.clone()),
            rl,
            rh,
            median(cpus.clone()),
            cl,
            ch
        );
    }
    println!(
        "  latency, write of the response line → its span on stdout ({LATENCY_PAIRS} pairs, one at a time):"
    );
    for kind in [Kind::Unix1, Kind::File, Kind::Fifo] {
        let p50: Vec<f64> = lat.iter().filter(|l| l.0 == kind).map(|l| l.1).collect();
        let p99: Vec<f64> = lat.iter().filter(|l| l.0 == kind).map(|l| l.2).collect();
        println!(
            "  {:<20} p50 {:.1} ms, p99 {:.1} ms (medians over rounds)",
            kind.name(connections),
            median(p50) * 1e3,
            median(p99) * 1e3
        );
    }
    Ok(())
}

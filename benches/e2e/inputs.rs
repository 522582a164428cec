//! `--inputs ROUNDS` and `--bao-latency REQUESTS`: the network inputs (issue #11) against
//! the unix socket.
//!
//! `--inputs`: the same load (`--pairs`, dealt onto `--connections` senders by request id)
//! through one daemon per input type, each with that one input, stdout to `/dev/null`:
//! - stream inputs as fast as they take it: unix, tcp, syslog over TCP (each line framed
//!   as an octet-counted RFC 5424 message);
//! - datagram inputs at `--inputs-rate` events/s in all (UDP has no back-pressure: faster
//!   than the daemon reads, the kernel drops, which the report counts as lost), with a
//!   unix run at the same rate beside them: udp (one line per datagram) and syslog over
//!   UDP;
//! - http, one event per POST as OpenBao's http device sends them, from 16 keep-alive
//!   clients, with `ack = "commit"` and `ack = "received"`.
//!
//! Time runs from the first byte sent to the first scrape showing every line received
//! and every pair made (20 ms polls); CPU is the daemon's user + system time over the
//! same interval. Each round runs every configuration once, in an order rotated per round
//! (others build on this machine too: alternating spreads their noise); the report gives
//! each configuration's median and range.
//!
//! `--bao-latency N`: a real OpenBao dev server (`AUDITSPAN_BAO`, as the tests use it)
//! audits through one device at a time into one daemon: the socket device (unix), the
//! http device on an input with `ack = "commit"`, and on one with `ack = "received"`;
//! each round starts OpenBao once per device (rotated order), reads one kv secret N times
//! through the HTTP API (what `bao kv get` sends) and records every request's latency.
//! OpenBao also writes a file device (the test support always adds it), the same for all
//! three. The report gives p50 and p99 per device (median over rounds, and range), and
//! what the http device adds over the socket device.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use super::support::bao::{Bao, hcl_string, request};
use super::support::net::listen_addr;
use super::support::{Metrics, Options, Stdout, http_agent, poll_until, toml_string};
use super::{Load, cpu_time, pairs_done, stop, write_paced};

/// HTTP clients posting at once (OpenBao's http device posts from every request goroutine).
const HTTP_CLIENTS: usize = 16;
/// The bearer token of the bench's http inputs.
const TOKEN: &str = "bench-token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unix,
    Tcp,
    SyslogTcp,
    HttpCommit,
    HttpReceived,
    UnixPaced,
    Udp,
    SyslogUdp,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Unix,
        Kind::Tcp,
        Kind::SyslogTcp,
        Kind::HttpCommit,
        Kind::HttpReceived,
        Kind::UnixPaced,
        Kind::Udp,
        Kind::SyslogUdp,
    ];

    fn label(self, rate: u64) -> String {
        match self {
            Kind::Unix => "unix".into(),
            Kind::Tcp => "tcp".into(),
            Kind::SyslogTcp => "syslog tcp (octet-counted)".into(),
            Kind::HttpCommit => format!("http ack=commit, 1/post, {HTTP_CLIENTS} clients"),
            Kind::HttpReceived => format!("http ack=received, 1/post, {HTTP_CLIENTS} clients"),
            Kind::UnixPaced => format!("unix @ {rate}/s"),
            Kind::Udp => format!("udp @ {rate}/s"),
            Kind::SyslogUdp => format!("syslog udp @ {rate}/s"),
        }
    }

    /// The `[[input]]` of this kind, named `in`.
    fn input(self, dir: &Path) -> String {
        let any = "address = \"127.0.0.1:0\"";
        match self {
            Kind::Unix | Kind::UnixPaced => format!(
                "type = \"unix\"\npath = {}",
                toml_string(&dir.join("in.sock"))
            ),
            Kind::Tcp => format!("type = \"tcp\"\n{any}"),
            Kind::Udp => format!("type = \"udp\"\n{any}"),
            Kind::SyslogTcp => format!("type = \"syslog\"\n{any}\nprotocol = \"tcp\""),
            Kind::SyslogUdp => format!("type = \"syslog\"\n{any}\nprotocol = \"udp\""),
            Kind::HttpCommit => {
                format!(
                    "type = \"http\"\n{any}\nauth_token_env = \"BENCH_TOKEN\"\nack = \"commit\""
                )
            }
            Kind::HttpReceived => format!(
                "type = \"http\"\n{any}\nauth_token_env = \"BENCH_TOKEN\"\nack = \"received\""
            ),
        }
    }
}

/// One measured run.
struct Run {
    kind: Kind,
    elapsed: Duration,
    cpu: Duration,
    received: f64,
}

/// `--inputs ROUNDS`.
pub fn measure(
    load_path: &Path,
    load: &Load,
    rounds: usize,
    rate: u64,
    timeout: Duration,
) -> Result<()> {
    let http_load = Load::read(load_path, HTTP_CLIENTS)?;
    let mut runs: Vec<Run> = Vec::new();
    for round in 0..rounds {
        let mut order = Kind::ALL;
        order.rotate_left(round % Kind::ALL.len());
        for kind in order {
            let senders = if matches!(kind, Kind::HttpCommit | Kind::HttpReceived) {
                &http_load
            } else {
                load
            };
            let run = run(kind, senders, rate, timeout)?;
            eprintln!(
                "round {}: {:<40} {:>9.0} events/s {:>7.2} µs CPU/event{}",
                round + 1,
                kind.label(rate),
                run.received / run.elapsed.as_secs_f64(),
                run.cpu.as_secs_f64() * 1e6 / run.received.max(1.0),
                lost(load, &run)
            );
            runs.push(run);
        }
    }
    println!();
    println!(
        "auditspan e2e bench --inputs: {} lines ({:.0} bytes/line), {} senders ({HTTP_CLIENTS} for http), {rounds} rounds",
        load.lines,
        load.bytes as f64 / load.lines as f64,
        load.per_connection.len()
    );
    println!(
        "  {:<40} {:>26} {:>28}",
        "input", "events/s median (range)", "CPU µs/event median (range)"
    );
    for kind in Kind::ALL {
        let of: Vec<&Run> = runs.iter().filter(|r| r.kind == kind).collect();
        let rate_of = |r: &&Run| r.received / r.elapsed.as_secs_f64();
        let cpu_of = |r: &&Run| r.cpu.as_secs_f64() * 1e6 / r.received.max(1.0);
        let (rate_m, rate_lo, rate_hi) = spread(of.iter().map(rate_of).collect());
        let (cpu_m, cpu_lo, cpu_hi) = spread(of.iter().map(cpu_of).collect());
        println!(
            "  {:<40} {:>9.0} ({:>6.0}–{:<6.0}) {:>10.2} ({:.2}–{:.2}){}",
            kind.label(rate),
            rate_m,
            rate_lo,
            rate_hi,
            cpu_m,
            cpu_lo,
            cpu_hi,
            of.iter()
                .map(|r| lost(load, r))
                .find(|l| !l.is_empty())
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// ", N lost" when the run received fewer lines than the load has (datagrams dropped).
fn lost(load: &Load, run: &Run) -> String {
    let missing = load.lines as f64 - run.received;
    if missing > 0.0 {
        format!(", {missing:.0} lost")
    } else {
        String::new()
    }
}

/// Median, minimum and maximum.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let (min, max) = (values[0], values[values.len() - 1]);
    (crate::median(values), min, max)
}

fn run(kind: Kind, load: &Load, rate: u64, timeout: Duration) -> Result<Run> {
    let mut daemon = Options::default()
        .stdout(Stdout::Null)
        .env("BENCH_TOKEN", TOKEN)
        .start(|dir| {
            format!(
                "data_dir = {data}\n\n[[input]]\nname = \"in\"\n{input}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n",
                data = toml_string(&dir.join("data")),
                input = kind.input(dir),
            )
        });
    let socket = daemon.dir().join("in.sock");
    let addr = match kind {
        Kind::Unix | Kind::UnixPaced => None,
        _ => Some(listen_addr(&daemon, "in")),
    };
    if matches!(kind, Kind::Unix | Kind::UnixPaced) {
        ensure!(
            poll_until(Duration::from_secs(30), || UnixStream::connect(&socket)
                .is_ok()),
            "the unix input does not accept"
        );
    }
    // Framing is done before the clock starts.
    let buffers: Vec<Vec<u8>> = match kind {
        Kind::SyslogTcp => load
            .per_connection
            .iter()
            .map(|b| syslog_frames(b, true))
            .collect(),
        _ => load.per_connection.clone(),
    };
    let pid = daemon.pid();
    let cpu_before = cpu_time(pid)?;
    let start = Instant::now();
    let per_sender = (rate as f64 / buffers.len() as f64).max(1.0);
    let socket = &socket;
    let sent = std::thread::scope(|scope| -> Result<()> {
        let senders: Vec<_> = buffers
            .iter()
            .map(|buffer| {
                scope.spawn(move || -> Result<()> {
                    match kind {
                        Kind::Unix => write_closed(UnixStream::connect(socket)?, buffer),
                        Kind::UnixPaced => {
                            let mut stream = UnixStream::connect(socket)?;
                            write_paced(&mut stream, buffer, per_sender)
                        }
                        Kind::Tcp | Kind::SyslogTcp => {
                            write_closed(TcpStream::connect(addr.context("no address")?)?, buffer)
                        }
                        Kind::Udp | Kind::SyslogUdp => send_datagrams(
                            addr.context("no address")?,
                            buffer,
                            kind == Kind::SyslogUdp,
                            per_sender,
                        ),
                        Kind::HttpCommit | Kind::HttpReceived => {
                            post_lines(addr.context("no address")?, buffer)
                        }
                    }
                })
            })
            .collect();
        for sender in senders {
            match sender.join() {
                Ok(result) => result?,
                Err(_) => bail!("a sender panicked"),
            }
        }
        Ok(())
    });
    sent?;
    let sent_at = start.elapsed();
    // Done when every pair is made; datagrams may be lost, so also when the count has
    // stood still for 2 s after the senders finished.
    let mut last = (f64::NAN, Instant::now());
    let mut scrape = Metrics::default();
    let finished = poll_until(timeout, || {
        scrape = daemon.metrics();
        if pairs_done(&scrape, load) {
            return true;
        }
        let received = scrape.sum("auditspan_events_received_total");
        if received != last.0 {
            last = (received, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(2) && start.elapsed() > sent_at
    });
    ensure!(finished, "{kind:?}: not done within {timeout:?}");
    let elapsed = if pairs_done(&scrape, load) {
        start.elapsed()
    } else {
        last.1 - start
    };
    let cpu = cpu_time(pid)? - cpu_before;
    let received = scrape.sum("auditspan_events_received_total");
    stop(&mut daemon)?;
    Ok(Run {
        kind,
        elapsed,
        cpu,
        received,
    })
}

/// Writes `buffer` and closes the sending side.
fn write_closed<S: Write>(mut stream: S, buffer: &[u8]) -> Result<()> {
    stream.write_all(buffer).context("writing")?;
    Ok(())
}

/// Each line of `buffer` as an RFC 5424 message, octet-counted (`octet`) or bare.
fn syslog_frames(buffer: &[u8], octet: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(buffer.len() + buffer.len() / 8);
    for line in buffer.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let header = b"<110>1 2025-03-11T14:00:00Z bench bao - - - ";
        if octet {
            write!(out, "{} ", header.len() + line.len()).ok();
        }
        out.extend_from_slice(header);
        out.extend_from_slice(line);
        if !octet {
            out.push(b'\n');
        }
    }
    out
}

/// Each line as one datagram (a syslog message with `syslog`), at `per_sec`.
fn send_datagrams(
    addr: std::net::SocketAddr,
    buffer: &[u8],
    syslog: bool,
    per_sec: f64,
) -> Result<()> {
    const TICK: Duration = Duration::from_millis(10);
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(addr)?;
    let per_tick = (per_sec * TICK.as_secs_f64()).ceil().max(1.0) as usize;
    let start = Instant::now();
    let lines: Vec<&[u8]> = buffer
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for (tick, chunk) in lines.chunks(per_tick).enumerate() {
        for line in chunk {
            if syslog {
                socket.send(&syslog_frames(line, false))?;
            } else {
                socket.send(line)?;
            }
        }
        if let Some(wait) =
            (start + TICK * (tick as u32 + 1)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
    }
    Ok(())
}

/// POSTs each line of `buffer` as its own request, as OpenBao's http device does.
fn post_lines(addr: std::net::SocketAddr, buffer: &[u8]) -> Result<()> {
    let agent = http_agent();
    let url = format!("http://{addr}/v1/audit");
    for line in buffer.split_inclusive(|b| *b == b'\n') {
        let mut response = agent
            .post(&url)
            .header("Authorization", format!("Bearer {TOKEN}"))
            .send(line)
            .context("posting")?;
        // Read to its end, so that the connection is kept alive for the next post.
        response
            .body_mut()
            .read_to_string()
            .context("reading the answer")?;
        let status = response.status().as_u16();
        ensure!(status == 200 || status == 400, "answered {status}");
    }
    Ok(())
}

/// `--bao-latency N`.
pub fn measure_bao_latency(requests: usize, rounds: usize) -> Result<()> {
    let daemon = Options::default()
        .stdout(Stdout::Null)
        .env("BENCH_TOKEN", TOKEN)
        .start(|dir| {
            format!(
                "data_dir = {data}\n\n[[input]]\ntype = \"unix\"\nname = \"unix\"\npath = {sock}\n\n\
                 [[input]]\ntype = \"http\"\nname = \"commit\"\naddress = \"127.0.0.1:0\"\nauth_token_env = \"BENCH_TOKEN\"\n\n\
                 [[input]]\ntype = \"http\"\nname = \"received\"\naddress = \"127.0.0.1:0\"\nauth_token_env = \"BENCH_TOKEN\"\nack = \"received\"\n\n\
                 [metrics]\nlisten = \"127.0.0.1:0\"\n",
                data = toml_string(&dir.join("data")),
                sock = toml_string(&dir.join("audit.sock")),
            )
        });
    let http_device = |input: &str| {
        format!(
            "audit \"http\" \"auditspan\" {{\n  options {{\n    uri = {}\n    headers = {}\n  }}\n}}\n",
            hcl_string(&format!("http://{}/v1/audit", listen_addr(&daemon, input))),
            hcl_string(&format!("{{\"Authorization\": [\"Bearer {TOKEN}\"]}}")),
        )
    };
    let devices = [
        (
            "socket device (unix)",
            format!(
                "audit \"socket\" \"auditspan\" {{\n  options {{\n    address = {}\n    socket_type = \"unix\"\n  }}\n}}\n",
                hcl_string(daemon.socket().to_str().context("socket path")?)
            ),
        ),
        ("http device, ack = commit", http_device("commit")),
        ("http device, ack = received", http_device("received")),
    ];
    // Per device: (p50, p99) of each round, in ms.
    let mut results: Vec<Vec<(f64, f64)>> = vec![Vec::new(); devices.len()];
    for round in 0..rounds {
        for step in 0..devices.len() {
            let i = (step + round) % devices.len();
            let (label, device) = &devices[i];
            let dir = tempfile::tempdir()?;
            let mut bao = Bao::start(dir.path(), device);
            let agent = http_agent();
            let (status, _) = bao.root_request(
                "secret/data/bench",
                Some(json!({"data": {"user": "svc", "password": "x"}})),
            );
            ensure!(status == 200, "writing the secret: {status}");
            let mut latencies = Vec::with_capacity(requests);
            for n in 0..requests + 50 {
                let started = Instant::now();
                let (status, _) = request(
                    &agent,
                    bao.api(),
                    "secret/data/bench",
                    Some(&bao.root_token),
                    None,
                )
                .map_err(anyhow::Error::msg)?;
                ensure!(status == 200, "kv get answered {status}");
                // The first 50 warm up connections and caches.
                if n >= 50 {
                    latencies.push(started.elapsed().as_secs_f64() * 1e3);
                }
            }
            bao.stop();
            latencies.sort_by(f64::total_cmp);
            let q = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
            eprintln!(
                "round {}: {label:<28} p50 {:.2} ms, p99 {:.2} ms",
                round + 1,
                q(0.5),
                q(0.99)
            );
            results[i].push((q(0.5), q(0.99)));
        }
    }
    println!();
    println!(
        "auditspan e2e bench --bao-latency: OpenBao kv get, {requests} requests per device and round, {rounds} rounds"
    );
    println!(
        "  {:<30} {:>24} {:>24}",
        "device", "p50 ms median (range)", "p99 ms median (range)"
    );
    let mut medians = Vec::new();
    for ((label, _), rounds) in devices.iter().zip(&results) {
        let p50 = spread(rounds.iter().map(|r| r.0).collect());
        let p99 = spread(rounds.iter().map(|r| r.1).collect());
        println!(
            "  {label:<30} {:>8.2} ({:.2}–{:.2}) {:>12.2} ({:.2}–{:.2})",
            p50.0, p50.1, p50.2, p99.0, p99.1, p99.2
        );
        medians.push((p50.0, p99.0));
    }
    for (i, label) in [(1, "ack = commit"), (2, "ack = received")] {
        println!(
            "  http device, {label}, adds over the socket device: p50 {:+.2} ms, p99 {:+.2} ms",
            medians[i].0 - medians[0].0,
            medians[i].1 - medians[0].1
        );
    }
    drop(daemon);
    Ok(())
}

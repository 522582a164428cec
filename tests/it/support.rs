//! Test support: runs the real `auditspan` binary as a child process and observes it only
//! from the outside, as an operator would — spans on stdout, logs on stderr, `/metrics`, the
//! exit status and the files it leaves behind.
//!
//! - [`Daemon`] owns the child and a temporary directory holding its config (place sockets
//!   and `data_dir` there too: [`Daemon::start_with`] hands the directory to the config
//!   builder, and the child runs with it as its working directory). Dropping a `Daemon` kills
//!   the child, so a failing test never leaves one behind.
//! - [`Metrics`] is one scrape of `/metrics`, keyed by name and sorted labels.
//! - Every wait polls with a deadline ([`DEADLINE`]) and fails naming what it waited for,
//!   with the daemon's stderr tail; no test sleeps to synchronise.
//! - [`Daemon::pause_stdout`] stops reading the child's stdout, so the pipe fills and the
//!   stdout sink blocks in its write (a backend outage); [`Daemon::resume_stdout`] reads on.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// How long any single wait may take before the test fails. Generous on purpose: CI is a
/// busy 2-core machine that may be compiling or running other tests at the same time.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How much of the daemon's stderr a failure message quotes.
const STDERR_TAIL_LINES: usize = 40;

/// What the daemon logs once its metrics endpoint is bound (followed by `IP:PORT`).
const METRICS_LOG_MARKER: &str = "Serving metrics. addr=";

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// Lines a reader thread collected from one of the child's pipes.
type Lines = Arc<Mutex<Vec<String>>>;

/// Whether the stdout reader may read (`true`) or must wait (`false`), and the condition it
/// waits on.
type Gate = Arc<(Mutex<bool>, Condvar)>;

/// A running `auditspan run --config <dir>/auditspan.toml`.
pub struct Daemon {
    /// The child; in a mutex so that waits polling it can borrow `self` immutably.
    child: Mutex<Child>,
    /// Every stdout line of every run of this daemon (see [`Daemon::restart`]).
    stdout: Lines,
    /// Every stderr line of every run.
    stderr: Lines,
    /// Open unless a test paused reading stdout ([`Daemon::pause_stdout`]).
    stdout_gate: Gate,
    /// The unfinished last stdout line of each run that ended mid-line (a SIGKILL during a
    /// write); not in `stdout`.
    stdout_truncated: Lines,
    /// Index in `stderr` where the current run's lines start.
    run_stderr_start: usize,
    /// Threads copying the pipes into `stdout`/`stderr`; joined once the child has exited so
    /// that nothing it wrote is missed.
    readers: Vec<JoinHandle<()>>,
    /// The address the current run's metrics server is bound to, when metrics are enabled.
    metrics_addr: Option<SocketAddr>,
    /// Whether the config enables the metrics server (so start-up waits for its log line).
    metrics_enabled: bool,
    /// The unix sockets of the config's inputs, absolute.
    sockets: Vec<PathBuf>,
    config_path: PathBuf,
    /// Environment variables set on every run of the child (see [`Daemon::start_with_env`]).
    env: Vec<(String, String)>,
    /// Dropped last: holds the config, and whatever the test placed beside it.
    dir: TempDir,
}

impl Daemon {
    /// Starts the daemon with a fixed config (relative paths resolve in its temporary
    /// directory, which is its working directory).
    pub fn start(config_toml: &str) -> Daemon {
        Self::start_with(|_| config_toml.to_owned())
    }

    /// Starts the daemon with [`default_config`]: one unix input `unix` at `<dir>/audit.sock`,
    /// `data_dir` `<dir>/data`, metrics on an ephemeral port, stdout sink.
    pub fn start_default() -> Daemon {
        Self::start_with(default_config)
    }

    /// Starts the daemon with the config `config(dir)` returns, `dir` being the temporary
    /// directory this `Daemon` owns. Returns once the metrics server has logged its address
    /// (when enabled) and every unix input accepts connections.
    pub fn start_with(config: impl FnOnce(&Path) -> String) -> Daemon {
        Self::start_with_env(&[], config)
    }

    /// [`Daemon::start_with`], with `env` set on the child (on every run): the only way
    /// `AUDITSPAN_*` / `OTEL_*` variables reach it, since [`auditspan`] removes the test
    /// process's own.
    pub fn start_with_env(env: &[(&str, &str)], config: impl FnOnce(&Path) -> String) -> Daemon {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("auditspan-it-")
            .tempdir()
            .unwrap();
        let config_toml = config(dir.path());
        let config_path = dir.path().join("auditspan.toml");
        std::fs::write(&config_path, &config_toml).unwrap();
        let parsed: toml::Table = toml::from_str(&config_toml)
            .unwrap_or_else(|e| panic!("the test's config is not TOML: {e}\n{config_toml}"));

        let stdout = Lines::default();
        let stderr = Lines::default();
        let stdout_gate: Gate = Arc::new((Mutex::new(true), Condvar::new()));
        let stdout_truncated = Lines::default();
        let (child, readers) = spawn_child(
            &config_path,
            dir.path(),
            &env,
            &stdout,
            &stderr,
            &stdout_gate,
            &stdout_truncated,
        );
        let mut daemon = Daemon {
            child: Mutex::new(child),
            stdout,
            stderr,
            stdout_gate,
            stdout_truncated,
            run_stderr_start: 0,
            readers,
            metrics_addr: None,
            metrics_enabled: metrics_enabled(&parsed),
            sockets: unix_sockets(&parsed, dir.path()),
            config_path,
            env,
            dir,
        };
        daemon.wait_ready();
        daemon
    }

    /// The temporary directory holding the config (and the test's sockets and data).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config file the daemon runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The first unix input's socket.
    pub fn socket(&self) -> &Path {
        self.sockets.first().expect("the config has no unix input")
    }

    /// A new connection to the first unix input.
    pub fn connect(&self) -> UnixStream {
        UnixStream::connect(self.socket())
            .unwrap_or_else(|e| self.fail(&format!("connecting to {:?}: {e}", self.socket())))
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Every complete line printed on stdout so far, parsed as JSON (one span each). Panics
    /// naming the line if one is not JSON: stdout carries nothing but spans.
    pub fn spans(&self) -> Vec<Value> {
        let lines = self.stdout.lock().unwrap().clone();
        lines
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    self.fail(&format!("a stdout line is not JSON ({e}): {line}"))
                })
            })
            .collect()
    }

    /// Waits until at least `n` spans were printed and returns all of them.
    pub fn wait_for_spans(&self, n: usize) -> Vec<Value> {
        self.wait_until(DEADLINE, &format!("{n} spans on stdout"), || {
            self.stdout.lock().unwrap().len() >= n
        });
        self.spans()
    }

    /// How many complete lines were read from stdout so far (every run).
    pub fn stdout_count(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    /// Every complete stdout line so far (every run), as printed, without its newline.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The unfinished last line of every run killed in the middle of writing one (a pipe
    /// write is not atomic beyond `PIPE_BUF`); these are not in [`Daemon::spans`].
    pub fn truncated_stdout(&self) -> Vec<String> {
        self.stdout_truncated.lock().unwrap().clone()
    }

    /// Stops reading the child's stdout: no line is added to [`Daemon::spans`] until
    /// [`Daemon::resume_stdout`], the pipe fills, and then the daemon's stdout sink blocks
    /// in its write, as if its backend were down. [`Daemon::wait_exit`] (and so
    /// [`Daemon::restart`]) resumes reading, since a run's output must be read to its end.
    pub fn pause_stdout(&self) {
        self.set_stdout_gate(false);
    }

    /// Reads the child's stdout again after [`Daemon::pause_stdout`].
    pub fn resume_stdout(&self) {
        self.set_stdout_gate(true);
    }

    fn set_stdout_gate(&self, open: bool) {
        let (lock, changed) = &*self.stdout_gate;
        *lock.lock().unwrap() = open;
        changed.notify_all();
    }

    /// Everything the daemon wrote on stderr so far, one line per line.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The last [`STDERR_TAIL_LINES`] lines of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap();
        lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
    }

    /// The metrics server's address (current run).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .unwrap_or_else(|| self.fail("metrics are disabled in this test's config"))
    }

    /// Scrapes `/metrics` once.
    pub fn metrics(&self) -> Metrics {
        let url = format!("http://{}/metrics", self.metrics_addr());
        let body = http_agent()
            .get(&url)
            .call()
            .and_then(|mut response| response.body_mut().read_to_string())
            .unwrap_or_else(|e| self.fail(&format!("GET {url}: {e}")));
        Metrics::parse(&body)
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn sigterm(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Sends SIGKILL (a crash: nothing runs after it).
    pub fn sigkill(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.pid()).unwrap());
        kill(pid, signal).unwrap_or_else(|e| self.fail(&format!("kill({pid}, {signal}): {e}")));
    }

    /// Whether the child has exited, and how.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().unwrap()
    }

    /// Waits until the child exits and then until its stdout and stderr are read to the end,
    /// so that [`Daemon::spans`] and [`Daemon::stderr`] are complete afterwards.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let mut status = None;
        self.wait_until(deadline, "the daemon to exit", || {
            status = self.try_exit_status();
            status.is_some()
        });
        self.resume_stdout();
        for reader in std::mem::take(&mut self.readers) {
            reader.join().unwrap();
        }
        status.unwrap()
    }

    /// Stops the current run (SIGKILL if it is still running: call [`Daemon::sigterm`] and
    /// [`Daemon::wait_exit`] first for a graceful restart) and starts a new one with the same
    /// config and directory, so `data_dir` survives. `spans()` and `stderr()` keep the
    /// earlier runs' lines; `metrics()` is the new process's.
    pub fn restart(&mut self) {
        if self.try_exit_status().is_none() {
            self.sigkill();
        }
        self.wait_exit(DEADLINE);
        self.run_stderr_start = self.stderr.lock().unwrap().len();
        let (child, readers) = spawn_child(
            &self.config_path,
            self.dir.path(),
            &self.env,
            &self.stdout,
            &self.stderr,
            &self.stdout_gate,
            &self.stdout_truncated,
        );
        *self.child.lock().unwrap() = child;
        self.readers = readers;
        self.metrics_addr = None;
        self.wait_ready();
    }

    /// Polls `f` until it returns true; on timeout panics naming `what`, with the stderr tail.
    pub fn wait_until(&self, deadline: Duration, what: &str, f: impl FnMut() -> bool) {
        if !poll_until(deadline, f) {
            self.fail(&format!("timed out after {deadline:?} waiting for {what}"));
        }
    }

    /// Panics with `message` and the daemon's stderr tail.
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- auditspan stderr (last {STDERR_TAIL_LINES} lines) ---\n{}",
            self.stderr_tail()
        )
    }

    /// Waits for the metrics address line (when enabled) and for every unix input to accept.
    fn wait_ready(&mut self) {
        if self.metrics_enabled {
            let mut addr = None;
            self.wait_until(
                DEADLINE,
                "the metrics address in the daemon's stderr",
                || {
                    self.fail_if_exited();
                    addr = self.logged_metrics_addr();
                    addr.is_some()
                },
            );
            self.metrics_addr = addr;
        }
        for socket in &self.sockets {
            // A probe connection that closes at once is an empty stream to the daemon.
            self.wait_until(
                DEADLINE,
                &format!("{socket:?} to accept connections"),
                || {
                    self.fail_if_exited();
                    UnixStream::connect(socket).is_ok()
                },
            );
        }
    }

    /// The address in the current run's `Serving metrics. addr=…` line, once logged.
    fn logged_metrics_addr(&self) -> Option<SocketAddr> {
        let lines = self.stderr.lock().unwrap();
        lines[self.run_stderr_start..].iter().find_map(|line| {
            let rest = &line[line.find(METRICS_LOG_MARKER)? + METRICS_LOG_MARKER.len()..];
            let addr = rest.split_whitespace().next()?;
            Some(
                addr.parse()
                    .unwrap_or_else(|e| panic!("bad metrics address in {line:?}: {e}")),
            )
        })
    }

    /// Start-up waits give up at once when the daemon has died.
    fn fail_if_exited(&self) {
        if let Some(status) = self.try_exit_status() {
            // Let the readers catch the last lines, which usually say why.
            std::thread::sleep(Duration::from_millis(200));
            self.fail(&format!("the daemon exited during start-up with {status}"));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A test that failed half-way must not leave a daemon running; ignore errors, the
        // child may have exited already.
        if let Ok(mut child) = self.child.lock() {
            child.kill().ok();
            child.wait().ok();
        }
        // A paused stdout reader would otherwise wait forever.
        self.resume_stdout();
    }
}

/// Starts `auditspan run --config <config_path>` in `dir` with its pipes copied into
/// `stdout` (while `stdout_gate` is open; an unfinished last line into
/// `stdout_truncated`) and `stderr` by the returned threads; `env` is set on the child.
fn spawn_child(
    config_path: &Path,
    dir: &Path,
    env: &[(String, String)],
    stdout: &Lines,
    stderr: &Lines,
    stdout_gate: &Gate,
    stdout_truncated: &Lines,
) -> (Child, Vec<JoinHandle<()>>) {
    let mut command = auditspan(dir);
    command
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", env!("CARGO_BIN_EXE_auditspan")));
    let readers = vec![
        collect_lines(
            child.stdout.take().unwrap(),
            stdout.clone(),
            Some(stdout_gate.clone()),
            Some(stdout_truncated.clone()),
        ),
        collect_lines(child.stderr.take().unwrap(), stderr.clone(), None, None),
    ];
    (child, readers)
}

/// The `auditspan` binary, run in `dir`. The environment overrides the config file
/// (DESIGN: precedence), so the developer's own `AUDITSPAN_*` / `OTEL_*` settings are kept
/// out of every test.
pub fn auditspan(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_auditspan"));
    command.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("AUDITSPAN_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
}

/// The config every test can start from (see [`Daemon::start_default`]).
pub fn default_config(dir: &Path) -> String {
    format!(
        r#"data_dir = {data}

[[input]]
type = "unix"
name = "unix"
path = {socket}

[metrics]
listen = "127.0.0.1:0"

[correlate]
pair_timeout = "10s"
"#,
        data = toml_string(&dir.join("data")),
        socket = toml_string(&dir.join("audit.sock")),
    )
}

/// `path` as a quoted TOML string.
pub fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_str().unwrap().to_owned()).to_string()
}

/// The unix sockets the config's inputs listen on, resolved against `dir`. With no
/// `[[input]]` the daemon's default input is `./auditspan.sock`.
fn unix_sockets(config: &toml::Table, dir: &Path) -> Vec<PathBuf> {
    let Some(inputs) = config.get("input").and_then(|v| v.as_array()) else {
        return vec![dir.join("auditspan.sock")];
    };
    inputs
        .iter()
        .filter(|input| input.get("type").and_then(|t| t.as_str()) == Some("unix"))
        .map(|input| {
            let path = input
                .get("path")
                .and_then(|p| p.as_str())
                .unwrap_or("auditspan.sock");
            dir.join(path)
        })
        .collect()
}

/// Whether the config leaves the metrics server on (`listen = ""` turns it off).
fn metrics_enabled(config: &toml::Table) -> bool {
    let listen = config
        .get("metrics")
        .and_then(|m| m.get("listen"))
        .and_then(|l| l.as_str());
    listen != Some("")
}

/// Copies a pipe into `into` line by line until EOF (invalid UTF-8 is replaced, not lost).
/// With a `gate`, a line read is added only once the gate is open, and the next read waits
/// for that (so while the gate is closed, `into` does not grow and the pipe fills). With
/// `truncated`, a last line without its newline goes there instead of into `into`.
fn collect_lines(
    stream: impl Read + Send + 'static,
    into: Lines,
    gate: Option<Gate>,
    truncated: Option<Lines>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Some(gate) = &gate {
                        let (lock, changed) = &**gate;
                        drop(
                            changed
                                .wait_while(lock.lock().unwrap(), |open| !*open)
                                .unwrap(),
                        );
                    }
                    let complete = line.ends_with(b"\n");
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']).to_owned();
                    match &truncated {
                        Some(truncated) if !complete => truncated.lock().unwrap().push(text),
                        _ => into.lock().unwrap().push(text),
                    }
                }
            }
        }
    })
}

/// An HTTP client for scrapes and test traffic: bounded by a timeout, and 4xx/5xx are
/// responses to inspect, not errors.
pub fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns true (→ true) or `deadline` has passed
/// (→ false).
pub fn poll_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Polls `f` until it returns true; panics naming `what` on timeout. Use
/// [`Daemon::wait_until`] when a daemon is involved: its failure quotes the daemon's stderr.
pub fn wait_until(deadline: Duration, what: &str, f: impl FnMut() -> bool) {
    if !poll_until(deadline, f) {
        panic!("timed out after {deadline:?} waiting for {what}");
    }
}

/// One scrape of `/metrics` (Prometheus text format), keyed by metric name and sorted labels.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    samples: BTreeMap<(String, Labels), f64>,
}

impl Metrics {
    /// Parses the text exposition format. Panics naming the line on a malformed sample: a
    /// scrape that Prometheus would reject is a bug in the daemon.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (name, labels, value) = parse_sample(line)
                    .unwrap_or_else(|| panic!("malformed metrics line: {line:?}\n{text}"));
                ((name, labels), value)
            })
            .collect();
        Metrics { samples }
    }

    /// The sample with exactly these labels (in any order), if present.
    pub fn get_opt(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The sample with exactly these labels; 0 when absent (a counter that was never
    /// incremented is usually not exported at all).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get_opt(name, labels).unwrap_or(0.0)
    }

    /// The sum of every sample of `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_matching(name, &[])
    }

    /// The sum of the samples of `name` whose labels include all of `labels`.
    pub fn sum_matching(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, have), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Whether any sample of `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }
}

/// `name{k="v",...} value [timestamp]` → (name, sorted labels, value).
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_owned();
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()? {
                        (_, 'n') => value.push('\n'),
                        (_, escaped) => value.push(escaped),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            rest = &rest[end + 1..];
            labels.push((key, value));
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    labels.sort();
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scrape parser reads names, escaped label values in any order, and special values.
    #[test]
    fn metrics_parser_reads_the_text_format() {
        let metrics = Metrics::parse(
            "# TYPE auditspan_spans_created_total counter\n\
             auditspan_spans_created_total{outcome=\"paired\"} 7\n\
             auditspan_spans_created_total{outcome=\"response_missing\"} 2\n\
             auditspan_events_ignored_total{reason=\"audit_test\",input=\"unix\"} 1\n\
             odd{a=\"x\\\"y\\\\z\\n\"} +Inf\n\
             auditspan_correlator_pending 0 1712345678000\n",
        );
        assert_eq!(
            metrics.get("auditspan_spans_created_total", &[("outcome", "paired")]),
            7.0
        );
        assert_eq!(metrics.sum("auditspan_spans_created_total"), 9.0);
        assert_eq!(
            metrics.get(
                "auditspan_events_ignored_total",
                &[("input", "unix"), ("reason", "audit_test")]
            ),
            1.0
        );
        assert_eq!(
            metrics.sum_matching(
                "auditspan_events_ignored_total",
                &[("reason", "audit_test")]
            ),
            1.0
        );
        assert_eq!(metrics.get("odd", &[("a", "x\"y\\z\n")]), f64::INFINITY);
        assert_eq!(
            metrics.get_opt("auditspan_correlator_pending", &[]),
            Some(0.0)
        );
        assert_eq!(metrics.get("absent_total", &[]), 0.0);
    }
}

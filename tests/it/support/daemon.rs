//! The daemon as a child process: [`Daemon`] runs `auditspan run --config <dir>/auditspan.toml`
//! in a temporary directory of its own and sees it only from the outside.
//!
//! - [`Daemon::start_with`] hands the directory to the config builder, and the child runs
//!   with it as its working directory; start-up returns once the metrics server has logged
//!   its address (when enabled) and every unix input accepts connections.
//! - Its stdout ([`Stdout`]) is collected line by line (each line one span), or left in a
//!   pipe nobody reads until the caller takes it (a stalled sink; the bench's own readers),
//!   or discarded (a long bench run would otherwise keep every span in memory).
//! - [`Daemon::pause_stdout`] stops reading collected stdout, so the pipe fills and the
//!   stdout sink blocks in its write (a backend outage); [`Daemon::resume_stdout`] reads on.
//! - [`Daemon::restart`] runs it again on the same config and directory, so `data_dir`
//!   survives; the lines of every run are kept.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

use super::{DEADLINE, Metrics, fixture, poll_until};

/// How much of the daemon's stderr a failure message quotes.
const STDERR_TAIL_LINES: usize = 40;

/// What the daemon logs once its metrics endpoint is bound (followed by `IP:PORT`).
const METRICS_LOG_MARKER: &str = "Serving metrics. addr=";

/// Lines a reader thread collected from one of the child's pipes.
type Lines = Arc<Mutex<Vec<String>>>;

/// Whether the stdout reader may read (`true`) or must wait (`false`), and the condition it
/// waits on.
type Gate = Arc<(Mutex<bool>, Condvar)>;

/// Where the child's stdout goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Stdout {
    /// Read line by line into [`Daemon::spans`] (and [`Daemon::stdout_lines`]).
    #[default]
    Collect,
    /// A pipe nobody reads until [`Daemon::take_stdout`] hands it over or
    /// [`Daemon::collect_stdout`] starts collecting it: once the pipe buffer is full, the
    /// stdout sink blocks in its write and acknowledges nothing more.
    Pipe,
    /// `/dev/null`: nothing is kept.
    Null,
}

/// How to start a [`Daemon`] beyond its config: environment variables and stdout.
/// [`Daemon::start_with`] and friends use the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    env: Vec<(String, String)>,
    stdout: Stdout,
}

impl Options {
    /// Sets `key=value` on the child, on every run: the only way `AUDITSPAN_*` / `OTEL_*`
    /// variables reach it, since [`auditspan`] removes the test process's own.
    pub fn env(mut self, key: &str, value: &str) -> Options {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Where the child's stdout goes (default: [`Stdout::Collect`]).
    pub fn stdout(mut self, stdout: Stdout) -> Options {
        self.stdout = stdout;
        self
    }

    /// Starts the daemon with the config `config(dir)` returns, `dir` being the temporary
    /// directory the `Daemon` owns. Returns once the metrics server has logged its address
    /// (when enabled) and every unix input accepts connections.
    pub fn start(self, config: impl FnOnce(&Path) -> String) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("auditspan-it-")
            .tempdir()
            .unwrap();
        let config_toml = config(dir.path());
        let config_path = dir.path().join("auditspan.toml");
        std::fs::write(&config_path, &config_toml).unwrap();
        let parsed: toml::Table = toml::from_str(&config_toml)
            .unwrap_or_else(|e| panic!("the test's config is not TOML: {e}\n{config_toml}"));
        let output = Output::default();
        let run = spawn_child(&config_path, dir.path(), &self, &output);
        let mut daemon = Daemon {
            child: Mutex::new(run.child),
            output,
            stdout_pipe: Mutex::new(run.stdout_pipe),
            run_stderr_start: 0,
            readers: run.readers,
            metrics_addr: None,
            metrics_enabled: metrics_enabled(&parsed),
            sockets: unix_sockets(&parsed, dir.path()),
            config_path,
            options: self,
            dir,
        };
        daemon.wait_ready();
        daemon
    }
}

/// What the reader threads fill, shared by every run of one daemon.
#[derive(Clone)]
struct Output {
    /// Every complete stdout line of every run (see [`Daemon::restart`]).
    stdout: Lines,
    /// Every stderr line of every run.
    stderr: Lines,
    /// Open unless a test paused reading stdout ([`Daemon::pause_stdout`]).
    stdout_gate: Gate,
    /// The unfinished last stdout line of each run that ended mid-line (a SIGKILL during a
    /// write); not in `stdout`.
    stdout_truncated: Lines,
}

impl Default for Output {
    fn default() -> Output {
        Output {
            stdout: Lines::default(),
            stderr: Lines::default(),
            stdout_gate: Arc::new((Mutex::new(true), Condvar::new())),
            stdout_truncated: Lines::default(),
        }
    }
}

/// A running `auditspan run --config <dir>/auditspan.toml`.
pub struct Daemon {
    /// The child; in a mutex so that waits polling it can borrow `self` immutably.
    child: Mutex<Child>,
    /// The lines read from the child's pipes, every run.
    output: Output,
    /// The current run's unread stdout ([`Stdout::Pipe`]) until a caller takes it.
    stdout_pipe: Mutex<Option<ChildStdout>>,
    /// Index in `stderr` where the current run's lines start.
    run_stderr_start: usize,
    /// Threads copying the pipes into `output`; joined once the child has exited so that
    /// nothing it wrote is missed.
    readers: Vec<JoinHandle<()>>,
    /// The address the current run's metrics server is bound to, when metrics are enabled.
    metrics_addr: Option<SocketAddr>,
    /// Whether the config enables the metrics server (so start-up waits for its log line).
    metrics_enabled: bool,
    /// The unix sockets of the config's inputs, absolute.
    sockets: Vec<PathBuf>,
    config_path: PathBuf,
    /// Environment and stdout of every run.
    options: Options,
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

    /// Starts the daemon with the config `config(dir)` returns ([`Options::start`] with the
    /// default options).
    pub fn start_with(config: impl FnOnce(&Path) -> String) -> Daemon {
        Options::default().start(config)
    }

    /// [`Daemon::start_with`], with `env` set on the child (on every run); see
    /// [`Options::env`].
    pub fn start_with_env(env: &[(&str, &str)], config: impl FnOnce(&Path) -> String) -> Daemon {
        env.iter()
            .fold(Options::default(), |options, (k, v)| options.env(k, v))
            .start(config)
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
        let lines = self.output.stdout.lock().unwrap().clone();
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
            self.output.stdout.lock().unwrap().len() >= n
        });
        self.spans()
    }

    /// How many complete lines were read from stdout so far (every run).
    pub fn stdout_count(&self) -> usize {
        self.output.stdout.lock().unwrap().len()
    }

    /// Every complete stdout line so far (every run), as printed, without its newline.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.output.stdout.lock().unwrap().clone()
    }

    /// The unfinished last line of every run killed in the middle of writing one (a pipe
    /// write is not atomic beyond `PIPE_BUF`); these are not in [`Daemon::spans`].
    pub fn truncated_stdout(&self) -> Vec<String> {
        self.output.stdout_truncated.lock().unwrap().clone()
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
        let (lock, changed) = &*self.output.stdout_gate;
        *lock.lock().unwrap() = open;
        changed.notify_all();
    }

    /// The current run's stdout pipe, which nobody has read ([`Stdout::Pipe`]); the caller
    /// reads it (or drops it, and every write to stdout fails with EPIPE).
    pub fn take_stdout(&self) -> ChildStdout {
        self.stdout_pipe
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| self.fail("stdout is not an unread pipe (Stdout::Pipe)"))
    }

    /// Starts collecting the current run's unread stdout pipe ([`Stdout::Pipe`]) as
    /// [`Stdout::Collect`] does from the start: the sink writes again.
    pub fn collect_stdout(&mut self) {
        let pipe = self.take_stdout();
        self.readers.push(collect_lines(
            pipe,
            self.output.stdout.clone(),
            Some(self.output.stdout_gate.clone()),
            Some(self.output.stdout_truncated.clone()),
        ));
    }

    /// Everything the daemon wrote on stderr so far, one line per line.
    pub fn stderr(&self) -> String {
        self.output.stderr.lock().unwrap().join("\n")
    }

    /// The last [`STDERR_TAIL_LINES`] lines of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let lines = self.output.stderr.lock().unwrap();
        lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
    }

    /// The metrics server's address (current run).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
            .unwrap_or_else(|| self.fail("metrics are disabled in this test's config"))
    }

    /// `GET /readyz` once: the status code and the body.
    pub fn readyz(&self) -> (u16, String) {
        let url = format!("http://{}/readyz", self.metrics_addr());
        let mut response = super::http_agent()
            .get(&url)
            .call()
            .unwrap_or_else(|e| self.fail(&format!("GET {url}: {e}")));
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), body)
    }

    /// Scrapes `/metrics` once.
    pub fn metrics(&self) -> Metrics {
        let addr = self.metrics_addr();
        Metrics::scrape(addr)
            .unwrap_or_else(|e| self.fail(&format!("GET http://{addr}/metrics: {e}")))
    }

    /// The dead-letter records in `<dir>/data/deadletter.jsonl` (the `data_dir` of
    /// [`default_config`]); none when the file does not exist.
    pub fn dead_letters(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir().join("data/deadletter.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
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
    /// config, directory and options, so `data_dir` survives. `spans()` and `stderr()` keep
    /// the earlier runs' lines; `metrics()` is the new process's.
    pub fn restart(&mut self) {
        if self.try_exit_status().is_none() {
            self.sigkill();
        }
        self.wait_exit(DEADLINE);
        self.run_stderr_start = self.output.stderr.lock().unwrap().len();
        let run = spawn_child(
            &self.config_path,
            self.dir.path(),
            &self.options,
            &self.output,
        );
        *self.child.lock().unwrap() = run.child;
        *self.stdout_pipe.lock().unwrap() = run.stdout_pipe;
        self.readers = run.readers;
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
        let lines = self.output.stderr.lock().unwrap();
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

/// One run of the child, as [`spawn_child`] started it.
struct Run {
    child: Child,
    /// The threads reading stdout (when collected) and stderr.
    readers: Vec<JoinHandle<()>>,
    /// Stdout when nobody reads it yet ([`Stdout::Pipe`]).
    stdout_pipe: Option<ChildStdout>,
}

/// Starts `auditspan run --config <config_path>` in `dir` with `options`; reader threads
/// copy stderr, and stdout when collected, into `output`.
fn spawn_child(config_path: &Path, dir: &Path, options: &Options, output: &Output) -> Run {
    let mut command = auditspan(dir);
    command
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .arg("run")
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(match options.stdout {
            Stdout::Collect | Stdout::Pipe => Stdio::piped(),
            Stdout::Null => Stdio::null(),
        })
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", env!("CARGO_BIN_EXE_auditspan")));
    let mut readers = vec![collect_lines(
        child.stderr.take().unwrap(),
        output.stderr.clone(),
        None,
        None,
    )];
    let mut stdout_pipe = None;
    match options.stdout {
        Stdout::Collect => readers.push(collect_lines(
            child.stdout.take().unwrap(),
            output.stdout.clone(),
            Some(output.stdout_gate.clone()),
            Some(output.stdout_truncated.clone()),
        )),
        Stdout::Pipe => stdout_pipe = child.stdout.take(),
        Stdout::Null => {}
    }
    Run {
        child,
        readers,
        stdout_pipe,
    }
}

/// The `auditspan` binary (the one cargo built for this test or bench), run in `dir`. The
/// environment overrides the config file (DESIGN: precedence), so the developer's own
/// `AUDITSPAN_*` / `OTEL_*` settings are kept out of every test.
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

/// [`default_config`] (unix input, metrics, data dir) plus a stdout sink and `sink`, a
/// `[[sink]]` table of the sink under test.
pub fn config_with_sink(dir: &Path, sink: &str) -> String {
    format!(
        "{}\n[[sink]]\ntype = \"stdout\"\n\n{sink}",
        default_config(dir)
    )
}

/// `path` as a quoted TOML string.
pub fn toml_string(path: &Path) -> String {
    toml::Value::String(path.to_str().unwrap().to_owned()).to_string()
}

/// `start_time_unix_nano` and `end_time_unix_nano` of a stdout span.
pub fn span_times(span: &Value) -> (i64, i64) {
    let time = |key: &str| span[key].as_str().unwrap().parse::<i64>().unwrap();
    (time("start_time_unix_nano"), time("end_time_unix_nano"))
}

/// Result of one `auditspan import`.
pub struct Imported {
    /// The stdout sink's spans.
    pub spans: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// `auditspan import --config <config> <fixture>` in a temporary directory, with `env`
/// set; panics unless it succeeds.
pub fn import_fixture(config: &str, name: &str, env: &[(&str, &str)]) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.toml"), config).unwrap();
    let mut command = auditspan(dir.path());
    command
        .args(["import", "--config", "c.toml"])
        .arg(fixture(name))
        .envs(env.iter().copied());
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "import of {name} failed:\n{stderr}"
    );
    let spans = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Imported {
        spans,
        stdout,
        stderr,
    }
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

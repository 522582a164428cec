//! The network inputs from the outside: where the daemon listens, posts to its http input,
//! TCP and UDP senders, a recording HTTP proxy, an rsyslog relay, and the span contract
//! the OpenBao tests check.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{DEADLINE, Daemon, http_agent, poll_until, request_id_of, toml_string};

/// What a network input logs once it listens, before `address=` or `path=`.
const LISTENING: &str = "Listening. input=";

/// The address input `input` listens on, from its newest `Listening.` log line (waiting
/// for the first one). After a restart, use [`wait_listening`] first.
pub fn listen_addr(daemon: &Daemon, input: &str) -> SocketAddr {
    let mut found = None;
    daemon.wait_until(DEADLINE, &format!("input {input} to listen"), || {
        found = listening_lines(daemon, input).last().and_then(|line| {
            let rest = &line[line.find("address=")? + "address=".len()..];
            rest.split_whitespace().next()?.parse().ok()
        });
        found.is_some()
    });
    found.unwrap()
}

/// Waits until input `input` has logged `Listening.` `runs` times (once per run).
pub fn wait_listening(daemon: &Daemon, input: &str, runs: usize) {
    daemon.wait_until(DEADLINE, &format!("input {input} to listen"), || {
        listening_lines(daemon, input).len() >= runs
    });
}

fn listening_lines(daemon: &Daemon, input: &str) -> Vec<String> {
    let marker = format!("{LISTENING}{input} ");
    daemon
        .stderr()
        .lines()
        .filter(|l| l.contains(&marker))
        .map(str::to_owned)
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for configs that must name a
/// fixed port: a daemon restarted on it, OpenBao's device address).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A config with the data dir, metrics on any port and `pair_timeout` as
/// [`super::default_config`] has, `inputs` (`[[input]]` tables) and `extra` after them.
pub fn config_with_inputs(dir: &Path, inputs: &str, extra: &str) -> String {
    format!(
        "data_dir = {data}\n\n{inputs}\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n[correlate]\npair_timeout = \"10s\"\n\n{extra}",
        data = toml_string(&dir.join("data")),
    )
}

/// POSTs `body` to `url` with `token` as bearer token; the status and the body.
pub fn post(url: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut request = http_agent().post(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// Writes `bytes` on a new TCP connection to `addr` and closes it.
pub fn tcp_send(addr: SocketAddr, bytes: impl AsRef<[u8]>) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_write_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(bytes.as_ref()).unwrap();
}

/// Sends each of `datagrams` to `addr` from one socket (one sender).
pub fn udp_send(addr: SocketAddr, datagrams: &[&[u8]]) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for datagram in datagrams {
        socket.send_to(datagram, addr).unwrap();
    }
}

/// Checks the parts of the span contract (DESIGN "Span contract") that do not depend on
/// the event: ids derived from `vault.request.id`, kind, times, an outcome.
pub fn assert_contracted(span: &Value) {
    let id = request_id_of(span);
    assert!(!id.is_empty(), "no vault.request.id: {span}");
    let digest = Sha256::digest(format!("auditspan/{id}").as_bytes());
    let span_id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(span["span_id"].as_str(), Some(span_id.as_str()), "{span}");
    let trace_id = span["trace_id"].as_str().unwrap_or_default();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{span}"
    );
    assert_eq!(span["kind"], "server", "{span}");
    let (start, end) = super::span_times(span);
    assert!(start <= end, "{span}");
    assert!(
        ["paired", "response_missing", "request_missing"].contains(
            &span["attributes"]["auditspan.outcome"]
                .as_str()
                .unwrap_or("")
        ),
        "{span}"
    );
}

/// Distinct span ids per request id (a replay after a crash repeats a span with its id).
pub fn span_ids_by_request(spans: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for span in spans {
        by_id
            .entry(request_id_of(span))
            .or_default()
            .insert(span["span_id"].as_str().unwrap_or_default().to_owned());
    }
    by_id
}

/// One post the [`RecordingProxy`] relayed.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// `request.id` of the posted event.
    pub id: Option<String>,
    /// `request` or `response`.
    pub kind: String,
    /// `request.path` (`sys/audit/test` for the device's test entry, which makes no span).
    pub path: String,
    /// What the upstream answered (502 when it did not answer).
    pub status: u16,
}

/// An HTTP/1.1 proxy on 127.0.0.1 between OpenBao's http device and auditspan: each
/// `POST` is forwarded to `upstream` with its `Authorization` header, and the answer is
/// recorded with the event's request id before it is relayed back.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    relayed: Arc<Mutex<Vec<Relayed>>>,
}

impl RecordingProxy {
    pub fn start(upstream: String) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let relayed = Arc::new(Mutex::new(Vec::new()));
        let record = relayed.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (upstream, record) = (upstream.clone(), record.clone());
                std::thread::spawn(move || relay(conn, &upstream, &record));
            }
        });
        RecordingProxy { addr, relayed }
    }

    /// Every post relayed so far.
    pub fn relayed(&self) -> Vec<Relayed> {
        self.relayed.lock().unwrap().clone()
    }
}

/// Serves one keep-alive connection until the client closes it.
fn relay(conn: TcpStream, upstream: &str, record: &Mutex<Vec<Relayed>>) {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut authorization = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mut request = agent.post(upstream);
        if let Some(auth) = &authorization {
            request = request.header("Authorization", auth);
        }
        let status = match request.send(&body[..]) {
            // Read to its end, so that the upstream connection is kept alive.
            Ok(mut response) => {
                response.body_mut().read_to_string().ok();
                response.status().as_u16()
            }
            Err(_) => 502,
        };
        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        record.lock().unwrap().push(Relayed {
            id: event["request"]["id"].as_str().map(str::to_owned),
            kind: event["type"].as_str().unwrap_or_default().to_owned(),
            path: event["request"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            status,
        });
        let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// rsyslogd in the foreground with a config of its own: it reads `logger` messages on a
/// unix socket of its own and forwards them with `actions`. Killed on drop.
pub struct Rsyslog {
    child: Child,
    /// The socket `logger -u` writes to.
    pub socket: PathBuf,
    log: PathBuf,
}

impl Rsyslog {
    /// Starts rsyslogd in `dir` with the forwarding `actions` (RainerScript `action(...)`
    /// statements); returns once its socket exists.
    pub fn start(dir: &Path, actions: &str) -> Rsyslog {
        let socket = dir.join("rsyslog.sock");
        let config = dir.join("rsyslog.conf");
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{work}\")\n\
                 module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
                 input(type=\"imuxsock\" Socket=\"{socket}\" RateLimit.Interval=\"0\")\n\
                 if $programname == \"rsyslogd\" then stop\n\
                 {actions}\n",
                work = work.display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
        let log = dir.join("rsyslog.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting rsyslogd: {e} (./scripts/test installs it)"));
        let mut rsyslog = Rsyslog { child, socket, log };
        let up = poll_until(DEADLINE, || {
            if let Ok(Some(status)) = rsyslog.child.try_wait() {
                rsyslog.fail(&format!("rsyslogd exited with {status}"));
            }
            rsyslog.socket.exists()
        });
        if !up {
            rsyslog.fail("rsyslogd did not create its socket");
        }
        rsyslog
    }

    /// Logs `message` through rsyslog's socket as OpenBao's syslog device does (Go's
    /// `log/syslog`: one datagram `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`, no host name); the
    /// relay adds its own host name when it forwards.
    pub fn log(&self, tag: &str, message: &str) {
        let datagram = format!(
            "<110>Dec  7 19:19:19 {tag}[{}]: {message}\n",
            std::process::id()
        );
        std::os::unix::net::UnixDatagram::unbound()
            .unwrap()
            .send_to(datagram.as_bytes(), &self.socket)
            .unwrap_or_else(|e| panic!("writing to rsyslog's socket: {e}"));
    }

    fn fail(&self, message: &str) -> ! {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        panic!("{message}\n--- rsyslogd output ---\n{log}")
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// rsyslogd: on the PATH, or where Debian puts it.
fn rsyslogd() -> PathBuf {
    which("rsyslogd").unwrap_or_else(|| PathBuf::from("/usr/sbin/rsyslogd"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs util-linux `logger` with `args` and `message`; fails the test if it fails.
pub fn logger(args: &[&str], message: &str) {
    let output = Command::new("logger")
        .args(args)
        .arg("--")
        .arg(message)
        .output()
        .unwrap_or_else(|e| panic!("running logger: {e}"));
    assert!(
        output.status.success(),
        "logger {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private CA and a server certificate it signed for 127.0.0.1, made with `openssl` in
/// `dir`: `(ca.pem, server.pem, server.key)` paths.
pub fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("running openssl (needed for the TLS test): {e}"));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=auditspan test CA",
    ];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

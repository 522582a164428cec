//! Audit traffic, as a Vault socket device writes it: one builder of compact request and
//! response events ([`Event`]), the numbered [`pair`]s most tests send, and writers to the
//! daemon's unix socket whose writes fail after [`DEADLINE`] instead of hanging.
//!
//! Times count milliseconds from `2025-03-11T14:00:00Z` ([`time`]); a pair `n` takes two
//! of them, so pairs sent in order share one event clock and nothing expires on event time.

use std::io::Write;
use std::ops::Range;
use std::os::unix::net::UnixStream;

use serde_json::Value;

use super::{DEADLINE, Daemon};

/// The `vault.request.id` of a stdout span.
pub fn request_id_of(span: &Value) -> String {
    span["attributes"]["vault.request.id"]
        .as_str()
        .unwrap_or_else(|| panic!("a span without vault.request.id: {span}"))
        .to_owned()
}

/// The request ids of the `paired` spans among `spans`, sorted.
pub fn paired_ids(spans: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = spans
        .iter()
        .filter(|s| s["attributes"]["auditspan.outcome"] == "paired")
        .map(request_id_of)
        .collect();
    ids.sort();
    ids
}

/// The request id of pair `n`: a UUID, as Vault's usually are.
pub fn request_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// `2025-03-11T14:00:00Z` plus `millis`, in RFC 3339 with milliseconds.
pub fn time(millis: u64) -> String {
    let secs = millis / 1000;
    format!(
        "2025-03-11T{:02}:{:02}:{:02}.{:03}Z",
        14 + secs / 3600,
        secs / 60 % 60,
        secs % 60,
        millis % 1000
    )
}

/// Which half of a pair an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// One compact audit event: a `read` on mount `kv/` (path `kv/data/x`) in the root
/// namespace by a token with the `default` policy; a response also carries
/// `response.mount_type` and `response.data` (`{"v":"hmac-sha256:00"}`, a hashed secret).
/// The setters change one part; [`Event::line`] writes it.
#[derive(Debug, Clone)]
pub struct Event {
    kind: Kind,
    id: String,
    millis: u64,
    /// Replaces [`time`]`(millis)` when set ([`Event::dated`]).
    time: Option<String>,
    mount: String,
    path: String,
    data: String,
}

impl Event {
    /// An event of `kind` for request id `id` at [`time`]`(millis)`.
    pub fn new(kind: Kind, id: &str, millis: u64) -> Event {
        Event {
            kind,
            id: id.to_owned(),
            millis,
            time: None,
            mount: "kv/".to_owned(),
            path: "kv/data/x".to_owned(),
            data: r#"{"v":"hmac-sha256:00"}"#.to_owned(),
        }
    }

    /// A request event for `id` at [`time`]`(millis)`.
    pub fn request(id: &str, millis: u64) -> Event {
        Event::new(Kind::Request, id, millis)
    }

    /// A response event for `id` at [`time`]`(millis)`.
    pub fn response(id: &str, millis: u64) -> Event {
        Event::new(Kind::Response, id, millis)
    }

    /// On mount point `mount` (e.g. `m7/`), path `{mount}data/x`.
    pub fn mount(mut self, mount: &str) -> Event {
        self.mount = mount.to_owned();
        self.path = format!("{mount}data/x");
        self
    }

    /// With `request.path` `path` (the mount point stays).
    pub fn path(mut self, path: &str) -> Event {
        self.path = path.to_owned();
        self
    }

    /// Dated `rfc3339` instead of [`time`]`(millis)` (any text: the daemon judges it).
    pub fn dated(mut self, rfc3339: &str) -> Event {
        self.time = Some(rfc3339.to_owned());
        self
    }

    /// With `data` (a JSON object) as the response's `response.data`.
    pub fn data(mut self, data: &str) -> Event {
        self.data = data.to_owned();
        self
    }

    /// The event as one line of JSON, newline included.
    pub fn line(&self) -> String {
        let Event {
            kind,
            id,
            millis,
            time: dated,
            mount,
            path,
            data,
        } = self;
        let (kind, response) = match kind {
            Kind::Request => ("request", String::new()),
            Kind::Response => (
                "response",
                format!(r#","response":{{"mount_type":"kv","data":{data}}}"#),
            ),
        };
        format!(
            r#"{{"time":"{}","type":"{kind}","auth":{{"display_name":"t","policies":["default"]}},"request":{{"id":"{id}","operation":"read","mount_point":"{mount}","path":"{path}","namespace":{{"id":"root"}}}}{response}}}"#,
            dated.clone().unwrap_or_else(|| time(*millis))
        ) + "\n"
    }
}

/// Pair `n`: request id [`request_id`]`(n)`, the request at `2n` ms and its response 1 ms
/// later; one paired span.
pub fn pair(n: u64) -> String {
    pair_with(n, |event| event)
}

/// [`pair`]`(n)` with `change` applied to both events, e.g. `|e| e.mount("m7/")`.
pub fn pair_with(n: u64, change: impl Fn(Event) -> Event) -> String {
    let id = request_id(n);
    change(Event::request(&id, 2 * n)).line() + &change(Event::response(&id, 2 * n + 1)).line()
}

/// [`pair`]`(n)` for every `n` in `range`, as one string.
pub fn pairs(range: Range<u64>) -> String {
    range.map(pair).collect()
}

/// A new connection to the daemon's first unix input whose writes fail after [`DEADLINE`]
/// rather than hang.
pub fn connect(daemon: &Daemon) -> UnixStream {
    let conn = daemon.connect();
    conn.set_write_timeout(Some(DEADLINE)).unwrap();
    conn
}

/// Writes `bytes` on `conn`; a failed write fails the test with the daemon's stderr tail.
pub fn write(daemon: &Daemon, conn: &mut UnixStream, bytes: impl AsRef<[u8]>) {
    conn.write_all(bytes.as_ref())
        .unwrap_or_else(|e| daemon.fail(&format!("writing events to the socket: {e}")));
}

/// Writes `bytes` (audit lines, or anything else) to the daemon's first unix input in one
/// write, on a connection of its own that is closed afterwards.
pub fn send(daemon: &Daemon, bytes: impl AsRef<[u8]>) {
    write(daemon, &mut connect(daemon), bytes);
}

/// Sends pairs `range` ([`pairs`]) in one write.
pub fn send_pairs(daemon: &Daemon, range: Range<u64>) {
    send(daemon, pairs(range));
}

//! Audit traffic, as a Vault socket device writes it: compact audit events and the writers
//! to the daemon's unix socket.

use std::io::Write;

use super::{DEADLINE, Daemon};

/// The request id of pair `n`.
pub fn request_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A compact request/response pair for request id `request_id(n)`, the request at
/// `2025-03-11T14:00:00Z + 2n ms` and the response 1 ms later (one event clock, so nothing
/// expires on event time).
pub fn audit_pair(n: u64) -> String {
    audit_pair_with(n, r#"{"v":"hmac-sha256:00"}"#)
}

/// [`audit_pair`] with `data` (a JSON object) as the response's `data`.
pub fn audit_pair_with(n: u64, data: &str) -> String {
    let id = request_id(n);
    let time = |millis: u64| {
        let secs = millis / 1000;
        format!(
            "2025-03-11T{:02}:{:02}:{:02}.{:03}Z",
            14 + secs / 3600,
            secs / 60 % 60,
            secs % 60,
            millis % 1000
        )
    };
    let request = format!(
        r#"{{"time":"{}","type":"request","auth":{{"display_name":"t","policies":["default"]}},"request":{{"id":"{id}","operation":"read","mount_point":"kv/","path":"kv/data/x","remote_address":"127.0.0.1","remote_port":40000,"namespace":{{"id":"root"}}}}}}"#,
        time(2 * n)
    );
    let response = format!(
        r#"{{"time":"{}","type":"response","auth":{{"display_name":"t","policies":["default"]}},"request":{{"id":"{id}","operation":"read","mount_point":"kv/","path":"kv/data/x","namespace":{{"id":"root"}}}},"response":{{"mount_type":"kv","data":{data}}}}}"#,
        time(2 * n + 1)
    );
    format!("{request}\n{response}\n")
}

/// Writes pairs `range` to the daemon's socket in one write.
pub fn send_pairs(daemon: &Daemon, range: std::ops::Range<u64>) {
    send_text(daemon, &range.map(audit_pair).collect::<String>());
}

/// Writes `text` (audit lines) to the daemon's socket in one write.
pub fn send_text(daemon: &Daemon, text: &str) {
    let mut conn = daemon.connect();
    conn.set_write_timeout(Some(DEADLINE)).unwrap();
    conn.write_all(text.as_bytes())
        .unwrap_or_else(|e| daemon.fail(&format!("writing events to the socket: {e}")));
}

//! `/readyz`: ready while the inputs listen and the queue is below its high-water mark.

use std::io::Write;
use std::time::Instant;

use serde_json::Value;

use super::{COMMITTED, LAG, get};
use crate::support::{DEADLINE, Daemon, default_config, pairs, send_pairs};

/// /readyz is 200 once the input listens and the queue is open; with the stdout sink
/// stalled and spans piling up it turns 503 with a JSON reason once the queue passes 90% of
/// `queue.max_bytes`, and 200 again when the sink drains it. /healthz stays 200.
#[test]
fn readyz_follows_the_queue_high_water_mark() {
    let daemon = Daemon::start_with(|dir| {
        default_config(dir)
            + "\n[queue]\nmax_bytes = \"256KiB\"\noverflow = \"drop_oldest\"\n[parse]\nmax_span_bytes = \"128KiB\"\n\n\
               [[sink]]\ntype = \"stdout\"\nbatch_size = 50\n"
    });
    daemon.wait_until(DEADLINE, "/readyz 200 after start", || {
        get(&daemon, "/readyz") == (200, "{\"ready\":true}\n".to_owned())
    });
    daemon.pause_stdout();
    let mut n = 0;
    let mut conn = daemon.connect();
    conn.set_write_timeout(Some(DEADLINE)).unwrap();
    let mut last = (0, String::new());
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        let batch = pairs(n..n + 100);
        conn.write_all(batch.as_bytes()).unwrap();
        n += 100;
        let want = n as f64;
        daemon.wait_until(DEADLINE, "the batch committed", || {
            daemon.metrics().get(COMMITTED, &[]) >= want
        });
        last = get(&daemon, "/readyz");
        if last.0 == 503 {
            break;
        }
    }
    assert_eq!(last.0, 503, "never not ready; last answer {last:?}");
    let reason: Value = serde_json::from_str(&last.1).unwrap();
    assert_eq!(reason["ready"], false);
    let reason = reason["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("queue above 90% of max_bytes ("),
        "{reason}"
    );
    assert!(!last.1.trim_end().contains('\n'), "one line: {:?}", last.1);
    assert!(
        daemon.metrics().get("auditspan_queue_bytes", &[]) > 0.9 * 256.0 * 1024.0,
        "503 only above the high-water mark"
    );
    assert_eq!(get(&daemon, "/healthz").0, 200);

    daemon.resume_stdout();
    daemon.wait_until(DEADLINE, "/readyz 200 once the queue drained", || {
        get(&daemon, "/readyz").0 == 200
    });
    daemon.wait_until(DEADLINE, "the sink to catch up", || {
        daemon.metrics().get(LAG, &[("sink", "stdout")]) == 0.0
    });
}

/// /readyz says 503 while an input does not listen: here during a shutdown held up by a
/// stalled sink (it gets `shutdown_timeout` to drain), while the HTTP server still answers.
#[test]
fn readyz_is_503_once_inputs_stop() {
    let mut daemon =
        Daemon::start_with(|dir| format!("shutdown_timeout = \"5s\"\n{}", default_config(dir)));
    assert_eq!(get(&daemon, "/readyz").0, 200);
    daemon.pause_stdout();
    send_pairs(&daemon, 0..1_000);
    daemon.wait_until(DEADLINE, "spans waiting for the stalled sink", || {
        let m = daemon.metrics();
        m.get(COMMITTED, &[]) >= 1_000.0 && m.get(LAG, &[("sink", "stdout")]) > 0.0
    });
    daemon.sigterm();
    let mut body = String::new();
    daemon.wait_until(DEADLINE, "/readyz 503 during the shutdown", || {
        let (status, text) = get(&daemon, "/readyz");
        body = text;
        status == 503
    });
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["reason"],
        "input unix is not listening"
    );
    daemon.resume_stdout();
    assert!(daemon.wait_exit(DEADLINE).success());
}

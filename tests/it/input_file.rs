//! The file input against real files: rotations (rename, copytruncate, delete and
//! recreate, replacement in place), restarts (SIGKILL included) in the middle of a file
//! and across a rotation, lines written in parts, a 10 MiB line and bad input. Every test
//! compares the exact span set: one `paired` span per pair written, none missing, none
//! twice.
//!
//! A test that must change the files "at once" as far as the daemon can tell (a
//! copytruncate with unread lines, a replacement) freezes it with SIGSTOP meanwhile
//! (`support::files::while_stopped`); nothing sleeps to synchronise.

use std::os::unix::fs::MetadataExt;

use crate::support::files::{
    append, assert_exact_pairs, assert_exact_pairs_after_crash, file_config, input_errors,
    pairs_text, spans_after_stop, while_stopped,
};
use crate::support::{DEADLINE, Daemon, Event, pair, request_id, request_id_of};

const RECEIVED: &str = "auditspan_events_received_total";
const INVALID: &str = "auditspan_events_invalid_total";

fn all(range: std::ops::Range<u64>) -> Vec<u64> {
    range.collect()
}

/// Rename rotation as logrotate's `create` + Vault's SIGHUP do it: the old file is read
/// to its end (Vault writes it until the reopen), then the new one; a pair whose request
/// is in the old file and whose response is in the new one is one span.
#[test]
fn rename_rotation_reads_the_old_file_to_its_end_then_the_new_one() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    let rotated = daemon.dir().join("audit.log.1");
    append(&log, pairs_text(0..100));
    daemon.wait_for_spans(100);
    std::fs::rename(&log, &rotated).unwrap();
    // Written after the rename, before the reopen: into the renamed file.
    append(&rotated, pairs_text(100..150));
    let split = request_id(150);
    append(&rotated, Event::request(&split, 300).line());
    // The reopen: a new file at the path.
    append(&log, Event::response(&split, 301).line());
    append(&log, pairs_text(151..250));
    let spans = spans_after_stop(&mut daemon, 250);
    assert_exact_pairs(&daemon, &spans, &all(0..250));
}

/// copytruncate, with lines the daemon had not read when the copy was taken: the copy
/// (found by the fingerprint of its first line) is read from where the daemon was, then
/// the truncated file from its start; once with the new content shorter than the read
/// position, once longer (caught by the fingerprint check, not the size).
#[test]
fn copytruncate_reads_the_copys_unread_rest_then_the_truncated_file() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    let copy = daemon.dir().join("audit.log.1");
    append(&log, pairs_text(0..100));
    daemon.wait_for_spans(100);
    while_stopped(&daemon, || {
        append(&log, pairs_text(100..120));
        std::fs::copy(&log, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, pairs_text(120..130));
    });
    daemon.wait_for_spans(130);
    let copy2 = daemon.dir().join("audit.log.2");
    while_stopped(&daemon, || {
        append(&log, pairs_text(130..140));
        std::fs::rename(&copy, &copy2).unwrap();
        std::fs::copy(&log, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        // Longer than what was read of the old content.
        append(&log, pairs_text(140..300));
    });
    let spans = spans_after_stop(&mut daemon, 300);
    assert_exact_pairs(&daemon, &spans, &all(0..300));
}

/// The file is deleted and a new one created at its path, while running and while the
/// daemon is frozen: every pair of both files, once.
#[test]
fn delete_and_recreate_reads_both_files() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    append(&log, pairs_text(0..50));
    daemon.wait_for_spans(50);
    std::fs::remove_file(&log).unwrap();
    append(&log, pairs_text(50..100));
    daemon.wait_for_spans(100);
    while_stopped(&daemon, || {
        // Written to the deleted file through its open descriptor, as Vault does until
        // its SIGHUP, then a new file.
        let mut old = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::fs::remove_file(&log).unwrap();
        std::io::Write::write_all(&mut old, pairs_text(100..120).as_bytes()).unwrap();
        append(&log, pairs_text(120..200));
    });
    let spans = spans_after_stop(&mut daemon, 200);
    assert_exact_pairs(&daemon, &spans, &all(0..200));
}

/// SIGKILL in the middle of a file, with a request before the kill whose response comes
/// after the restart and a line whose first half was written before the kill: the
/// restart reads on from the committed checkpoint, nothing lost, nothing twice.
#[test]
fn sigkill_and_restart_in_the_middle_of_a_file_resumes_exactly() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    let waiting = request_id(1000);
    append(
        &log,
        pairs_text(0..300) + &Event::request(&waiting, 5000).line(),
    );
    daemon.wait_for_spans(300);
    daemon.wait_until(DEADLINE, "the waiting request committed", || {
        daemon
            .metrics()
            .get_opt("auditspan_correlator_pending", &[])
            == Some(1.0)
    });
    let half = pair(300);
    let (first, second) = half.split_at(40);
    append(&log, first);
    // Some lines the daemon may or may not commit before the kill.
    append(&log, second.to_owned() + &pairs_text(301..400));
    daemon.sigkill();
    daemon.restart();
    append(
        &log,
        Event::response(&waiting, 5001).line() + &pairs_text(400..500),
    );
    let mut expected = all(0..500);
    expected.push(1000);
    assert_exact_pairs_after_crash(&mut daemon, &expected);
    assert_eq!(daemon.dead_letters(), Vec::<serde_json::Value>::new());
}

/// A rotation while the daemon is down (killed with SIGKILL): the rotated file is found
/// by its identity among the path's rotated names and finished first, then the new file.
#[test]
fn restart_across_a_rotation_finishes_the_rotated_file_first() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    append(&log, pairs_text(0..100));
    daemon.wait_for_spans(100);
    daemon.sigkill();
    daemon.wait_exit(DEADLINE);
    append(&log, pairs_text(100..150));
    std::fs::rename(&log, daemon.dir().join("audit.log.1")).unwrap();
    append(&log, pairs_text(150..250));
    daemon.restart();
    let spans = assert_exact_pairs_after_crash(&mut daemon, &all(0..250));
    let position = |n: u64| {
        spans
            .iter()
            .position(|s| request_id_of(s) == request_id(n))
            .unwrap()
    };
    assert!(
        position(149) < position(150),
        "the rotated file's rest came after the new file"
    );
}

/// A line written in two parts, the first without its newline: nothing is framed until
/// the newline comes, so the line is one event, not two broken ones.
#[test]
fn a_line_written_in_two_parts_is_one_event() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    let second = pair(1);
    let (head, tail) = second.split_at(second.len() / 2);
    append(&log, pair(0) + head);
    // Span 0 means the daemon has read the file to its end, the half line included.
    daemon.wait_for_spans(1);
    append(&log, tail);
    let spans = spans_after_stop(&mut daemon, 2);
    assert_exact_pairs(&daemon, &spans, &[0, 1]);
    assert_eq!(daemon.dead_letters(), Vec::<serde_json::Value>::new());
}

/// A 10 MiB line (within `max_line_bytes`), written in many parts, is one event whose
/// largest value is truncated to fit the span; the lines around it pair as usual.
#[test]
fn a_10_mib_line_is_one_event() {
    let mut daemon = Daemon::start_with(|dir| {
        file_config(
            dir,
            dir.join("audit.log").to_str().unwrap(),
            "max_line_bytes = \"16MiB\"",
        )
    });
    let log = daemon.dir().join("audit.log");
    append(&log, pair(0));
    let id = request_id(1);
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(10 << 20));
    let line = Event::request(&id, 2).line() + &Event::response(&id, 3).data(&big).line();
    assert!(line.len() > 10 << 20);
    for part in line.as_bytes().chunks(1 << 20) {
        append(&log, part);
    }
    append(&log, pair(2));
    let spans = spans_after_stop(&mut daemon, 3);
    assert_exact_pairs(&daemon, &spans, &[0, 1, 2]);
    assert_eq!(daemon.dead_letters(), Vec::<serde_json::Value>::new());
}

/// A file replaced by another with the same inode (truncated and rewritten in place
/// while the daemon is down, longer than the old read position; then again while it is
/// frozen): the fingerprint tells the new content apart, which is read from its start.
#[test]
fn a_file_replaced_in_place_with_the_same_inode_is_read_from_its_start() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("audit.log").to_str().unwrap(), ""));
    let log = daemon.dir().join("audit.log");
    append(&log, pairs_text(0..50));
    daemon.wait_for_spans(50);
    let inode = std::fs::metadata(&log).unwrap().ino();
    daemon.sigterm();
    daemon.wait_exit(DEADLINE);
    std::fs::write(&log, pairs_text(50..150)).unwrap();
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), inode);
    daemon.restart();
    daemon.wait_for_spans(150);
    while_stopped(&daemon, || {
        std::fs::write(&log, pairs_text(150..300)).unwrap();
    });
    assert_eq!(std::fs::metadata(&log).unwrap().ino(), inode);
    let spans = spans_after_stop(&mut daemon, 300);
    assert_exact_pairs(&daemon, &spans, &all(0..300));
}

/// Garbage, an over-long line and invalid UTF-8 in a file are dead-lettered and counted;
/// the pairs around them, and those written after, are spans.
#[test]
fn bad_lines_in_a_file_are_dead_lettered_and_the_tail_goes_on() {
    let mut daemon = Daemon::start_with(|dir| {
        file_config(
            dir,
            dir.join("audit.log").to_str().unwrap(),
            "max_line_bytes = \"64KiB\"",
        )
    });
    let log = daemon.dir().join("audit.log");
    let mut bad = pair(0).into_bytes();
    bad.extend_from_slice(b"this is not json\n");
    bad.extend_from_slice(pair(1).as_bytes());
    bad.extend_from_slice(&vec![b'{'; 100 * 1024]);
    bad.push(b'\n');
    bad.extend_from_slice(b"{\"type\":\"request\",\"bad\":\"\xff\xfe\"}\n");
    bad.extend_from_slice(pair(2).as_bytes());
    append(&log, &bad);
    daemon.wait_for_spans(3);
    append(&log, pairs_text(3..10));
    daemon.wait_until(DEADLINE, "three invalid lines counted", || {
        daemon.metrics_sum_invalid() == 3.0
    });
    let metrics = daemon.metrics();
    assert_eq!(
        metrics.sum_matching(INVALID, &[("input", "file"), ("reason", "too_long")]),
        1.0
    );
    assert_eq!(
        metrics.sum_matching(INVALID, &[("input", "file"), ("reason", "not_json")]),
        2.0
    );
    let spans = spans_after_stop(&mut daemon, 10);
    assert_exact_pairs(&daemon, &spans, &all(0..10));
    let dead = daemon.dead_letters();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(dead.iter().all(|d| d["input"] == "file"), "{dead:?}");
    assert!(
        dead.iter().any(|d| d.get("line_base64").is_some()),
        "{dead:?}"
    );
}

/// `start_at = "end"` skips what the file held at the first start, reads what comes
/// after, and after a restart reads what was written while the daemon was down.
#[test]
fn start_at_end_skips_the_past_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, pairs_text(0..20));
    let pattern = log.to_str().unwrap().to_owned();
    let mut daemon = Daemon::start_with(|d| file_config(d, &pattern, "start_at = \"end\""));
    // Once the first scan is logged, the files' ends are taken.
    daemon.wait_until(DEADLINE, "the first scan", || {
        daemon.stderr().contains("Following files.")
    });
    append(&log, pairs_text(20..30));
    daemon.wait_for_spans(10);
    daemon.sigterm();
    daemon.wait_exit(DEADLINE);
    append(&log, pairs_text(30..40));
    daemon.restart();
    let spans = spans_after_stop(&mut daemon, 20);
    assert_exact_pairs(&daemon, &spans, &all(20..40));
    assert_eq!(
        daemon.stderr().matches("Following files.").count(),
        2,
        "two runs"
    );
}

/// A glob follows every file it matches, each on its own event clock, and the input's
/// counters and `/readyz` cover it.
#[test]
fn a_glob_follows_every_matching_file() {
    let mut daemon =
        Daemon::start_with(|dir| file_config(dir, dir.join("logs/*.log").to_str().unwrap(), ""));
    let logs = daemon.dir().join("logs");
    std::fs::create_dir(&logs).unwrap();
    append(&logs.join("a.log"), pairs_text(0..10));
    append(&logs.join("b.log"), pairs_text(10..20));
    append(&logs.join("c.txt"), pairs_text(100..110));
    daemon.wait_for_spans(20);
    let metrics = daemon.metrics();
    assert_eq!(metrics.sum_matching(RECEIVED, &[("input", "file")]), 40.0);
    assert_eq!(input_errors(&daemon, "file_gone"), 0.0);
    let ready = crate::support::http_agent()
        .get(format!("http://{}/readyz", daemon.metrics_addr()))
        .call()
        .unwrap();
    assert_eq!(ready.status(), 200);
    let spans = spans_after_stop(&mut daemon, 20);
    assert_exact_pairs(&daemon, &spans, &all(0..20));
}

impl Daemon {
    /// Every `auditspan_events_invalid_total` of the current run.
    fn metrics_sum_invalid(&self) -> f64 {
        self.metrics().sum(INVALID)
    }
}

//! The file inputs against a real OpenBao 2.7.2 (`support::bao`): its `file` audit
//! device followed by auditspan through a rename rotation with SIGHUP, through a SIGKILL
//! and restart of auditspan, and pointed at a FIFO auditspan owns. The reference is a
//! second file device (`bao-audit.log`) that auditspan does not read: every request id it
//! logged with both halves must come out as exactly one `paired` span, valid by the span
//! contract (a server span with a positive duration, the request's path and operation).

use std::collections::BTreeSet;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::support::bao::{Bao, hcl_string};
use crate::support::files::{file_config, span_counts};
use crate::support::{DEADLINE, Daemon, request_id_of, toml_string};

/// A file device writing `path`, named `tailed`.
fn file_device(path: &std::path::Path) -> String {
    format!(
        "audit \"file\" \"tailed\" {{\n  options {{\n    file_path = {}\n  }}\n}}\n",
        hcl_string(path.to_str().unwrap())
    )
}

/// Waits until the daemon printed a span for every paired id of the reference log, then
/// stops OpenBao and the daemon and checks the spans exactly against the reference: the
/// queue committed one span per request over every run, and the sink printed each of
/// them (after a SIGKILL, `crashed`, possibly twice: identical copies, at least once).
fn assert_every_request_is_one_span(daemon: &mut Daemon, bao: &mut Bao, crashed: bool) {
    let covered = |daemon: &Daemon, paired: &BTreeSet<String>| {
        let ids: BTreeSet<String> = daemon.spans().iter().map(request_id_of).collect();
        paired.is_subset(&ids)
    };
    daemon.wait_until(
        DEADLINE,
        "a span for every request in the reference log",
        || covered(daemon, &bao.reference().paired),
    );
    bao.stop();
    let reference = bao.reference();
    assert!(reference.paired.len() >= 20, "{reference:?}");
    daemon.wait_until(DEADLINE, "a span for every request OpenBao logged", || {
        covered(daemon, &reference.paired)
    });
    assert_eq!(
        daemon
            .metrics()
            .get("auditspan_queue_committed_sequence", &[]),
        reference.paired.len() as f64,
        "spans committed over every run"
    );
    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert!(status.success(), "{status}: {}", daemon.stderr());
    let mut spans = daemon.spans();
    if crashed {
        let lines = daemon.stdout_lines();
        let mut seen = std::collections::BTreeMap::new();
        let mut unique = Vec::new();
        for (line, span) in lines.iter().zip(spans) {
            match seen.insert(request_id_of(&span), line.clone()) {
                Some(earlier) => assert_eq!(&earlier, line, "two different spans"),
                None => unique.push(span),
            }
        }
        spans = unique;
    }
    let counts = span_counts(spans.iter().map(request_id_of));
    let ids: BTreeSet<String> = counts.keys().cloned().collect();
    assert_eq!(
        ids, reference.paired,
        "span ids vs the reference's paired ids"
    );
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "ids with more than one span: {repeated:?}"
    );
    for span in &spans {
        contracted(span);
    }
}

/// The span contract's fields for an OpenBao request.
fn contracted(span: &Value) {
    assert_eq!(span["kind"], "server", "{span}");
    assert_eq!(span["attributes"]["auditspan.outcome"], "paired", "{span}");
    assert_eq!(span["trace_id"].as_str().map(str::len), Some(32), "{span}");
    assert_eq!(span["span_id"].as_str().map(str::len), Some(16), "{span}");
    assert!(span["attributes"]["request.path"].is_string(), "{span}");
    assert!(
        span["attributes"]["request.operation"].is_string(),
        "{span}"
    );
    let time = |k: &str| span[k].as_str().unwrap().parse::<u128>().unwrap();
    assert!(
        time("end_time_unix_nano") >= time("start_time_unix_nano"),
        "{span}"
    );
    assert!(span["resource"]["service.name"].is_string(), "{span}");
}

/// The file device rotated as logrotate's `create` + `postrotate kill -HUP` do it:
/// renamed while OpenBao writes it, OpenBao writes the renamed file until its SIGHUP
/// reopen, then the new one.
#[test]
fn openbao_file_device_rotated_by_rename_and_sighup() {
    let mut daemon = Daemon::start_with(|dir| {
        file_config(dir, dir.join("vault-audit.log").to_str().unwrap(), "")
    });
    let log = daemon.dir().join("vault-audit.log");
    let mut bao = Bao::start(daemon.dir(), &file_device(&log));
    bao.traffic(5);
    std::fs::rename(&log, daemon.dir().join("vault-audit.log.1")).unwrap();
    bao.traffic(3);
    bao.signal(Signal::SIGHUP);
    daemon.wait_until(DEADLINE, "OpenBao to reopen its file", || log.exists());
    bao.traffic(5);
    assert_every_request_is_one_span(&mut daemon, &mut bao, false);
}

/// The file device written while auditspan is killed with SIGKILL, then restarted: it
/// reads on from its committed checkpoint.
#[test]
fn openbao_file_device_written_while_auditspan_is_killed() {
    let mut daemon = Daemon::start_with(|dir| {
        file_config(dir, dir.join("vault-audit.log").to_str().unwrap(), "")
    });
    let log = daemon.dir().join("vault-audit.log");
    let mut bao = Bao::start(daemon.dir(), &file_device(&log));
    bao.traffic(5);
    daemon.wait_until(DEADLINE, "the first spans", || daemon.stdout_count() >= 10);
    daemon.sigkill();
    daemon.wait_exit(DEADLINE);
    bao.traffic(5);
    daemon.restart();
    bao.traffic(3);
    assert_every_request_is_one_span(&mut daemon, &mut bao, true);
}

/// The file device pointed at a FIFO auditspan created and holds open: OpenBao's open
/// does not block, and every request comes out.
#[test]
fn openbao_file_device_into_a_fifo_auditspan_owns() {
    let mut daemon = Daemon::start_with(|dir| {
        format!(
            "data_dir = {data}\n\n[[input]]\ntype = \"fifo\"\nname = \"fifo\"\npath = {fifo}\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n",
            data = toml_string(&dir.join("data")),
            fifo = toml_string(&dir.join("audit.fifo")),
        )
    });
    let fifo = daemon.dir().join("audit.fifo");
    let mut bao = Bao::start(daemon.dir(), &file_device(&fifo));
    bao.traffic(8);
    assert_every_request_is_one_span(&mut daemon, &mut bao, false);
}

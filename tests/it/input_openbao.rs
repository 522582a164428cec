//! The network inputs end to end against a real OpenBao 2.7.2 dev server (see
//! `support::bao`): its http device (through a recording proxy, with auditspan killed
//! mid-burst), its socket device over tcp and udp, and its syslog device. Each test
//! checks that every request OpenBao's file device logged comes out as exactly one span
//! that keeps the contract (`support::net::assert_contracted`).
//!
//! Facts these rely on, observed on 2.7.2: the http device POSTs each entry (JSON and a
//! newline) with the configured headers, the `sys/audit/test` entry first, and fails the
//! write on a non-2xx answer without retrying; a request succeeds while one device
//! succeeds (the file device here). The socket and syslog devices send the test entry
//! too. The dev setup's `sys/mounts/secret` pair has no `request.id`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;

use crate::support::bao::{AuditLog, Bao, hcl_string, request};
use crate::support::net::{
    RecordingProxy, assert_contracted, config_with_inputs, free_port, free_udp_port,
    span_ids_by_request, wait_listening,
};
use crate::support::{DEADLINE, Daemon, Options, http_agent, request_id_of, toml_string};

const RECEIVED: &str = "auditspan_events_received_total";

/// Waits until every paired id of OpenBao's file log has a span, then checks that each
/// has exactly one (distinct) span, that it keeps the contract and is paired, and that no
/// span is for an id the log lacks.
fn assert_one_span_per_request(daemon: &Daemon, log: &AuditLog) {
    assert!(log.paired.len() >= 5, "too little traffic: {log:?}");
    daemon.wait_until(DEADLINE, "a span for every pair of the file log", || {
        let ids: BTreeSet<String> = daemon.spans().iter().map(request_id_of).collect();
        log.paired.iter().all(|id| ids.contains(id))
    });
    let spans = daemon.spans();
    for span in &spans {
        assert_contracted(span);
    }
    let by_id = span_ids_by_request(&spans);
    for (id, span_ids) in &by_id {
        assert!(
            log.paired.contains(id),
            "a span for {id}, not a pair in the file log"
        );
        assert_eq!(span_ids.len(), 1, "{id} has spans {span_ids:?}");
    }
    assert_eq!(spans.len(), log.paired.len(), "one stdout line per pair");
    assert!(
        spans
            .iter()
            .all(|s| s["attributes"]["auditspan.outcome"] == "paired"),
        "every span paired"
    );
}

/// OpenBao's http device posting to the http input through a recording proxy: normal
/// traffic makes one span per request; then, during a burst of requests from four
/// clients, auditspan is killed with SIGKILL and started again on the same port. Every
/// post the input answered 2xx must be in a span afterwards (the ack came after the
/// commit), and no request has two different spans.
#[test]
fn openbao_http_device_acknowledged_after_commit_survives_sigkill() {
    let port = free_port();
    let mut daemon = Options::default().env("AUDIT_TOKEN", "bao-audit-token").start(|dir| {
        config_with_inputs(
            dir,
            &format!(
                "[[input]]\ntype = \"http\"\naddress = \"127.0.0.1:{port}\"\nauth_token_env = \"AUDIT_TOKEN\"\n"
            ),
            "",
        )
        .replace("pair_timeout = \"10s\"", "pair_timeout = \"2s\"")
    });
    wait_listening(&daemon, "http", 1);
    let proxy = RecordingProxy::start(format!("http://127.0.0.1:{port}/v1/audit"));
    let device = format!(
        "audit \"http\" \"auditspan\" {{\n  options {{\n    uri = {}\n    headers = {}\n  }}\n}}\n",
        hcl_string(&format!("http://{}/v1/audit", proxy.addr)),
        hcl_string(r#"{"Authorization": ["Bearer bao-audit-token"]}"#),
    );
    let bao = Bao::start(daemon.dir(), &device);
    bao.traffic(5);
    let before_kill = bao.reference();
    assert_one_span_per_request(&daemon, &before_kill);
    let relayed = proxy.relayed();
    assert_eq!(relayed[0].path, "sys/audit/test", "the test entry first");
    assert!(
        relayed
            .iter()
            .all(|r| r.id.is_none() || r.status == 200 || r.status == 400)
    );

    // The burst: four clients writing kv secrets while auditspan is killed and restarted.
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (api, token, done) = (bao.api().to_owned(), bao.root_token.clone(), done.clone());
            std::thread::spawn(move || {
                let agent = http_agent();
                let mut n = 0;
                while !done.load(Ordering::SeqCst) && n < 400 {
                    let path = format!("secret/data/burst/{c}-{n}");
                    let body = json!({"data": {"n": n}});
                    let (status, _) =
                        request(&agent, &api, &path, Some(&token), Some(body)).unwrap();
                    assert_eq!(status, 200, "{path}");
                    n += 1;
                }
                n
            })
        })
        .collect();
    let answered = |from: usize| {
        proxy.relayed()[from..]
            .iter()
            .filter(|r| r.status == 200)
            .count()
    };
    let start = proxy.relayed().len();
    daemon.wait_until(DEADLINE, "posts answered before the kill", || {
        answered(start) >= 60
    });
    daemon.sigkill();
    daemon.restart();
    wait_listening(&daemon, "http", 2);
    let after = proxy.relayed().len();
    daemon.wait_until(DEADLINE, "posts answered after the restart", || {
        answered(after) >= 60
    });
    done.store(true, Ordering::SeqCst);
    let requests: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(requests >= 30, "{requests} requests in the burst");
    let relayed = proxy.relayed();
    assert!(
        relayed.iter().any(|r| r.status == 502),
        "no post failed while auditspan was down: the kill came too late"
    );

    // Every post answered 2xx is in a span (but the device's test entry, which is never
    // answered); the halves answered alone expire into spans on their own.
    let acknowledged: BTreeSet<String> = relayed
        .iter()
        .filter(|r| r.status == 200 && r.path != "sys/audit/test")
        .filter_map(|r| r.id.clone())
        .collect();
    let mut missing = Vec::new();
    let found = crate::support::poll_until(DEADLINE, || {
        let ids: BTreeSet<String> = daemon.spans().iter().map(request_id_of).collect();
        missing = acknowledged.difference(&ids).cloned().collect();
        missing.is_empty()
    });
    if !found {
        daemon.fail(&format!(
            "{} acknowledged posts have no span: {missing:?}",
            missing.len()
        ));
    }
    let spans = daemon.spans();
    for span in &spans {
        assert_contracted(span);
    }
    for (id, span_ids) in span_ids_by_request(&spans) {
        assert_eq!(span_ids.len(), 1, "{id}: {span_ids:?}");
    }
    // A request whose two halves were both acknowledged is paired.
    for id in &acknowledged {
        let halves: BTreeSet<&str> = relayed
            .iter()
            .filter(|r| r.status == 200 && r.id.as_deref() == Some(id))
            .map(|r| r.kind.as_str())
            .collect();
        if halves.len() == 2 {
            let span = spans.iter().find(|s| request_id_of(s) == *id).unwrap();
            assert_eq!(span["attributes"]["auditspan.outcome"], "paired", "{span}");
        }
    }
}

/// OpenBao's socket device over tcp and over udp, both into one daemon (a tcp and a udp
/// input): each input receives every entry, and every request of the file log makes
/// exactly one span (the second copy of each event is a duplicate).
#[test]
fn openbao_socket_device_over_tcp_and_udp() {
    let (tcp_port, udp_port) = (free_port(), free_udp_port());
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            &format!(
                "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:{tcp_port}\"\n\n\
                 [[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:{udp_port}\"\n"
            ),
            "",
        )
    });
    wait_listening(&daemon, "tcp", 1);
    wait_listening(&daemon, "udp", 1);
    let device = |name: &str, kind: &str, port: u16| {
        format!(
            "audit \"socket\" \"{name}\" {{\n  options {{\n    address = \"127.0.0.1:{port}\"\n    socket_type = \"{kind}\"\n  }}\n}}\n"
        )
    };
    let mut bao = Bao::start(
        daemon.dir(),
        &(device("tcp", "tcp", tcp_port) + &device("udp", "udp", udp_port)),
    );
    bao.traffic(10);
    bao.stop();
    let log = bao.reference();
    assert_one_span_per_request(&daemon, &log);
    daemon.wait_until(DEADLINE, "both inputs to receive every entry", || {
        let m = daemon.metrics();
        let tcp = m.get(RECEIVED, &[("input", "tcp")]);
        tcp >= log.lines as f64 && m.get(RECEIVED, &[("input", "udp")]) == tcp
    });
}

/// OpenBao's syslog device, which writes only to the local syslog socket: run as root in
/// a private mount namespace whose `/run/syslog` is auditspan's syslog input. Every
/// request makes exactly one span, with `syslog.appname` the device's tag.
#[test]
fn openbao_syslog_device_through_the_local_syslog_socket() {
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            &format!(
                "[[input]]\ntype = \"syslog\"\npath = {}\nmode = \"0666\"\n",
                toml_string(&dir.join("syslog.sock"))
            ),
            "",
        )
    });
    let socket = daemon.dir().join("syslog.sock");
    daemon.wait_until(DEADLINE, "the syslog socket", || socket.exists());
    let device = "audit \"syslog\" \"auditspan\" {\n  options {\n    tag = \"openbao-audit\"\n    facility = \"AUTH\"\n  }\n}\n";
    let mut bao = Bao::start_with_syslog(daemon.dir(), device, &socket);
    bao.traffic(10);
    bao.stop();
    let log = bao.reference();
    assert_one_span_per_request(&daemon, &log);
    for span in daemon.spans() {
        assert_eq!(
            span["attributes"]["syslog.appname"], "openbao-audit",
            "{span}"
        );
    }
}

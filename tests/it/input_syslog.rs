//! The syslog input with real senders: OpenBao-style datagrams and `logger` on a unix
//! datagram socket, RFC 6587 framing over TCP, UDP, an rsyslog relay, and malformed
//! frames around good ones.

use std::io::Write;
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use serde_json::Value;

use crate::support::net::{Rsyslog, config_with_inputs, listen_addr, logger};
use crate::support::{DEADLINE, Daemon, Event, auditspan, request_id, toml_string};

const RECEIVED: &str = "auditspan_events_received_total";
const INVALID: &str = "auditspan_events_invalid_total";
const INPUT_ERRORS: &str = "auditspan_input_errors_total";

/// The span of request id `id` among `spans`.
fn span_of<'a>(spans: &'a [Value], id: &str) -> &'a Value {
    spans
        .iter()
        .find(|s| s["attributes"]["vault.request.id"] == id)
        .unwrap_or_else(|| panic!("no span for {id} in {spans:#?}"))
}

/// The event `e` without its newline (a syslog message carries none).
fn msg(e: Event) -> String {
    e.line().trim_end().to_owned()
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A stale unix datagram socket file (one nobody receives on, left by an earlier run) is
/// replaced and the input takes datagrams; a socket another process receives on is never
/// taken over: the daemon refuses to start, saying so.
#[test]
fn syslog_unix_socket_replaces_a_stale_file_never_a_live_one() {
    let config = |dir: &Path, path: &Path| {
        config_with_inputs(
            dir,
            &format!(
                "[[input]]\ntype = \"syslog\"\npath = {}\n",
                toml_string(path)
            ),
            "",
        )
    };
    let live_dir = tempfile::tempdir().unwrap();
    let live = live_dir.path().join("live.sock");
    let _receiver = UnixDatagram::bind(&live).unwrap();
    std::fs::write(
        live_dir.path().join("live.toml"),
        config(live_dir.path(), &live),
    )
    .unwrap();
    let output = auditspan(live_dir.path())
        .args(["run", "--metrics-listen", "", "--config", "live.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is in use by another process"), "{stderr}");
    assert!(live.exists(), "the live socket's file is left alone");

    let daemon = Daemon::start_with(|dir| {
        let stale = dir.join("log.sock");
        drop(UnixDatagram::bind(&stale).unwrap());
        assert!(stale.exists(), "a dropped socket leaves its file behind");
        config(dir, &stale)
    });
    daemon.wait_until(DEADLINE, "the stale file replaced", || {
        daemon.stderr().contains("Replaced a stale socket file")
    });
    let path = daemon.dir().join("log.sock");
    let id = request_id(1);
    let sender = UnixDatagram::unbound().unwrap();
    for e in [Event::request(&id, 0), Event::response(&id, 1)] {
        sender.send_to(msg(e).as_bytes(), &path).unwrap();
    }
    let spans = daemon.wait_for_spans(1);
    assert_eq!(spans[0]["attributes"]["vault.request.id"], id.as_str());
    assert_eq!(spans[0]["attributes"]["auditspan.outcome"], "paired");
}

/// On a unix datagram socket: OpenBao's own format (`<PRI>Mmm dd hh:mm:ss TAG[PID]: `, no
/// host name) and `logger` in RFC 3164 and RFC 5424 pair, with `syslog.appname` (and
/// `syslog.hostname` where the header has one) on the span; a datagram with no syslog
/// header, one whose message is not JSON and one longer than the buffer are counted and
/// dead-lettered whole, and the socket carries on.
#[test]
fn syslog_unix_socket_takes_openbao_datagrams_and_logger() {
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            &format!(
                "[[input]]\ntype = \"syslog\"\npath = {}\nmax_line_bytes = \"8KiB\"\n",
                toml_string(&dir.join("log.sock"))
            ),
            "",
        )
    });
    let path = daemon.dir().join("log.sock");
    daemon.wait_until(DEADLINE, "the syslog socket", || path.exists());
    let sender = UnixDatagram::unbound().unwrap();
    let (a, b, c) = (request_id(1), request_id(2), request_id(3));
    let openbao = |e: Event| {
        format!(
            "<110>Dec  7 19:19:19 openbao[4242]: {}\n",
            e.line().trim_end()
        )
    };
    sender
        .send_to(openbao(Event::request(&a, 0)).as_bytes(), &path)
        .unwrap();
    sender.send_to(b"no header, no json", &path).unwrap();
    sender
        .send_to(b"<13>Dec  7 19:19:19 host app: SECRET not json", &path)
        .unwrap();
    sender.send_to(&vec![b'<'; 20_000], &path).unwrap();
    sender
        .send_to(openbao(Event::response(&a, 1)).as_bytes(), &path)
        .unwrap();
    let socket = path.to_str().unwrap();
    logger(
        &["-u", socket, "--rfc3164", "-t", "vault"],
        &msg(Event::request(&b, 2)),
    );
    logger(
        &["-u", socket, "--rfc3164", "-t", "vault"],
        &msg(Event::response(&b, 3)),
    );
    logger(
        &["-u", socket, "--rfc5424", "-t", "bao"],
        &msg(Event::request(&c, 4)),
    );
    logger(
        &["-u", socket, "--rfc5424", "-t", "bao"],
        &msg(Event::response(&c, 5)),
    );

    let spans = daemon.wait_for_spans(3);
    let attrs = |id: &str| span_of(&spans, id)["attributes"].clone();
    assert_eq!(attrs(&a)["syslog.appname"], "openbao");
    assert_eq!(
        attrs(&a)["syslog.hostname"],
        Value::Null,
        "OpenBao writes no host"
    );
    assert_eq!(attrs(&b)["syslog.appname"], "vault");
    assert_eq!(attrs(&c)["syslog.appname"], "bao");
    assert_eq!(attrs(&c)["syslog.hostname"], hostname().as_str());
    assert!(
        spans
            .iter()
            .all(|s| s["attributes"]["auditspan.outcome"] == "paired")
    );

    daemon.wait_until(DEADLINE, "three invalid lines", || {
        daemon.metrics().sum(INVALID) == 3.0
    });
    let m = daemon.metrics();
    assert_eq!(m.get(RECEIVED, &[("input", "syslog")]), 9.0);
    let errors = |reason| m.get(INPUT_ERRORS, &[("input", "syslog"), ("reason", reason)]);
    assert_eq!(errors("syslog_header"), 1.0);
    assert_eq!(errors("datagram_truncated"), 1.0);
    let dl = daemon.dead_letters();
    let lines: Vec<&str> = dl.iter().map(|d| d["line"].as_str().unwrap()).collect();
    assert_eq!(lines[0], "no header, no json");
    assert_eq!(
        lines[1], "<13>Dec  7 19:19:19 host app: SECRET not json",
        "whole message"
    );
    assert_eq!(dl[2]["reason"], "too_long");
    assert!(!daemon.stderr().contains("SECRET"));
}

/// Over TCP, octet-counted (RFC 5424, as `logger --octet-count` and syslog-ng send) and
/// newline-framed messages (RFC 3164) pair on one connection; a frame whose digits are no
/// octet count is counted and read up to its newline; over UDP, `logger` pairs too.
#[test]
fn syslog_tcp_framings_and_udp_with_logger() {
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            "[[input]]\ntype = \"syslog\"\nname = \"tcp\"\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n\n\
             [[input]]\ntype = \"syslog\"\nname = \"udp\"\naddress = \"127.0.0.1:0\"\n",
            "",
        )
    });
    let tcp = listen_addr(&daemon, "tcp");
    let udp = listen_addr(&daemon, "udp");
    let (a, b, c, d) = (request_id(1), request_id(2), request_id(3), request_id(4));
    let octet = |m: String| format!("{} {m}", m.len());
    let mut stream = String::new();
    stream += &octet(format!(
        "<13>1 2025-03-11T14:00:00Z vault-a bao 1 - - {}",
        msg(Event::request(&a, 0))
    ));
    stream += &format!(
        "<13>Mar 11 14:00:00 vault-a bao[1]: {}\n",
        msg(Event::response(&a, 1))
    );
    stream += "12345678901234 not an octet count\n";
    stream += &octet(format!(
        "<13>1 2025-03-11T14:00:00Z vault-b bao 1 - - {}",
        msg(Event::request(&b, 2))
    ));
    stream += &octet(format!(
        "<13>1 2025-03-11T14:00:00Z vault-b bao 1 - - {}",
        msg(Event::response(&b, 3))
    ));
    TcpStream::connect(tcp)
        .unwrap()
        .write_all(stream.as_bytes())
        .unwrap();
    let (tcp_port, udp_port) = (tcp.port().to_string(), udp.port().to_string());
    let to_tcp = [
        "-n",
        "127.0.0.1",
        "-P",
        tcp_port.as_str(),
        "-T",
        "--octet-count",
        "--rfc5424",
        "-t",
        "bao",
    ];
    logger(&to_tcp, &msg(Event::request(&c, 4)));
    logger(&to_tcp, &msg(Event::response(&c, 5)));
    let to_udp = [
        "-n",
        "127.0.0.1",
        "-P",
        udp_port.as_str(),
        "-d",
        "--rfc5424",
        "-t",
        "bao",
    ];
    logger(&to_udp, &msg(Event::request(&d, 6)));
    logger(&to_udp, &msg(Event::response(&d, 7)));

    let spans = daemon.wait_for_spans(4);
    for id in [&a, &b, &c, &d] {
        assert_eq!(
            span_of(&spans, id)["attributes"]["auditspan.outcome"],
            "paired"
        );
    }
    assert_eq!(
        span_of(&spans, &a)["attributes"]["syslog.hostname"],
        "vault-a"
    );
    assert_eq!(
        span_of(&spans, &b)["attributes"]["syslog.hostname"],
        "vault-b"
    );
    daemon.wait_until(DEADLINE, "the bad frame counted", || {
        daemon.metrics().sum(INVALID) == 1.0
    });
    let m = daemon.metrics();
    assert_eq!(m.get(RECEIVED, &[("input", "tcp")]), 7.0);
    assert_eq!(m.get(RECEIVED, &[("input", "udp")]), 2.0);
    assert_eq!(
        m.get(INPUT_ERRORS, &[("input", "tcp"), ("reason", "octet_count")]),
        1.0
    );
    assert_eq!(
        daemon.dead_letters()[0]["line"],
        "12345678901234 not an octet count"
    );
}

/// rsyslog forwarding to auditspan over TCP with octet counting (RFC 5424) and over UDP
/// (its traditional RFC 3164 format, with the host name): each relay's copy of every
/// event arrives, every pair makes exactly one span (the second copy is a duplicate),
/// with the relay's host name and the tag as attributes.
#[test]
fn rsyslog_forwards_over_tcp_octet_counted_and_udp() {
    const PAIRS: u64 = 20;
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            "[[input]]\ntype = \"syslog\"\nname = \"relay-tcp\"\naddress = \"127.0.0.1:0\"\nprotocol = \"tcp\"\n\n\
             [[input]]\ntype = \"syslog\"\nname = \"relay-udp\"\naddress = \"127.0.0.1:0\"\n",
            "",
        )
    });
    let tcp = listen_addr(&daemon, "relay-tcp");
    let udp = listen_addr(&daemon, "relay-udp");
    let relay_dir = tempfile::tempdir().unwrap();
    let rsyslog = Rsyslog::start(
        relay_dir.path(),
        &format!(
            "action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{}\" protocol=\"tcp\" \
             TCP_Framing=\"octet-counted\" template=\"RSYSLOG_SyslogProtocol23Format\")\n\
             action(type=\"omfwd\" target=\"127.0.0.1\" port=\"{}\" protocol=\"udp\")",
            tcp.port(),
            udp.port()
        ),
    );
    for n in 0..PAIRS {
        let id = request_id(n);
        rsyslog.log("openbao", &msg(Event::request(&id, 2 * n)));
        rsyslog.log("openbao", &msg(Event::response(&id, 2 * n + 1)));
    }
    daemon.wait_until(DEADLINE, "both copies of every event", || {
        let m = daemon.metrics();
        m.get(RECEIVED, &[("input", "relay-tcp")]) == (2 * PAIRS) as f64
            && m.get(RECEIVED, &[("input", "relay-udp")]) == (2 * PAIRS) as f64
    });
    let spans = daemon.wait_for_spans(PAIRS as usize);
    assert_eq!(spans.len(), PAIRS as usize, "one span per pair");
    let host = hostname();
    for n in 0..PAIRS {
        let span = span_of(&spans, &request_id(n));
        assert_eq!(span["attributes"]["auditspan.outcome"], "paired", "{span}");
        assert_eq!(span["attributes"]["syslog.appname"], "openbao", "{span}");
        assert_eq!(
            span["attributes"]["syslog.hostname"],
            host.as_str(),
            "{span}"
        );
    }
    let m = daemon.metrics();
    assert_eq!(m.sum(INVALID), 0.0);
    assert_eq!(
        m.sum_matching("auditspan_events_ignored_total", &[("reason", "duplicate")]),
        (2 * PAIRS) as f64
    );
}

//! The tcp and udp inputs with real sockets: pairs across connections and senders, bad
//! input around good input, and several inputs at once in one daemon.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::process::Command;

use nix::sys::signal::Signal;

use crate::support::net::{config_with_inputs, listen_addr, logger, post, tcp_send, udp_send};
use crate::support::{DEADLINE, Daemon, Event, http_agent, paired_ids, request_id, toml_string};

const RECEIVED: &str = "auditspan_events_received_total";
const INVALID: &str = "auditspan_events_invalid_total";
const INPUT_ERRORS: &str = "auditspan_input_errors_total";

/// A tcp input pairs a request and its response sent on different connections; garbage,
/// a line past `max_line_bytes` and half a line at a connection's end are counted and
/// dead-lettered, and the connection (or the next one) carries on.
#[test]
fn tcp_input_pairs_across_connections_and_survives_bad_input() {
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            "[[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\nmax_line_bytes = \"64KiB\"\n",
            "",
        )
    });
    let addr = listen_addr(&daemon, "tcp");
    let (a, b, c) = (request_id(1), request_id(2), request_id(3));
    {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.write_all(Event::request(&a, 0).line().as_bytes())
            .unwrap();
        conn.write_all(b"SECRET garbage\n").unwrap();
        let mut huge = vec![b'x'; 100 * 1024];
        huge.push(b'\n');
        conn.write_all(&huge).unwrap();
        conn.write_all(Event::request(&b, 1).line().as_bytes())
            .unwrap();
        // Half a line, then the connection closes (the socket device's redial case).
        let half = Event::response(&c, 2).line();
        conn.write_all(&half.as_bytes()[..half.len() / 2]).unwrap();
    }
    tcp_send(
        addr,
        Event::response(&a, 3).line() + &Event::response(&b, 4).line(),
    );
    tcp_send(
        addr,
        Event::request(&c, 5).line() + &Event::response(&c, 6).line(),
    );
    let spans = daemon.wait_for_spans(3);
    assert_eq!(paired_ids(&spans), [a, b, c]);
    daemon.wait_until(DEADLINE, "three invalid lines", || {
        daemon.metrics().sum(INVALID) == 3.0
    });
    let m = daemon.metrics();
    assert_eq!(m.get(RECEIVED, &[("input", "tcp")]), 9.0);
    assert_eq!(
        m.get(INVALID, &[("input", "tcp"), ("reason", "not_json")]),
        2.0
    );
    assert_eq!(
        m.get(INVALID, &[("input", "tcp"), ("reason", "too_long")]),
        1.0
    );
    let dl = daemon.dead_letters();
    let reasons: Vec<&str> = dl.iter().map(|d| d["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["not_json", "too_long", "not_json"], "{dl:?}");
    assert!(dl.iter().all(|d| d["input"] == "tcp"));
    assert!(
        !daemon.stderr().contains("SECRET"),
        "logs never hold line content"
    );
}

/// A udp datagram may hold one line or several; a datagram longer than the receive buffer
/// (`max_line_bytes` + 1) is counted as truncated and rejected as `too_long`, garbage is
/// dead-lettered, and halves from two senders (two streams) still pair.
#[test]
fn udp_input_takes_lines_per_datagram_and_counts_truncated_datagrams() {
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            "[[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:0\"\nmax_line_bytes = \"1KiB\"\n",
            "",
        )
    });
    let addr = listen_addr(&daemon, "udp");
    let (a, b, c) = (request_id(1), request_id(2), request_id(3));
    let two_lines = Event::request(&a, 0).line() + &Event::response(&a, 1).line();
    let big = vec![b'y'; 3000];
    udp_send(
        addr,
        &[
            two_lines.as_bytes(),
            b"not json at all",
            &big,
            Event::request(&b, 2).line().trim_end().as_bytes(),
            Event::request(&c, 3).line().as_bytes(),
        ],
    );
    // Another sender: its own stream.
    udp_send(
        addr,
        &[
            Event::response(&b, 4).line().as_bytes(),
            Event::response(&c, 5).line().as_bytes(),
        ],
    );
    let spans = daemon.wait_for_spans(3);
    assert_eq!(paired_ids(&spans), [a, b, c]);
    daemon.wait_until(DEADLINE, "two invalid lines", || {
        daemon.metrics().sum(INVALID) == 2.0
    });
    let m = daemon.metrics();
    assert_eq!(m.get(RECEIVED, &[("input", "udp")]), 8.0);
    assert_eq!(
        m.get(INVALID, &[("input", "udp"), ("reason", "too_long")]),
        1.0
    );
    assert_eq!(
        m.get(INVALID, &[("input", "udp"), ("reason", "not_json")]),
        1.0
    );
    assert_eq!(
        m.get(
            INPUT_ERRORS,
            &[("input", "udp"), ("reason", "datagram_truncated")]
        ),
        1.0
    );
    let dl = daemon.dead_letters();
    assert_eq!(dl.len(), 2, "{dl:?}");
    assert_eq!(dl[1]["reason"], "too_long");
    assert_eq!(
        dl[1]["line"].as_str().unwrap().len(),
        1025,
        "what the buffer held"
    );
    assert!(
        daemon.stderr().contains("bytes=3000"),
        "the real length is logged"
    );
}

/// Datagrams the kernel drops while the daemon cannot read (stopped with SIGSTOP here, so
/// its receive buffer fills) are counted as `datagram_dropped` once the next datagram is
/// read: the datagrams received and those dropped add up to those sent, a warning says
/// so, and the input goes on.
#[test]
fn udp_input_counts_the_datagrams_the_kernel_dropped() {
    let daemon = Daemon::start_with(|dir| {
        config_with_inputs(
            dir,
            "[[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:0\"\n",
            "",
        )
    });
    let addr = listen_addr(&daemon, "udp");
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // 8 KB requests: 4,000 of them overflow any receive buffer `net.core.rmem_max`
    // allows by default (the kernel doubles the 4 MiB auditspan asks for, at most).
    let long_path = format!("kv/data/{}", "x".repeat(8000));
    let send = |n: u64| {
        let line = Event::request(&request_id(n), n).path(&long_path).line();
        socket.send_to(line.as_bytes(), addr).unwrap();
    };
    let dropped = |daemon: &Daemon| {
        daemon.metrics().get_opt(
            INPUT_ERRORS,
            &[("input", "udp"), ("reason", "datagram_dropped")],
        )
    };
    assert_eq!(
        dropped(&daemon),
        Some(0.0),
        "the counter exists from the start"
    );

    daemon.signal(Signal::SIGSTOP);
    let burst = 4000;
    for n in 0..burst {
        send(n);
    }
    daemon.signal(Signal::SIGCONT);
    // Drops are told with the next datagram read after them: until the sums meet, send
    // one more.
    let mut sent = burst;
    daemon.wait_until(DEADLINE, "received + dropped = sent", || {
        let m = daemon.metrics();
        let received = m.get(RECEIVED, &[("input", "udp")]);
        let dropped = m.get(
            INPUT_ERRORS,
            &[("input", "udp"), ("reason", "datagram_dropped")],
        );
        if received + dropped == sent as f64 {
            return true;
        }
        send(sent);
        sent += 1;
        false
    });
    let m = daemon.metrics();
    let received = m.get(RECEIVED, &[("input", "udp")]);
    assert!(received > 0.0, "some datagrams fitted in the buffer");
    assert!(
        dropped(&daemon).unwrap() > 0.0,
        "{received} of {sent} datagrams received: the burst overflowed the buffer"
    );
    daemon.wait_until(DEADLINE, "the warning", || {
        daemon.stderr().contains("The kernel dropped datagrams")
    });

    let id = request_id(1_000_000);
    udp_send(
        addr,
        &[
            Event::request(&id, 0).line().as_bytes(),
            Event::response(&id, 1).line().as_bytes(),
        ],
    );
    daemon.wait_until(DEADLINE, "the pair sent after the drops", || {
        paired_ids(&daemon.spans()).contains(&id)
    });
}

/// One daemon with a unix, a tcp, a udp, an http and a syslog input: each listens and is
/// counted under its own name, a request arriving on one input and its response on
/// another still make one span, `/readyz` is ready, and `auditspan check` shows every
/// input with its keys.
#[test]
fn several_inputs_in_one_daemon_pair_across_inputs() {
    let inputs = |dir: &std::path::Path| {
        format!(
            "[[input]]\ntype = \"unix\"\npath = {unix}\n\n\
             [[input]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
             [[input]]\ntype = \"udp\"\naddress = \"127.0.0.1:0\"\n\n\
             [[input]]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\nauth = \"none\"\n\n\
             [[input]]\ntype = \"syslog\"\npath = {syslog}\n",
            unix = toml_string(&dir.join("audit.sock")),
            syslog = toml_string(&dir.join("syslog.sock")),
        )
    };
    let daemon = Daemon::start_with(|dir| config_with_inputs(dir, &inputs(dir), ""));
    let tcp = listen_addr(&daemon, "tcp");
    let udp = listen_addr(&daemon, "udp");
    let http = format!("http://{}/v1/audit", listen_addr(&daemon, "http"));
    let syslog = daemon.dir().join("syslog.sock");
    daemon.wait_until(DEADLINE, "the syslog socket", || syslog.exists());

    let ids: Vec<String> = (1..=4).map(request_id).collect();
    tcp_send(tcp, Event::request(&ids[0], 0).line());
    udp_send(udp, &[Event::response(&ids[0], 1).line().as_bytes()]);
    assert_eq!(post(&http, None, &Event::request(&ids[1], 2).line()).0, 200);
    logger(
        &["-u", syslog.to_str().unwrap(), "--rfc3164", "-t", "bao"],
        Event::response(&ids[1], 3).line().trim_end(),
    );
    crate::support::send(&daemon, Event::request(&ids[2], 4).line());
    assert_eq!(
        post(&http, None, &Event::response(&ids[2], 5).line()).0,
        200
    );
    logger(
        &["-u", syslog.to_str().unwrap(), "--rfc5424", "-t", "bao"],
        Event::request(&ids[3], 6).line().trim_end(),
    );
    tcp_send(tcp, Event::response(&ids[3], 7).line());

    let spans = daemon.wait_for_spans(4);
    assert_eq!(paired_ids(&spans), ids);
    let m = daemon.metrics();
    for (input, n) in [
        ("unix", 1.0),
        ("tcp", 2.0),
        ("udp", 1.0),
        ("http", 2.0),
        ("syslog", 2.0),
    ] {
        assert_eq!(m.get(RECEIVED, &[("input", input)]), n, "{input}");
    }
    let readyz = http_agent()
        .get(format!("http://{}/readyz", daemon.metrics_addr()))
        .call()
        .unwrap();
    assert_eq!(readyz.status().as_u16(), 200);

    let output = Command::new(env!("CARGO_BIN_EXE_auditspan"))
        .args(["check", "--config"])
        .arg(daemon.config_path())
        .output()
        .unwrap();
    assert!(output.status.success());
    let printed = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "type = \"tcp\"",
        "type = \"udp\"",
        "type = \"http\"",
        "auth = \"none\"",
        "ack = \"commit\"",
        "type = \"syslog\"",
        "address = \"127.0.0.1:0\"",
    ] {
        assert!(printed.contains(expected), "{expected} in:\n{printed}");
    }
}

//! The http input (OpenBao's `http` audit device) with a real HTTP client: what it
//! answers and when, its bounds, TLS, and 503 while the queue refuses writes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::net::{config_with_inputs, listen_addr, post, private_ca};
use crate::support::{
    DEADLINE, Daemon, Event, Options, Stdout, http_agent, pairs, request_id, toml_string,
};

const RECEIVED: &str = "auditspan_events_received_total";
const INVALID: &str = "auditspan_events_invalid_total";
const RESPONSES: &str = "auditspan_input_http_responses_total";
const INPUT_ERRORS: &str = "auditspan_input_errors_total";
const TOKEN: &str = "s3cret-token-value";

fn http_input(extra: &str) -> String {
    format!(
        "[[input]]\ntype = \"http\"\naddress = \"127.0.0.1:0\"\nauth_token_env = \"AUDIT_TOKEN\"\n{extra}"
    )
}

fn start(extra: &str) -> (Daemon, String) {
    let daemon = Options::default()
        .env("AUDIT_TOKEN", TOKEN)
        .start(|dir| config_with_inputs(dir, &http_input(extra), ""));
    let url = format!("http://{}/v1/audit", listen_addr(&daemon, "http"));
    (daemon, url)
}

/// With `ack = "commit"`, a post is answered 200 only once its events are committed (the
/// queue's committed sequence has moved when the answer arrives); a missing or wrong
/// token is 401 and counted, another path 404, another method 405, a body past
/// `max_line_bytes` 413 and an invalid line 400 (both dead-lettered before the answer);
/// the token never reaches the logs.
#[test]
fn http_input_answers_after_the_commit_and_refuses_what_it_must() {
    let (daemon, url) = start("max_line_bytes = \"4KiB\"\n");
    let id = request_id(1);
    assert_eq!(post(&url, None, &Event::request(&id, 0).line()).0, 401);
    assert_eq!(
        post(&url, Some("wrong"), &Event::request(&id, 0).line()).0,
        401
    );

    let (status, body) = post(&url, Some(TOKEN), &Event::request(&id, 0).line());
    assert_eq!((status, body.trim()), (200, "{\"accepted\":1}"));
    let (status, _) = post(&url, Some(TOKEN), &Event::response(&id, 1).line());
    assert_eq!(status, 200);
    // No waiting: the answer came after the commit that holds the span.
    assert!(
        daemon
            .metrics()
            .get("auditspan_queue_committed_sequence", &[])
            >= 1.0,
        "200 before the span was committed"
    );
    let spans = daemon.wait_for_spans(1);
    assert_eq!(spans[0]["attributes"]["vault.request.id"], id.as_str());

    let agent = http_agent();
    let get = agent.get(&url).call().unwrap();
    assert_eq!(get.status().as_u16(), 405);
    assert_eq!(get.headers().get("allow").unwrap(), "POST");
    let other = agent
        .post(url.replace("/v1/audit", "/v1/other"))
        .send("x")
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);

    let big = "z".repeat(10_000);
    assert_eq!(post(&url, Some(TOKEN), &big).0, 413);
    assert_eq!(
        daemon.dead_letters().len(),
        1,
        "dead-lettered before the answer"
    );
    let (status, body) = post(
        &url,
        Some(TOKEN),
        &(Event::request(&request_id(2), 2).line() + "SECRET garbage\n"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("\"rejected\":1") && body.contains("\"accepted\":1"),
        "{body}"
    );
    let dl = daemon.dead_letters();
    assert_eq!(dl.len(), 2, "dead-lettered before the answer");
    assert_eq!(dl[0]["reason"], "too_long");
    assert_eq!(dl[0]["line"].as_str().unwrap().len(), 4096);
    assert_eq!(dl[1]["reason"], "not_json");
    assert_eq!(dl[1]["input"], "http");

    let m = daemon.metrics();
    let code = |c: &str| m.get(RESPONSES, &[("input", "http"), ("code", c)]);
    assert_eq!(
        [
            code("200"),
            code("400"),
            code("401"),
            code("404"),
            code("405"),
            code("413")
        ],
        [2.0, 1.0, 2.0, 1.0, 1.0, 1.0]
    );
    assert_eq!(
        m.get(
            INPUT_ERRORS,
            &[("input", "http"), ("reason", "unauthorized")]
        ),
        2.0
    );
    assert_eq!(m.get(RECEIVED, &[("input", "http")]), 5.0);
    assert_eq!(
        m.get(INVALID, &[("input", "http"), ("reason", "too_long")]),
        1.0
    );
    let stderr = daemon.stderr();
    assert!(
        !stderr.contains(TOKEN) && !stderr.contains("SECRET"),
        "{stderr}"
    );
}

/// A client that sends its head and then stalls in the body is answered 408 after the
/// body timeout (counted), one that never finishes its head is closed by actix-http; a
/// body of many lines is taken meanwhile.
#[test]
fn slow_http_clients_are_cut_off_and_others_are_served() {
    let (daemon, url) = start("");
    let addr = listen_addr(&daemon, "http");
    let slow = |head: String| {
        std::thread::spawn(move || {
            let mut conn = TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(DEADLINE)).unwrap();
            conn.write_all(head.as_bytes()).unwrap();
            let started = Instant::now();
            let mut answer = String::new();
            conn.read_to_string(&mut answer).ok();
            (answer, started.elapsed())
        })
    };
    let stalled_body = slow(format!(
        "POST /v1/audit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n{{\"type\""
    ));
    let stalled_head = slow("POST /v1/audit HTTP/1.1\r\nHost: x\r\n".to_owned());

    let body = pairs(1..51);
    let (status, answer) = post(&url, Some(TOKEN), &body);
    assert_eq!((status, answer.trim()), (200, "{\"accepted\":100}"));
    daemon.wait_for_spans(50);

    let (answer, took) = stalled_body.join().unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took >= Duration::from_secs(9), "answered after {took:?}");
    let (answer, _) = stalled_head.join().unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    let m = daemon.metrics();
    assert_eq!(
        m.get(
            INPUT_ERRORS,
            &[("input", "http"), ("reason", "body_timeout")]
        ),
        1.0
    );
    assert_eq!(m.get(RESPONSES, &[("input", "http"), ("code", "408")]), 1.0);
}

/// With `tls_cert` and `tls_key` the input serves HTTPS (a client trusting the
/// certificate posts; `ack = "received"` answers), and plain HTTP gets no answer.
#[test]
fn http_input_serves_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = private_ca(dir.path());
    let tls = format!(
        "tls_cert = {}\ntls_key = {}\nack = \"received\"\n",
        toml_string(&cert),
        toml_string(&key)
    );
    let (daemon, url) = start(&tls);
    let https = url.replace("http://", "https://");
    let pem = std::fs::read(&ca).unwrap();
    let root = ureq::tls::Certificate::from_pem(&pem).unwrap().to_owned();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![root])))
                .build(),
        )
        .build()
        .new_agent();
    let response = agent
        .post(&https)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send(pairs(1..2))
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    daemon.wait_for_spans(1);
    assert!(
        http_agent().post(&url).send("x").is_err(),
        "plain HTTP on the TLS port got an HTTP answer"
    );
}

/// While the queue refuses writes (`overflow = "block"` at `max_bytes`, its only sink
/// stalled), a post is answered 503 with `Retry-After`, without taking its events; once
/// the sink drains the queue, the same post is taken.
#[test]
fn http_input_answers_503_while_the_queue_refuses_writes() {
    let mut daemon = Options::default()
        .env("AUDIT_TOKEN", TOKEN)
        .stdout(Stdout::Pipe)
        .start(|dir| {
            config_with_inputs(
                dir,
                &format!(
                    "{}\n[[input]]\ntype = \"unix\"\npath = {}\n",
                    http_input(""),
                    toml_string(&dir.join("audit.sock"))
                ),
                // A small queue, with spans small enough that it may hold one.
                "[queue]\nmax_bytes = \"256KiB\"\noverflow = \"block\"\n\n[parse]\nmax_span_bytes = \"128KiB\"\n",
            )
        });
    let url = format!("http://{}/v1/audit", listen_addr(&daemon, "http"));
    // Fill the queue through the unix input until the http input refuses.
    let writer = {
        let mut conn = crate::support::connect(&daemon);
        std::thread::spawn(move || {
            for chunk in 0..200 {
                let data = pairs(1000 + chunk * 100..1000 + (chunk + 1) * 100);
                if conn.write_all(data.as_bytes()).is_err() {
                    return;
                }
            }
        })
    };
    // Full: the unix input's intake stands still (observed for 1 s) while the writer has
    // more to send. Only then post, so that no post is in flight when it fills.
    let mut last = f64::NAN;
    let mut since = Instant::now();
    daemon.wait_until(DEADLINE, "intake to stop", || {
        let now = daemon.metrics().get(RECEIVED, &[("input", "unix")]);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        assert!(
            !writer.is_finished(),
            "the writer sent everything: nothing blocked"
        );
        since.elapsed() >= Duration::from_secs(1)
    });
    let event = Event::request(&request_id(1), 0).line();
    assert_eq!(post(&url, Some(TOKEN), &event).0, 503);
    let retry = http_agent()
        .post(&url)
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send(&event)
        .unwrap();
    assert_eq!(retry.status().as_u16(), 503);
    assert_eq!(retry.headers().get("retry-after").unwrap(), "1");
    daemon.collect_stdout();
    daemon.wait_until(DEADLINE, "the http input to take the post again", || {
        post(&url, Some(TOKEN), &event).0 == 200
    });
    writer.join().unwrap();
    assert!(
        daemon
            .metrics()
            .get(RESPONSES, &[("input", "http"), ("code", "503")])
            >= 2.0
    );
}

//! The metrics server under bad HTTP clients.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::{EXPORTED, get};
use crate::support::{DEADLINE, Daemon, pairs};

/// Sends `request` on a new connection and returns the status code of the answer, or
/// `None` when the server closed or reset the connection without one.
fn raw_status(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.set_write_timeout(Some(DEADLINE)).unwrap();
    // The server may answer and close before it has read everything; that is fine.
    stream.write_all(request).ok();
    read_status(&mut stream)
}

fn read_status(stream: &mut TcpStream) -> Option<u16> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    Some(status.parse().unwrap())
}

/// Unknown paths, other methods, malformed requests, oversized heads, too many headers, a
/// client that never finishes its request and hundreds of idle connections get clean
/// answers (404, 400, 431, 408, or a closed connection) while spans keep flowing from the
/// socket to stdout; afterwards the server still answers.
#[test]
fn bad_http_clients_get_clean_errors_and_spans_keep_flowing() {
    const PAIRS: u64 = 3_000;
    let daemon = Daemon::start_default();
    let addr = daemon.metrics_addr();

    // A slow client that sent part of its head, and 300 that sent nothing, held open
    // while everything else happens.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let slow_since = Instant::now();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();

    // Spans flow meanwhile, from another thread.
    let socket = daemon.socket().to_owned();
    let sender = std::thread::spawn(move || {
        let mut conn = UnixStream::connect(socket).unwrap();
        conn.set_write_timeout(Some(DEADLINE)).unwrap();
        for chunk in 0..PAIRS / 100 {
            let batch = pairs(chunk * 100..(chunk + 1) * 100);
            conn.write_all(batch.as_bytes()).unwrap();
        }
    });

    // The slow client gets 408 once CLIENT_REQUEST_TIMEOUT (5 s) passed, then is closed.
    slow.set_read_timeout(Some(DEADLINE)).unwrap();
    assert_eq!(read_status(&mut slow), Some(408), "the slow client");
    assert!(slow_since.elapsed() >= Duration::from_secs(4));
    let mut rest = Vec::new();
    slow.read_to_end(&mut rest).ok();
    drop(idle);

    assert_eq!(
        raw_status(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
        Some(404)
    );
    assert_eq!(
        raw_status(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        ),
        Some(404)
    );
    assert_eq!(raw_status(addr, b"GARBAGE\r\n\r\n"), Some(400));
    assert_eq!(
        raw_status(
            addr,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n"
        ),
        Some(400)
    );
    // 100 headers (actix-http takes 96).
    let mut many = String::from("GET /metrics HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(raw_status(addr, many.as_bytes()), Some(431));
    // A 1 MiB header: 431, or the connection is closed before the answer is read.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let status = raw_status(addr, huge.as_bytes());
    assert!(matches!(status, None | Some(431)), "{status:?}");
    // A body announced as 1 GiB, never read into memory: answered without waiting for it.
    let mut big_body = TcpStream::connect(addr).unwrap();
    big_body.set_read_timeout(Some(DEADLINE)).unwrap();
    big_body
        .write_all(b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
        .unwrap();
    big_body.write_all(&vec![b'x'; 1 << 20]).ok();
    assert_eq!(read_status(&mut big_body), Some(404));
    drop(big_body);

    sender.join().unwrap();
    daemon.wait_until(DEADLINE, "every span on stdout", || {
        daemon.stdout_count() as u64 >= PAIRS
    });
    assert_eq!(get(&daemon, "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(get(&daemon, "/readyz").0, 200);
    let m = daemon.metrics();
    assert_eq!(m.get(EXPORTED, &[("sink", "stdout")]), PAIRS as f64);
    let rss = m.get("process_resident_memory_bytes", &[]);
    assert!(rss > 0.0 && rss < 1024.0 * 1024.0 * 1024.0, "RSS {rss}");
}

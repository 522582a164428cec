//! The fifo input: a named pipe auditspan creates and holds open read-write, so writers
//! come and go without it ever seeing an end, and the tee copies every byte to stdout.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};

use crate::support::files::{
    pairs_text, span_counts, zipkin_receiver, zipkin_request_ids, zipkin_sink,
};
use crate::support::{DEADLINE, Options, Stdout, request_id, toml_string};

/// A writer opens the pipe, writes, closes and reopens it three times (as Vault's file
/// device does on every SIGHUP): every event arrives, each pair is one span, and stdout
/// (`tee = "stdout"`) holds exactly the bytes written. The pipe was created with mode 0600
/// and a writer's open never blocks (a non-blocking open finds a reader).
#[test]
fn fifo_takes_writers_that_reopen_and_tees_every_byte_to_stdout() {
    let receiver = zipkin_receiver();
    let mut daemon = Options::default().stdout(Stdout::Pipe).start(|dir| {
        format!(
            "data_dir = {data}\n\n[[input]]\ntype = \"fifo\"\nname = \"pipe\"\npath = {fifo}\ntee = \"stdout\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:0\"\n\n{sink}",
            data = toml_string(&dir.join("data")),
            fifo = toml_string(&dir.join("audit.fifo")),
            sink = zipkin_sink(&receiver),
        )
    });
    let mut stdout = daemon.take_stdout();
    let tee = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        stdout.read_to_end(&mut bytes).unwrap();
        bytes
    });
    let fifo = daemon.dir().join("audit.fifo");
    let meta = std::fs::metadata(&fifo).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    let mut written = Vec::new();
    for round in 0..4u64 {
        // O_NONBLOCK: fails with ENXIO unless a reader holds the pipe open.
        drop(
            OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap_or_else(|e| daemon.fail(&format!("a writer's open would block: {e}"))),
        );
        let mut writer = OpenOptions::new().write(true).open(&fifo).unwrap();
        let mut chunk = pairs_text(round * 50..round * 50 + 50).into_bytes();
        if round == 2 {
            // Bytes a tee must not touch: a CRLF line end and a garbage line.
            chunk.extend_from_slice(b"not json\r\n\xff\xfe\n");
        }
        writer.write_all(&chunk).unwrap();
        written.extend_from_slice(&chunk);
        drop(writer);
    }
    daemon.wait_until(DEADLINE, "200 spans at the Zipkin receiver", || {
        zipkin_request_ids(&receiver).len() >= 200
    });
    let metrics = daemon.metrics();
    assert_eq!(
        metrics.sum_matching("auditspan_events_received_total", &[("input", "pipe")]),
        402.0
    );
    daemon.sigterm();
    let status = daemon.wait_exit(DEADLINE);
    assert!(status.success(), "{status}: {}", daemon.stderr());
    assert!(fifo.exists(), "the pipe stays for the device");
    let teed = tee.join().unwrap();
    assert!(teed == written, "the tee differs from what was written");
    let counts = span_counts(zipkin_request_ids(&receiver));
    assert_eq!(counts.len(), 200);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    assert!(counts.contains_key(&request_id(199)));
}

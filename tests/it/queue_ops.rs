//! The queue under pressure and offline, through the real binary: overflow (`drop_oldest`,
//! `block`) with a sink that cannot write, a full disk (a real tmpfs), damaged `db` files,
//! and `auditspan queue stats|compact`.
//!
//! The stalled sink is the stdout sink writing into a pipe nobody reads ([`start_stalled`]):
//! once the pipe buffer is full its writes block, so it acknowledges nothing more.

use std::{
    collections::HashSet,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    DEADLINE, Daemon, Options, Stdout, auditspan, pairs, poll_until, request_id, tmpfs::Tmpfs,
    toml_string,
};

const RECEIVED: &str = "auditspan_events_received_total";
const CREATED: &str = "auditspan_spans_created_total";
const DROPPED: &str = "auditspan_queue_dropped_spans_total";
const QUEUE_BYTES: &str = "auditspan_queue_bytes";
const COMMITTED: &str = "auditspan_queue_committed_sequence";
const DISK_FULL: &str = "auditspan_queue_disk_full";

/// The `vault.request.id` of every span line.
fn ids(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .map(|line| {
            let span: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a stdout line is not JSON ({e}): {line}"));
            span["attributes"]["vault.request.id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// A config with one unix input at `<dir>/audit.sock`, `data_dir` `data`, metrics on an
/// ephemeral port, and `extra` appended.
fn config(dir: &Path, data: &Path, extra: &str) -> String {
    format!(
        "data_dir = {}\nshutdown_timeout = \"1s\"\n\n[[input]]\ntype = \"unix\"\nname = \"unix\"\npath = {}\n\n[metrics]\nlisten = \"127.0.0.1:0\"\n\n{extra}",
        toml_string(data),
        toml_string(&dir.join("audit.sock")),
    )
}

type Lines = Arc<Mutex<Vec<String>>>;

fn collect_lines(stream: impl Read + Send + 'static, into: Lines) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    })
}

/// `auditspan run` whose stdout is a pipe this test reads only once it says so
/// ([`Daemon::collect_stdout`]): until then the stdout sink is stalled.
fn start_stalled(config: impl FnOnce(&Path) -> String) -> Daemon {
    Options::default().stdout(Stdout::Pipe).start(config)
}

/// Runs `command` to its exit (killed and failed after [`DEADLINE`]): status, stdout, stderr.
fn run_to_exit(command: &mut Command) -> (ExitStatus, String, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (out, err) = (Lines::default(), Lines::default());
    let readers = [
        collect_lines(child.stdout.take().unwrap(), out.clone()),
        collect_lines(child.stderr.take().unwrap(), err.clone()),
    ];
    let mut status = None;
    let exited = poll_until(DEADLINE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        child.kill().ok();
        child.wait().ok();
    }
    for reader in readers {
        reader.join().unwrap();
    }
    let (out, err) = (
        out.lock().unwrap().join("\n"),
        err.lock().unwrap().join("\n"),
    );
    assert!(
        exited,
        "{command:?} did not exit within {DEADLINE:?}\n{out}\n{err}"
    );
    (status.unwrap(), out, err)
}

/// `drop_oldest` with a sink that cannot write: the queue stays within `max_bytes` by
/// dropping the oldest spans (counted), intake never stops, and once the sink writes again
/// it delivers the newest spans: what is missing is one run of old spans, never the newest,
/// and delivered + dropped == created, except that spans the sink had already read (one
/// batch, blocked in its write) are delivered although the queue counted them as dropped.
#[test]
fn drop_oldest_keeps_the_newest_spans_within_max_bytes() {
    const MAX_BYTES: f64 = 256.0 * 1024.0;
    const BATCHES: u64 = 40;
    const PER_BATCH: u64 = 100;
    let mut daemon = start_stalled(|dir| {
        config(
            dir,
            &dir.join("data"),
            "[queue]\nmax_bytes = \"256KiB\"\noverflow = \"drop_oldest\"\n[parse]\nmax_span_bytes = \"128KiB\"\n\n\
             [[sink]]\ntype = \"stdout\"\nbatch_size = 100\n",
        )
    });
    let mut conn = daemon.connect();
    let mut max_seen: f64 = 0.0;
    for batch in 0..BATCHES {
        // Small windows: each commit stays far below max_bytes, so the bound is exact.
        conn.write_all(pairs(batch * PER_BATCH..(batch + 1) * PER_BATCH).as_bytes())
            .unwrap();
        let want = ((batch + 1) * PER_BATCH) as f64;
        daemon.wait_until(DEADLINE, "the batch's spans to be committed", || {
            let m = daemon.metrics();
            max_seen = max_seen.max(m.get(QUEUE_BYTES, &[]));
            m.sum(CREATED) >= want && m.get(COMMITTED, &[]) >= want
        });
    }
    let total = (BATCHES * PER_BATCH) as f64;
    let m = daemon.metrics();
    assert_eq!(
        m.get(RECEIVED, &[("input", "unix")]),
        2.0 * total,
        "intake never stopped"
    );
    let dropped = m.get(DROPPED, &[]);
    assert!(
        dropped > 0.0,
        "nothing was dropped; the sink was not stalled?"
    );
    assert!(
        max_seen <= MAX_BYTES,
        "queue_bytes {max_seen} above max_bytes"
    );
    assert!(
        m.get(QUEUE_BYTES, &[]) >= MAX_BYTES / 2.0,
        "the queue should stay near max_bytes: {}",
        m.get(QUEUE_BYTES, &[])
    );
    assert!(
        daemon.stderr().contains("dropped the oldest spans"),
        "the drop is logged"
    );

    daemon.collect_stdout();
    let kept = total - dropped;
    daemon.wait_until(DEADLINE, "every kept span on stdout", || {
        daemon.stdout_lines().len() as f64 >= kept
    });
    daemon.wait_until(DEADLINE, "the newest span on stdout", || {
        ids(&daemon.stdout_lines()).last() == Some(&request_id(BATCHES * PER_BATCH - 1))
    });
    let lines = daemon.stdout_lines();
    let unique: HashSet<String> = ids(&lines).into_iter().collect();
    let in_flight = unique.len() as f64 - kept;
    assert!(
        (0.0..=100.0).contains(&in_flight),
        "delivered {} + dropped {dropped} == created {total}, give or take the one batch \
         (batch_size 100) the sink had read before the drop",
        unique.len()
    );
    let delivered_at: Vec<bool> = (0..BATCHES * PER_BATCH)
        .map(|n| unique.contains(&request_id(n)))
        .collect();
    assert!(
        delivered_at[0],
        "the first spans reached the pipe before it filled"
    );
    assert!(*delivered_at.last().unwrap(), "the newest span is kept");
    let runs_missing = delivered_at.windows(2).filter(|w| w[0] && !w[1]).count();
    assert_eq!(runs_missing, 1, "one run of old spans was dropped");
}

/// `block` with a sink that cannot write: the daemon stops reading once the queue is full
/// (the writer's socket writes block, `events_received_total` stops growing), drops
/// nothing, and once the sink writes again every span is delivered exactly as created.
#[test]
fn block_stops_intake_and_loses_nothing() {
    const PAIRS: u64 = 20_000;
    let mut daemon = start_stalled(|dir| {
        config(
            dir,
            &dir.join("data"),
            "[queue]\nmax_bytes = \"256KiB\"\noverflow = \"block\"\n[parse]\nmax_span_bytes = \"128KiB\"\n",
        )
    });
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut conn = daemon.connect();
        let (written, done) = (written.clone(), done.clone());
        std::thread::spawn(move || {
            for chunk in 0..PAIRS / 100 {
                let data = pairs(chunk * 100..(chunk + 1) * 100);
                conn.write_all(data.as_bytes()).unwrap();
                written.fetch_add(data.len() as u64, Ordering::SeqCst);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    // Intake has stopped when neither the daemon's count nor the writer moves for a while
    // (observed, not assumed: the wait ends as soon as both stand still for 1 s).
    let mut last = (f64::NAN, 0);
    let mut since = Instant::now();
    daemon.wait_until(
        DEADLINE,
        "intake to stop while the writer has more to send",
        || {
            let now = (
                daemon.metrics().get(RECEIVED, &[("input", "unix")]),
                written.load(Ordering::SeqCst),
            );
            if now != last {
                (last, since) = (now, Instant::now());
            }
            assert!(
                !done.load(Ordering::SeqCst),
                "the writer sent everything: nothing blocked"
            );
            now.0 > 0.0 && since.elapsed() >= Duration::from_secs(1)
        },
    );
    let m = daemon.metrics();
    assert!(m.get(RECEIVED, &[("input", "unix")]) < 2.0 * PAIRS as f64);
    assert!(
        m.get(QUEUE_BYTES, &[]) >= 256.0 * 1024.0,
        "stopped because the queue is full"
    );
    assert_eq!(m.get(DROPPED, &[]), 0.0);

    daemon.collect_stdout();
    writer.join().unwrap();
    daemon.wait_until(DEADLINE, "every span on stdout", || {
        daemon.stdout_lines().len() as u64 >= PAIRS
    });
    let m = daemon.metrics();
    assert_eq!(m.get(RECEIVED, &[("input", "unix")]), 2.0 * PAIRS as f64);
    assert_eq!(m.sum(CREATED), PAIRS as f64);
    assert_eq!(m.get(DROPPED, &[]), 0.0);
    let lines = daemon.stdout_lines();
    let expected: Vec<String> = (0..PAIRS).map(request_id).collect();
    assert_eq!(
        ids(&lines[..PAIRS as usize]),
        expected,
        "every span, in order"
    );
}

/// A full disk (less free space than the queue's 64 MiB headroom) is reported
/// (`auditspan_queue_disk_full` = 1, a log line) while the daemon keeps reading its socket;
/// once space is freed it recovers and the spans it held in memory reach stdout.
#[test]
fn full_disk_is_reported_and_recovered() {
    const PAIRS: u64 = 500;
    let mnt = tempfile::tempdir().unwrap();
    let tmpfs = Tmpfs::mount(mnt.path(), "100m");
    let data = mnt.path().to_owned();
    let daemon = Daemon::start_with(|dir| config(dir, &data, ""));
    let filler = tmpfs.fill(30 << 20);
    daemon
        .connect()
        .write_all(pairs(0..PAIRS).as_bytes())
        .unwrap();
    daemon.wait_until(DEADLINE, "auditspan_queue_disk_full = 1", || {
        daemon.metrics().get(DISK_FULL, &[]) == 1.0
    });
    daemon.wait_until(DEADLINE, "every event read while the disk is full", || {
        daemon.metrics().get(RECEIVED, &[("input", "unix")]) == 2.0 * PAIRS as f64
    });
    assert!(
        daemon.stderr().contains("is full"),
        "{}",
        daemon.stderr_tail()
    );
    assert_eq!(daemon.metrics().get(COMMITTED, &[]), 0.0);
    assert!(
        daemon.spans().is_empty(),
        "nothing is offered before it is durable"
    );

    std::fs::remove_file(&filler).unwrap();
    daemon.wait_until(DEADLINE, "auditspan_queue_disk_full = 0", || {
        daemon.metrics().get(DISK_FULL, &[]) == 0.0
    });
    let spans = daemon.wait_for_spans(PAIRS as usize);
    let got: Vec<&str> = spans
        .iter()
        .map(|s| s["attributes"]["vault.request.id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..PAIRS).map(request_id).collect();
    assert_eq!(got, expected);
    assert!(daemon.stderr().contains("The queue writes again."));
    drop(daemon);
}

/// A data directory with `pairs` spans committed and delivered, the daemon stopped cleanly;
/// returns it with the config that points at it.
fn stopped_daemon_with_spans(pairs_sent: u64) -> Daemon {
    let mut daemon = Daemon::start_with(|dir| config(dir, &dir.join("data"), ""));
    daemon
        .connect()
        .write_all(pairs(0..pairs_sent).as_bytes())
        .unwrap();
    daemon.wait_for_spans(pairs_sent as usize);
    daemon.sigterm();
    assert!(daemon.wait_exit(DEADLINE).success());
    daemon
}

/// The newest segment directory in `queue` (the active one, whose `db` file holds the
/// queue's state; format 2 names each segment by its first sequence, 20 digits).
fn active_segment(queue: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(queue)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap().len() == 20)
        .collect();
    segments.sort();
    segments
        .pop()
        .unwrap_or_else(|| panic!("no segment in {}", queue.display()))
}

/// Truncated, zero-length and garbage `db` files: the daemon exits non-zero at once with
/// a message naming the database and what to do, without a panic message, and never
/// starts with an empty queue.
#[test]
fn damaged_db_file_stops_the_start_with_a_clear_message() {
    type Damage = fn(&Path);
    let cases: [(&str, Damage); 3] = [
        ("truncated to half", |db| {
            let len = std::fs::metadata(db).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
            file.set_len(len / 2).unwrap();
        }),
        ("zero length", |db| {
            std::fs::File::create(db).unwrap();
        }),
        ("garbage", |db| {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let garbage: Vec<u8> = (0..2_000_000)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            std::fs::write(db, garbage).unwrap();
        }),
    ];
    for (what, damage) in cases {
        let daemon = stopped_daemon_with_spans(3000);
        let queue = daemon.dir().join("data/queue");
        damage(&active_segment(&queue).join("db"));
        let started = Instant::now();
        let (status, stdout, stderr) = run_to_exit(
            auditspan(daemon.dir())
                .arg("run")
                .arg("--config")
                .arg(daemon.config_path()),
        );
        assert!(!status.success(), "{what}: started anyway\n{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: took {:?}",
            started.elapsed()
        );
        assert!(stdout.is_empty(), "{what}: {stdout}");
        assert!(
            stderr.contains(&queue.display().to_string()),
            "{what}: names the path\n{stderr}"
        );
        assert!(
            stderr.contains("restore it from a backup"),
            "{what}: says what to do\n{stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "{what}: panic output\n{stderr}"
        );
        assert!(!stderr.contains("is running"), "{what}: started\n{stderr}");
    }
}

/// `queue stats` and `queue compact` refuse while the daemon runs (naming its pid), report
/// a stopped daemon's queue (committed sequence, cursor, lag), and compaction keeps every
/// undelivered span: a daemon started on the compacted queue delivers exactly those.
#[test]
fn queue_stats_and_compact_work_offline() {
    const PAIRS: u64 = 3000;
    let data = tempfile::tempdir().unwrap();
    let data = data.path().join("data");
    let cfg = |dir: &Path| config(dir, &data, "");
    let mut stalled = start_stalled(cfg);
    stalled
        .connect()
        .write_all(pairs(0..PAIRS).as_bytes())
        .unwrap();
    stalled.wait_until(DEADLINE, "every span committed", || {
        stalled.metrics().get(COMMITTED, &[]) == PAIRS as f64
    });
    let (dir, config) = (stalled.dir().to_owned(), stalled.config_path().to_owned());
    let queue_cmd = |sub: &str| {
        run_to_exit(
            auditspan(&dir)
                .args(["queue", sub, "--config"])
                .arg(&config),
        )
    };
    let (status, _, stderr) = queue_cmd("stats");
    assert!(!status.success());
    let pid = stalled.pid();
    assert!(
        stderr.contains(&format!(
            "is in use by a running auditspan (pid {pid}); stop it, or read its /metrics"
        )),
        "{stderr}"
    );
    let (status, _, stderr) = queue_cmd("compact");
    assert!(!status.success());
    assert!(
        stderr.contains(&format!("(pid {pid}); stop it first")),
        "{stderr}"
    );

    stalled.sigkill();
    stalled.wait_exit(DEADLINE);
    let (status, stdout, stderr) = queue_cmd("stats");
    assert!(status.success(), "{stderr}");
    let field = |out: &str, key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key:?} in\n{out}"))
            .trim()
            .to_owned()
    };
    assert_eq!(field(&stdout, "committed "), PAIRS.to_string(), "{stdout}");
    let sink = field(&stdout, "sink ");
    let words: Vec<&str> = sink.split_whitespace().collect();
    assert_eq!(
        (words[0], words[1], words[3]),
        ("stdout", "cursor", "lag"),
        "{stdout}"
    );
    let cursor: u64 = words[2].parse().unwrap();
    let lag: u64 = words[4].parse().unwrap();
    assert_eq!(cursor + lag, PAIRS);
    assert!(lag > 0, "the stalled sink left spans undelivered: {stdout}");
    assert!(field(&stdout, "disk ").ends_with("bytes"), "{stdout}");

    let (status, compacted, stderr) = queue_cmd("compact");
    assert!(status.success(), "{stderr}");
    for key in ["before ", "after "] {
        let bytes = field(&compacted, key);
        assert!(bytes.ends_with(" bytes"), "{compacted}");
    }
    assert!(!data.join("queue.compacting").exists());
    assert!(!data.join("queue.precompact").exists());
    let (status, after, stderr) = queue_cmd("stats");
    assert!(status.success(), "{stderr}");
    assert_eq!(field(&after, "committed "), PAIRS.to_string());
    assert_eq!(field(&after, "sink "), sink, "cursor and lag unchanged");

    let daemon = Daemon::start_with(cfg);
    let spans = daemon.wait_for_spans(lag as usize);
    let got: Vec<&str> = spans
        .iter()
        .map(|s| s["attributes"]["vault.request.id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (cursor..PAIRS).map(request_id).collect();
    assert_eq!(got, expected, "exactly the undelivered spans, in order");
}

/// Peak resident memory of `pid` so far (`VmHWM` in `/proc/<pid>/status`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    kib * 1024
}

/// Allocated bytes of the files under `dir` (what `du` shows).
fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += disk_usage(&entry.path());
        }
    }
    total
}

/// A backend outage with 500 MB of spans queued (issue #13): the daemon's peak resident
/// memory, read from `/proc`, stays under 128 MiB while the spans pile up on disk and
/// while they drain, `queue.max_bytes` (1 GiB) bounding the disk and not the memory. The
/// tests run a debug build, whose code alone takes ~45 MiB where the release build's
/// idle daemon takes ~14 MiB, so what is asserted is the growth above the idle daemon:
/// at most 128 − 14 MiB. Once every span is delivered the disk space goes back to the
/// filesystem: the passed segments are deleted whole.
#[test]
fn outage_with_500_mb_queued_keeps_memory_bounded_and_gives_the_disk_back() {
    const QUEUED: f64 = 500e6;
    /// The 128 MiB target less the release build's idle RSS (14 MiB).
    const GROWTH: u64 = 114 << 20;
    const SEGMENT: u64 = 8 << 20;
    let daemon = start_stalled(|dir| config(dir, &dir.join("data"), ""));
    let stdout = daemon.take_stdout();
    let idle = peak_rss(daemon.pid());
    // Responses of ~190 KB (48 hashed values of 4,000 characters): 500 MB is ~2,700 spans,
    // so that even a debug build takes them in promptly.
    let data = format!(
        "{{{}}}",
        (0..48)
            .map(|k| format!(r#""k{k}":"hmac-sha256:{}""#, "ab".repeat(1994)))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut conn = daemon.connect();
    let mut sent = 0;
    while daemon.metrics().get(QUEUE_BYTES, &[]) < QUEUED {
        // A few MB at a time, as a busy Vault writes them: a burst of hundreds of these
        // 190 KB events would be one commit window of that size in memory.
        let chunk: String = (sent..sent + 10)
            .map(|n| pair_with_data(n, &data))
            .collect();
        conn.write_all(chunk.as_bytes()).unwrap();
        sent += 10;
        daemon.wait_until(DEADLINE, "the chunk's spans committed", || {
            daemon.metrics().get(COMMITTED, &[]) >= sent as f64
        });
    }
    let queue = daemon.dir().join("data/queue");
    let m = daemon.metrics();
    let (queued, disk_full) = (m.get(QUEUE_BYTES, &[]), disk_usage(&queue));
    let rss_full = peak_rss(daemon.pid());
    assert!(
        rss_full - idle <= GROWTH,
        "peak RSS {} MiB ({} MiB idle) with {:.0} MB queued",
        rss_full >> 20,
        idle >> 20,
        queued / 1e6
    );
    // The issue's target: the files take at most 1.2 × what is queued (each span is
    // written once, to its segment's data file).
    assert!(
        disk_full as f64 <= 1.2 * queued,
        "{disk_full} bytes on disk for {queued} queued"
    );

    let reader = std::thread::spawn(move || {
        let mut lines = 0u64;
        for line in BufReader::new(stdout).lines() {
            line.unwrap();
            lines += 1;
        }
        lines
    });
    daemon.wait_until(DEADLINE, "the queue to drain", || {
        let m = daemon.metrics();
        m.get("auditspan_sink_lag_spans", &[("sink", "stdout")]) == 0.0
            && m.get("auditspan_queue_spans", &[]) == 0.0
    });
    let rss_drained = peak_rss(daemon.pid());
    let disk_drained = disk_usage(&queue);
    assert!(
        rss_drained - idle <= GROWTH,
        "peak RSS {} MiB ({} MiB idle) after the drain",
        rss_drained >> 20,
        idle >> 20
    );
    // What stays: the active segment (its data file and its small sled database) and at
    // most one closed segment not yet deleted.
    assert!(
        disk_drained <= 3 * SEGMENT && disk_drained * 10 < disk_full,
        "the disk is given back: {disk_full} bytes before the drain, {disk_drained} after"
    );
    let mut daemon = daemon;
    daemon.sigterm();
    assert!(daemon.wait_exit(DEADLINE).success());
    assert_eq!(reader.join().unwrap(), sent, "every span delivered once");
    eprintln!(
        "{sent} spans, {:.0} MB queued, {:.0} MB on disk → {:.1} MB drained; peak RSS {} MiB, idle {} MiB",
        queued / 1e6,
        disk_full as f64 / 1e6,
        disk_drained as f64 / 1e6,
        rss_drained >> 20,
        idle >> 20
    );
}

/// Pair `n` whose response carries `data` as `response.data`.
fn pair_with_data(n: u64, data: &str) -> String {
    crate::support::pair_with(n, |event| event.data(data))
}

/// Writes a queue of format 1 (one sled database in `<data>/queue`, the layout before the
/// segmented queue) holding `spans` undelivered spans of pairs `0..spans` and a cursor of
/// the stdout sink at 0, with the manifest that format wrote beside it.
fn write_format_1_queue(data: &Path, spans: u64) {
    use auditspan::{
        attr::Attributes,
        codec,
        queue::record,
        span::{Outcome, Span, Status},
    };
    let db = sled::Config::new()
        .path(data.join("queue"))
        .segment_size(2 << 20)
        .open()
        .unwrap();
    let u64_value = |n: u64| record::encode_envelope(&n.to_be_bytes());
    db.insert(record::META_FORMAT, u64_value(1)).unwrap();
    let db_id = "0123456789abcdef0123456789abcdef";
    db.insert(
        record::META_DB_ID,
        record::encode_envelope(db_id.as_bytes()),
    )
    .unwrap();
    db.insert(record::META_SEGMENT_SIZE, u64_value(2 << 20))
        .unwrap();
    let encoded: Vec<Vec<u8>> = (0..spans)
        .map(|n| {
            let mut attributes = Attributes::new();
            attributes
                .push_str("vault.request.id", &request_id(n))
                .unwrap();
            let span = Span {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent_span_id: None,
                name: "read kv/".into(),
                start_unix_nano: 1_741_708_800_000_000_000,
                end_unix_nano: 1_741_708_800_001_000_000,
                status: Status::Unset,
                outcome: Outcome::Paired,
                attributes,
            };
            let mut bytes = Vec::new();
            codec::encode_span(&span, &mut bytes);
            bytes
        })
        .collect();
    for (i, chunk) in encoded.chunks(40).enumerate() {
        let first = 1 + 40 * i as u64;
        db.insert(
            record::span_key(first, chunk.len() as u32),
            record::encode_spans(chunk),
        )
        .unwrap();
    }
    db.insert(record::META_COMMITTED, u64_value(spans)).unwrap();
    db.insert(b"cstdout", u64_value(0)).unwrap();
    db.flush().unwrap();
    std::fs::write(
        data.join("queue.manifest"),
        format!(
            "# auditspan queue manifest: written when the queue was created; do not edit.\n\
             format = 1\ndb_id = {db_id}\nsegment_size = 2097152\ncommitted = {spans}\n"
        ),
    )
    .unwrap();
}

/// A queue of the format before the segmented queue (format 1): the daemon refuses to
/// start on it, exiting non-zero with a message that names the queue and `auditspan queue
/// migrate`, and never starts empty; `auditspan queue migrate` converts it, and the
/// daemon then delivers exactly the spans the old queue held, in order.
#[test]
fn format_1_queue_is_refused_until_migrated_and_then_delivered() {
    const SPANS: u64 = 150;
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_format_1_queue(&data, SPANS);
    let config_path = work.path().join("auditspan.toml");
    std::fs::write(&config_path, config(work.path(), &data, "")).unwrap();

    let (status, stdout, stderr) = run_to_exit(
        auditspan(work.path())
            .arg("run")
            .arg("--config")
            .arg(&config_path),
    );
    assert!(!status.success(), "started on a format 1 queue\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("queue format 1") && stderr.contains("run `auditspan queue migrate`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&data.join("queue").display().to_string()),
        "{stderr}"
    );

    let migrate = || {
        run_to_exit(
            auditspan(work.path())
                .args(["queue", "migrate", "--config"])
                .arg(&config_path),
        )
    };
    let (status, out, stderr) = migrate();
    assert!(status.success(), "{stderr}");
    assert!(
        out.contains(&format!(
            "format     1 -> {}",
            auditspan::queue::FORMAT_VERSION
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "kept       {SPANS} spans, committed {SPANS}, 1 cursors"
        )),
        "{out}"
    );
    let (status, out, stderr) = migrate();
    assert!(status.success(), "{stderr}");
    assert!(out.contains("nothing to migrate"), "{out}");

    let daemon = Daemon::start_with(|dir| config(dir, &data, ""));
    let spans = daemon.wait_for_spans(SPANS as usize);
    let got: Vec<&str> = spans
        .iter()
        .map(|s| s["attributes"]["vault.request.id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..SPANS).map(request_id).collect();
    assert_eq!(got, expected, "every span of the old queue, in order");
    daemon.wait_until(DEADLINE, "the sink to acknowledge them", || {
        daemon.metrics().get(COMMITTED, &[]) == SPANS as f64
            && daemon
                .metrics()
                .get("auditspan_sink_lag_spans", &[("sink", "stdout")])
                == 0.0
    });
}

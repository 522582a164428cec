//! Throughput of the queue store, and of the two ways to write a commit atomically in sled.
//!
//! `cargo run --release --example queue_bench [DIR]` (DIR: where to put the databases; the
//! default is a temporary directory, which may be tmpfs: use a real disk to count fsync).
//!
//! 1. raw sled, one commit = 2 span values of ~250 KB + 20 pending inserts + 20 removes +
//!    1 checkpoint, then flush; oldest values deleted as a queue does:
//!    a) one tree with key prefixes, `Tree::apply_batch`;
//!    b) five trees in one multi-tree transaction.
//! 2. `QueueStore`: commit (250 spans of 2 KB per commit, flushed), read (500 at a time),
//!    ack; then all three interleaved with two sinks, as the daemon runs.
#![allow(clippy::unwrap_used)]

use std::{path::Path, time::Instant};

use auditspan::{
    config::Overflow,
    queue::{Commit, QueueStore, SEGMENT_SIZE, StoreOptions},
};
use sled::Transactional;

const SPAN: usize = 2000;
const PER_COMMIT: usize = 250;
const COMMITS: usize = 400;

fn main() {
    let base = std::env::args().nth(1).map(std::path::PathBuf::from);
    let tmp = tempfile::tempdir_in(base.as_deref().unwrap_or(&std::env::temp_dir())).unwrap();
    println!(
        "spans of {SPAN} bytes, {PER_COMMIT} per commit, {COMMITS} commits, in {}",
        tmp.path().display()
    );
    raw_batch(&tmp.path().join("batch"));
    raw_transaction(&tmp.path().join("tx"));
    store(&tmp.path().join("store"));
}

fn config(path: &Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .segment_size(SEGMENT_SIZE)
        .cache_capacity(64 << 20)
        .open()
        .unwrap()
}

fn value() -> Vec<u8> {
    vec![7; PER_COMMIT / 2 * (SPAN + 4)]
}

fn report(what: &str, start: Instant, spans: usize) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what:<48} {:>9.0} spans/s ({spans} spans in {secs:.2} s)",
        spans as f64 / secs
    );
}

fn raw_batch(path: &Path) {
    let db = config(path);
    let start = Instant::now();
    for n in 0..COMMITS as u64 {
        let mut batch = sled::Batch::default();
        for half in 0..2u64 {
            batch.insert([&b"s"[..], &(2 * n + half).to_be_bytes()].concat(), value());
            if n >= 10 {
                batch.remove([&b"s"[..], &(2 * (n - 10) + half).to_be_bytes()].concat());
            }
        }
        for p in 0..20u64 {
            batch.insert(
                [&b"p"[..], &(n * 20 + p).to_be_bytes()].concat(),
                vec![1; 500],
            );
            if n > 0 {
                batch.remove([&b"p"[..], &((n - 1) * 20 + p).to_be_bytes()].concat());
            }
        }
        batch.insert(&b"ifile"[..], &n.to_be_bytes()[..]);
        batch.insert(&b"mcommitted"[..], &n.to_be_bytes()[..]);
        db.apply_batch(batch).unwrap();
        db.flush().unwrap();
    }
    report(
        "raw sled: one tree, apply_batch + flush",
        start,
        COMMITS * PER_COMMIT,
    );
}

fn raw_transaction(path: &Path) {
    let db = config(path);
    let trees: Vec<sled::Tree> = ["spans", "pending", "inputs", "meta", "cursors"]
        .iter()
        .map(|t| db.open_tree(t).unwrap())
        .collect();
    let (spans, pending, inputs, meta) = (&trees[0], &trees[1], &trees[2], &trees[3]);
    let start = Instant::now();
    for n in 0..COMMITS as u64 {
        let value = value();
        (spans, pending, inputs, meta)
            .transaction(|(spans, pending, inputs, meta)| {
                for half in 0..2u64 {
                    spans.insert(&(2 * n + half).to_be_bytes()[..], value.clone())?;
                    if n >= 10 {
                        spans.remove(&(2 * (n - 10) + half).to_be_bytes()[..])?;
                    }
                }
                for p in 0..20u64 {
                    pending.insert(&(n * 20 + p).to_be_bytes()[..], vec![1; 500])?;
                    if n > 0 {
                        pending.remove(&((n - 1) * 20 + p).to_be_bytes()[..])?;
                    }
                }
                inputs.insert(&b"file"[..], &n.to_be_bytes()[..])?;
                meta.insert(&b"committed"[..], &n.to_be_bytes()[..])?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
        db.flush().unwrap();
    }
    report(
        "raw sled: five trees, transaction + flush",
        start,
        COMMITS * PER_COMMIT,
    );
}

fn store(path: &Path) {
    let options = StoreOptions {
        max_bytes: 1 << 30,
        overflow: Overflow::DropOldest,
        min_free_bytes: 64 << 20,
        segment_bytes: auditspan::queue::SEGMENT_BYTES,
    };
    let mut store = QueueStore::open(path, options).unwrap();
    store.set_sinks(&["a".to_owned(), "b".to_owned()]).unwrap();
    let commit = Commit {
        spans: (0..PER_COMMIT).map(|n| vec![n as u8; SPAN]).collect(),
        pending_put: (0..20u32)
            .map(|n| (n.to_be_bytes().to_vec(), vec![1; 500]))
            .collect(),
        pending_remove: (20..40u32).map(|n| n.to_be_bytes().to_vec()).collect(),
        checkpoints: vec![("file".to_owned(), vec![0; 16])],
        ..Commit::default()
    };
    let total = COMMITS * PER_COMMIT;

    let start = Instant::now();
    for _ in 0..COMMITS {
        store.commit(&commit).unwrap();
    }
    report("store: commit (250 spans, flushed)", start, total);

    let start = Instant::now();
    let mut cursor = 0;
    let mut read = 0;
    loop {
        let spans = store.read_after(cursor, 500).unwrap();
        let Some((last, _)) = spans.last() else { break };
        cursor = *last;
        read += spans.len();
    }
    report("store: read_after (500 at a time)", start, read);

    let start = Instant::now();
    for seq in (500..=total as u64).step_by(500) {
        store.ack("a", seq).unwrap();
        store.ack("b", seq).unwrap();
    }
    report("store: ack (500 at a time, 2 sinks, deletes)", start, total);
    assert_eq!(store.stats().spans, 0);

    let start = Instant::now();
    let mut cursors = [store.stats().committed; 2];
    for _ in 0..COMMITS {
        store.commit(&commit).unwrap();
        for (sink, cursor) in ["a", "b"].into_iter().zip(&mut cursors) {
            let spans = store.read_after(*cursor, 500).unwrap();
            if let Some((last, _)) = spans.last() {
                *cursor = *last;
                store.ack(sink, *cursor).unwrap();
            }
        }
    }
    report("store: commit + read + ack, 2 sinks", start, total);
    let blobs = std::fs::read_dir(path.join("queue/blobs")).unwrap().count();
    let disk: u64 = std::fs::read_dir(path.join("queue"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "blobs/ files: {blobs}; queue files: {} MiB; stats: {:?}",
        disk >> 20,
        store.stats()
    );
}

//! Model check of the queue store (after vector-buffers' `model_check`): random sequences of
//! commits, reads, acks, restarts and sink changes run against the real [`QueueStore`] and
//! against an in-memory model; after every step both must agree on what each sink can read
//! and on the stats. Segments are small in most cases, so that commits close segments,
//! reads cross them and acks delete them, none of which the model knows about.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use auditspan::{
    config::Overflow,
    queue::{Commit, QueueStore, SinkStats, StoreOptions, record},
};
use proptest::prelude::*;

const SINKS: [&str; 4] = ["s0", "s1", "s2", "s3"];

#[derive(Debug, Clone)]
enum Action {
    /// Commit spans of these sizes (small enough that a commit is one record).
    Commit(Vec<usize>),
    /// Read up to `max` spans at a sink's cursor.
    Read {
        sink: usize,
        max: usize,
    },
    /// Ack `ahead` spans past a sink's cursor (clamped to what was committed).
    Ack {
        sink: usize,
        ahead: u64,
    },
    Restart,
    AddSink(usize),
    RemoveSink(usize),
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => prop::collection::vec(0usize..3000, 0..12).prop_map(Action::Commit),
        3 => (0..SINKS.len(), 1usize..30).prop_map(|(sink, max)| Action::Read { sink, max }),
        4 => (0..SINKS.len(), 0u64..25).prop_map(|(sink, ahead)| Action::Ack { sink, ahead }),
        1 => Just(Action::Restart),
        1 => (0..SINKS.len()).prop_map(Action::AddSink),
        1 => (0..SINKS.len()).prop_map(Action::RemoveSink),
    ]
}

fn arb_options() -> impl Strategy<Value = StoreOptions> {
    (
        prop_oneof![Just(Overflow::DropOldest), Just(Overflow::Block)],
        prop_oneof![2 => 5_000u64..60_000, 1 => Just(1u64 << 30)],
        prop_oneof![3 => 2_000u64..40_000, 1 => Just(1u64 << 30)],
    )
        .prop_map(|(overflow, max_bytes, segment_bytes)| StoreOptions {
            max_bytes,
            overflow,
            min_free_bytes: 0,
            segment_bytes,
        })
}

fn span(seq: u64, size: usize) -> Vec<u8> {
    (0..size).map(|i| (seq as usize * 31 + i) as u8).collect()
}

/// The queue as the design describes it: whole records, cursors, drop and release rules.
#[derive(Debug)]
struct Model {
    options: StoreOptions,
    records: BTreeMap<u64, Vec<Vec<u8>>>,
    committed: u64,
    cursors: BTreeMap<String, u64>,
    dropped_since_open: u64,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.records
            .values()
            .map(|r| record::record_bytes(r.iter().map(Vec::len)))
            .sum()
    }

    fn commit(&mut self, sizes: &[usize]) {
        if sizes.is_empty() {
            return;
        }
        let first = self.committed + 1;
        let spans: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| span(first + i as u64, *size))
            .collect();
        let new = record::record_bytes(sizes.iter().copied());
        if self.options.overflow == Overflow::DropOldest {
            while self.bytes() + new > self.options.max_bytes {
                let Some((first, spans)) = self.records.pop_first() else {
                    break;
                };
                let last = first + spans.len() as u64 - 1;
                self.dropped_since_open += spans.len() as u64;
                for cursor in self.cursors.values_mut() {
                    *cursor = (*cursor).max(last);
                }
            }
        }
        self.committed += spans.len() as u64;
        self.records.insert(first, spans);
    }

    fn release(&mut self) {
        let Some(&min) = self.cursors.values().min() else {
            return;
        };
        while let Some(entry) = self.records.first_entry() {
            if *entry.key() + entry.get().len() as u64 - 1 > min {
                break;
            }
            entry.remove();
        }
    }

    fn readable(&self, cursor: u64, max: usize) -> Vec<(u64, Vec<u8>)> {
        self.records
            .iter()
            .flat_map(|(first, spans)| (*first..).zip(spans.iter().cloned()))
            .filter(|(seq, _)| *seq > cursor)
            .take(max)
            .collect()
    }

    fn set_sinks(&mut self, sinks: &[String]) {
        let start = self
            .records
            .keys()
            .next()
            .map_or(self.committed, |first| first - 1);
        self.cursors = sinks
            .iter()
            .map(|name| (name.clone(), *self.cursors.get(name).unwrap_or(&start)))
            .collect();
        self.release();
    }
}

fn check(store: &mut QueueStore, model: &Model) {
    let stats = store.stats();
    let sinks: Vec<SinkStats> = model
        .cursors
        .iter()
        .map(|(name, cursor)| SinkStats {
            name: name.clone(),
            cursor: *cursor,
            lag: model.committed - cursor,
        })
        .collect();
    assert_eq!(stats.sinks, sinks);
    assert_eq!(stats.committed, model.committed);
    assert_eq!(stats.records, model.records.len() as u64);
    assert_eq!(
        stats.spans,
        model.records.values().map(|r| r.len() as u64).sum::<u64>()
    );
    assert_eq!(stats.bytes, model.bytes());
    assert_eq!(stats.oldest, model.records.keys().next().copied());
    assert_eq!(stats.dropped_spans, model.dropped_since_open);
    assert_eq!(stats.corrupt_records, 0);
    assert_eq!(
        store.is_full(),
        model.options.overflow == Overflow::Block && model.bytes() >= model.options.max_bytes
    );
    for cursor in model.cursors.values() {
        assert_eq!(
            store.read_after(*cursor, usize::MAX).unwrap(),
            model.readable(*cursor, usize::MAX)
        );
    }
}

fn run(options: StoreOptions, actions: Vec<Action>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = QueueStore::open(dir.path(), options).unwrap();
    let mut model = Model {
        options,
        records: BTreeMap::new(),
        committed: 0,
        cursors: BTreeMap::new(),
        dropped_since_open: 0,
    };
    let initial = vec!["s0".to_owned(), "s1".to_owned()];
    store.set_sinks(&initial).unwrap();
    model.set_sinks(&initial);
    check(&mut store, &model);
    for action in actions {
        match action {
            Action::Commit(sizes) => {
                let first = model.committed + 1;
                let spans = sizes
                    .iter()
                    .enumerate()
                    .map(|(i, size)| span(first + i as u64, *size))
                    .collect();
                let committed = store
                    .commit(&Commit {
                        spans,
                        ..Commit::default()
                    })
                    .unwrap();
                assert_eq!(committed.sequences, first..first + sizes.len() as u64);
                let dropped_before = model.dropped_since_open;
                model.commit(&sizes);
                assert_eq!(
                    committed.dropped_spans,
                    model.dropped_since_open - dropped_before
                );
            }
            Action::Read { sink, max } => {
                if let Some(cursor) = store.cursor(SINKS[sink]) {
                    assert_eq!(
                        store.read_after(cursor, max).unwrap(),
                        model.readable(cursor, max)
                    );
                }
            }
            Action::Ack { sink, ahead } => {
                let name = SINKS[sink];
                if let Some(cursor) = model.cursors.get(name).copied() {
                    let seq = (cursor + ahead).min(model.committed);
                    store.ack(name, seq).unwrap();
                    model.cursors.insert(name.to_owned(), seq);
                    model.release();
                } else {
                    assert!(store.ack(name, model.committed).is_err());
                }
            }
            Action::Restart => {
                drop(store);
                store = QueueStore::open(dir.path(), options).unwrap();
                model.dropped_since_open = 0;
            }
            Action::AddSink(sink) | Action::RemoveSink(sink) => {
                let mut sinks: Vec<String> = model.cursors.keys().cloned().collect();
                let name = SINKS[sink].to_owned();
                if matches!(action, Action::AddSink(_)) {
                    if !sinks.contains(&name) {
                        sinks.push(name);
                    }
                } else {
                    sinks.retain(|other| *other != name);
                }
                store.set_sinks(&sinks).unwrap();
                model.set_sinks(&sinks);
            }
        }
        check(&mut store, &model);
    }
}

/// A case on which the model check once failed with format 2 (a sink read records the
/// model had dropped: drop_oldest, small segments, restarts and sink changes); it did not
/// fail again when re-run alone, so it may depend on timing (sled's flusher). Kept as a
/// fixed scenario.
#[test]
fn model_regression_drop_oldest_across_segments_and_restarts() {
    use Action::{Ack, AddSink, Commit, Read, RemoveSink, Restart};
    use Overflow::DropOldest;
    let options = StoreOptions {
        max_bytes: 38063,
        overflow: DropOldest,
        min_free_bytes: 0,
        segment_bytes: 21961,
    };
    let actions = vec![
        Restart,
        AddSink(2),
        Read { sink: 1, max: 1 },
        Ack { sink: 1, ahead: 0 },
        Ack { sink: 1, ahead: 2 },
        Commit(vec![531, 604, 2625, 1478, 2821, 886, 830, 491]),
        Commit(vec![950, 2148, 2607, 2451]),
        Commit(vec![1209, 1591]),
        Commit(vec![2073, 934, 1944, 2081, 1448, 125, 272]),
        AddSink(1),
        Commit(vec![2797, 2013, 50, 1347, 1710, 1185]),
        Restart,
        RemoveSink(1),
        Read { sink: 0, max: 1 },
        AddSink(1),
        Ack { sink: 3, ahead: 5 },
        RemoveSink(3),
        Read { sink: 1, max: 8 },
        Commit(vec![745, 288, 2538, 950, 1835, 833, 2536]),
        Commit(vec![1981, 810]),
        Read { sink: 1, max: 29 },
        Commit(vec![1846, 563, 199, 2953]),
        Commit(vec![14, 2552, 2600, 757, 2269, 1420, 1122]),
        Restart,
        AddSink(3),
        Commit(vec![876]),
        Read { sink: 2, max: 20 },
        AddSink(0),
        Commit(vec![1890, 2876, 1962]),
        Restart,
        Ack { sink: 3, ahead: 7 },
        Ack { sink: 2, ahead: 21 },
        Read { sink: 3, max: 11 },
        Read { sink: 0, max: 29 },
        Commit(vec![808, 1938]),
        Ack { sink: 3, ahead: 4 },
        Ack { sink: 1, ahead: 21 },
        Read { sink: 3, max: 2 },
        Commit(vec![2910, 1776]),
        Ack { sink: 2, ahead: 10 },
    ];
    run(options, actions);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn model_check(options in arb_options(), actions in prop::collection::vec(arb_action(), 0..64)) {
        run(options, actions);
    }
}

//! Vault's own request metrics, derived from the spans the correlator makes (DESIGN
//! "Self-metrics"): `auditspan_vault_requests_total{operation,mount_point,namespace,status}`
//! and `auditspan_vault_request_duration_seconds{operation,mount_point}`.
//!
//! [`VaultRequests`] belongs to the correlator, which calls [`VaultRequests::record`] once
//! per span it makes, on its own thread; nothing else touches it.
//!
//! # Labels
//! - `operation`: one of [`OPERATIONS`] (Vault's and OpenBao's `logical.Operation` values);
//!   anything else, or none, is `other`.
//! - `mount_point`: what the span name shows after the operation (DESIGN "Span contract"):
//!   `request.mount_point`, else the first path segment + `/`, else [`NO_MOUNT`].
//! - `namespace`: `request.namespace.path` (e.g. `team-a/`), [`ROOT_NAMESPACE`] when absent
//!   or empty (the root namespace has no path).
//! - `status`: `error` when the span's status is error (either event had a non-empty
//!   `error`), else `ok`.
//!
//! Which spans count: a request is counted once its response was seen, so `paired` and
//! `request_missing` spans; `response_missing` spans (Vault never answered, or the response
//! went to another device) are not requests Vault finished. Durations are those of
//! `paired` spans only: the others have none.
//!
//! # Bounds
//! `mount_point` and `namespace` values come from the audit stream, so each is capped by a
//! [`LabelFolder`]: the first `metrics.max_label_values` (default
//! [`DEFAULT_MAX_LABEL_VALUES`]) distinct values are kept for the life of the process, every
//! later one is counted as [`OTHER`] and in `auditspan_metric_labels_folded_total{label}`.
//! (Real mount points end in `/` and namespaces too, so neither clashes with `other`,
//! `root` or `none`.) The handle caches hold one entry per label combination seen, which
//! is bounded by the same caps; in practice a mount lives in one namespace, so the series
//! number about operations × mounts × 2.
//!
//! # Cost
//! Per span: the operation and mount point are split off the span name, one pass over the
//! attribute keys finds the namespace, two hash lookups turn the strings into ids, one more
//! finds the cached handles; then an atomic add and, for paired spans, one histogram sample.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use metrics::{Counter, Histogram};

use crate::{
    attr::AttrRef,
    span::{Outcome, Span, Status},
    telemetry::metrics as m,
};

/// Default of `metrics.max_label_values`.
pub const DEFAULT_MAX_LABEL_VALUES: usize = 500;

/// Vault's and OpenBao's request operations (`logical.Operation`): Vault's `create`
/// through `rollback`, `patch` and `recover` of newer Vault versions, OpenBao's `scan`.
pub const OPERATIONS: [&str; 15] = [
    "create",
    "read",
    "update",
    "patch",
    "delete",
    "list",
    "help",
    "alias-lookahead",
    "resolve-role",
    "header",
    "revoke",
    "renew",
    "rollback",
    "recover",
    "scan",
];

/// The label value for an operation outside [`OPERATIONS`] and for values past a cap.
pub const OTHER: &str = "other";

/// The `namespace` label of the root namespace.
pub const ROOT_NAMESPACE: &str = "root";

/// The `mount_point` label of a request with neither a mount point nor a path.
pub const NO_MOUNT: &str = "none";

/// The attribute holding the namespace path.
const NAMESPACE_KEY: &str = "request.namespace.path";

/// Index into [`OPERATIONS`]; `OPERATIONS.len()` stands for [`OTHER`].
type OperationId = u8;

/// The `operation` label value for `operation`: itself when Vault defines it, else
/// [`OTHER`].
pub fn operation_label(operation: &str) -> &'static str {
    operation_name(operation_id(operation))
}

fn operation_id(operation: &str) -> OperationId {
    OPERATIONS
        .iter()
        .position(|o| *o == operation)
        .unwrap_or(OPERATIONS.len()) as OperationId
}

fn operation_name(id: OperationId) -> &'static str {
    OPERATIONS.get(usize::from(id)).copied().unwrap_or(OTHER)
}

/// Keeps the first `cap` distinct values of one label and folds every later value into
/// [`OTHER`], counting each fold.
pub struct LabelFolder {
    cap: usize,
    ids: HashMap<Box<str>, u32, RandomState>,
    values: Vec<Box<str>>,
    folded: Counter,
}

impl LabelFolder {
    /// The id of [`OTHER`].
    pub const OTHER_ID: u32 = u32::MAX;

    /// A folder for the label `label` (the `label` of `metric_labels_folded_total`).
    pub fn new(label: &'static str, cap: usize) -> Self {
        LabelFolder {
            cap,
            ids: HashMap::default(),
            values: Vec::new(),
            folded: m::metric_labels_folded(label),
        }
    }

    /// The id `value` is counted under: its own while fewer than `cap` values are known,
    /// else [`LabelFolder::OTHER_ID`].
    pub fn id(&mut self, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        if self.values.len() >= self.cap {
            self.folded.increment(1);
            return Self::OTHER_ID;
        }
        // Below the cap, which config validation keeps far below u32::MAX.
        let id = self.values.len() as u32;
        self.values.push(value.into());
        self.ids.insert(value.into(), id);
        id
    }

    /// The label value of `id`.
    pub fn value(&self, id: u32) -> &str {
        self.values.get(id as usize).map_or(OTHER, |v| v)
    }

    /// Distinct values kept.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The labels of one span, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLabels<'a> {
    pub operation: &'static str,
    pub mount_point: &'a str,
    pub namespace: &'a str,
    pub status: &'static str,
}

/// The label values DESIGN defines for `span`, before the caps.
pub fn labels(span: &Span) -> RequestLabels<'_> {
    let (operation, mount_point, namespace, error) = parts(span);
    RequestLabels {
        operation: operation_name(operation),
        mount_point,
        namespace,
        status: status(error),
    }
}

fn status(error: bool) -> &'static str {
    if error { "error" } else { "ok" }
}

/// Operation, mount point, namespace and whether the span is an error.
fn parts(span: &Span) -> (OperationId, &str, &str, bool) {
    // The name is "{operation} {mount}", or only the operation when there is neither a
    // mount point nor a path (span::span_name); Vault's operations have no spaces.
    let (operation, mount_point) = span
        .name
        .split_once(' ')
        .unwrap_or((span.name.as_str(), NO_MOUNT));
    let namespace = span
        .attributes
        .keys()
        .position(|k| k == NAMESPACE_KEY)
        .and_then(|i| match span.attributes.value(i) {
            AttrRef::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        })
        .unwrap_or(ROOT_NAMESPACE);
    let error = matches!(span.status, Status::Error(_));
    (operation_id(operation), mount_point, namespace, error)
}

/// Key of a `vault_requests_total` series: operation, mount id, namespace id, error.
type RequestKey = (OperationId, u32, u32, bool);

/// Key of a `vault_request_duration_seconds` series: operation, mount id.
type DurationKey = (OperationId, u32);

/// The Vault request metrics of one correlator, with their label caps and handle caches.
pub struct VaultRequests {
    mounts: LabelFolder,
    namespaces: LabelFolder,
    requests: HashMap<RequestKey, Counter, RandomState>,
    durations: HashMap<DurationKey, Histogram, RandomState>,
}

impl VaultRequests {
    /// `max_label_values`: distinct `mount_point` and `namespace` values kept, each.
    pub fn new(max_label_values: usize) -> Self {
        VaultRequests {
            mounts: LabelFolder::new("mount_point", max_label_values),
            namespaces: LabelFolder::new("namespace", max_label_values),
            requests: HashMap::default(),
            durations: HashMap::default(),
        }
    }

    /// Counts `span` if it is a request Vault answered, and its duration if it is paired.
    pub fn record(&mut self, span: &Span) {
        if span.outcome == Outcome::ResponseMissing {
            return;
        }
        let (operation, mount_point, namespace, error) = parts(span);
        let mount = self.mounts.id(mount_point);
        let namespace = self.namespaces.id(namespace);
        let (mounts, namespaces) = (&self.mounts, &self.namespaces);
        self.requests
            .entry((operation, mount, namespace, error))
            .or_insert_with(|| {
                m::vault_requests(
                    operation_name(operation),
                    mounts.value(mount),
                    namespaces.value(namespace),
                    status(error),
                )
            })
            .increment(1);
        if span.outcome == Outcome::Paired {
            self.durations
                .entry((operation, mount))
                .or_insert_with(|| {
                    m::vault_request_duration(operation_name(operation), mounts.value(mount))
                })
                .record(span.duration_nanos() as f64 / 1e9);
        }
    }

    /// Distinct `mount_point` values kept (for tests).
    pub fn mounts(&self) -> usize {
        self.mounts.len()
    }

    /// Distinct `namespace` values kept (for tests).
    pub fn namespaces(&self) -> usize {
        self.namespaces.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::{AttrValue, Attributes};

    fn span(name: &str, namespace: Option<AttrValue>, outcome: Outcome, error: bool) -> Span {
        let mut attributes: Attributes = [("request.path", AttrValue::Str("x".into()))]
            .into_iter()
            .collect();
        if let Some(ns) = namespace {
            attributes.push_value(NAMESPACE_KEY, &ns).unwrap();
        }
        Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            name: name.to_owned(),
            start_unix_nano: 1_000_000_000,
            end_unix_nano: 1_002_500_000,
            status: if error {
                Status::Error("permission denied".into())
            } else {
                Status::Unset
            },
            outcome,
            attributes,
        }
    }

    #[test]
    fn operations_are_a_fixed_set() {
        for op in OPERATIONS {
            assert_eq!(operation_label(op), op);
        }
        for op in [
            "unknown",
            "",
            "READ",
            "read ",
            "write",
            "login",
            "kmip-request",
        ] {
            assert_eq!(operation_label(op), OTHER, "{op:?}");
        }
        assert!(OPERATIONS.len() < usize::from(OperationId::MAX));
        assert!(!OPERATIONS.contains(&OTHER));
    }

    #[test]
    fn labels_follow_the_span() {
        let s = span(
            "read kv/",
            Some(AttrValue::Str("team-a/".into())),
            Outcome::Paired,
            false,
        );
        assert_eq!(
            labels(&s),
            RequestLabels {
                operation: "read",
                mount_point: "kv/",
                namespace: "team-a/",
                status: "ok",
            }
        );
        // Root namespace: no path, or an empty one; a non-string is not a path either.
        for ns in [
            None,
            Some(AttrValue::Str(String::new())),
            Some(AttrValue::Int(3)),
        ] {
            let s = span("update sys/", ns, Outcome::RequestMissing, true);
            let l = labels(&s);
            assert_eq!(l.namespace, ROOT_NAMESPACE);
            assert_eq!(l.status, "error");
            assert_eq!(l.mount_point, "sys/");
        }
        // No mount point and no path: the name is the operation alone.
        assert_eq!(
            labels(&span("help", None, Outcome::Paired, false)).mount_point,
            NO_MOUNT
        );
        // An operation Vault does not define, or none ("unknown" in the name).
        let s = span("unknown auth/", None, Outcome::Paired, false);
        let l = labels(&s);
        assert_eq!((l.operation, l.mount_point), (OTHER, "auth/"));
    }

    #[test]
    fn folder_keeps_the_first_values_and_folds_the_rest() {
        let mut folder = LabelFolder::new("mount_point", 3);
        let ids: Vec<u32> = ["a/", "b/", "a/", "c/", "d/", "b/", "e/"]
            .iter()
            .map(|v| folder.id(v))
            .collect();
        assert_eq!(
            ids,
            [0, 1, 0, 2, LabelFolder::OTHER_ID, 1, LabelFolder::OTHER_ID]
        );
        assert_eq!(folder.len(), 3);
        assert_eq!(folder.value(2), "c/");
        assert_eq!(folder.value(LabelFolder::OTHER_ID), OTHER);
    }

    /// 2,000 distinct mount points against a cap of 10: ten kept, every later span under
    /// `other`; repeats of a kept value stay themselves.
    #[test]
    fn vault_requests_cap_mounts_and_namespaces() {
        let mut v = VaultRequests::new(10);
        for i in 0..2_000 {
            let ns = AttrValue::Str(format!("ns-{i}/"));
            v.record(&span(
                &format!("read m{i}/"),
                Some(ns),
                Outcome::Paired,
                false,
            ));
        }
        v.record(&span("read m0/", None, Outcome::Paired, false));
        assert_eq!(v.mounts(), 10);
        assert_eq!(v.namespaces(), 10);
        // 10 kept (mount, ns) pairs, the folded pair, and m0/ in the folded namespace
        // ("root" came after the cap was reached).
        assert_eq!(v.requests.len(), 12);
        assert_eq!(v.durations.len(), 11);
    }

    #[test]
    fn response_missing_is_not_a_request() {
        let mut v = VaultRequests::new(10);
        v.record(&span("read kv/", None, Outcome::ResponseMissing, false));
        assert!(v.requests.is_empty());
        v.record(&span("read kv/", None, Outcome::RequestMissing, false));
        assert_eq!(v.requests.len(), 1);
        assert!(v.durations.is_empty(), "request_missing has no duration");
    }
}

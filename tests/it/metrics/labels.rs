//! Label caps: past `metrics.max_label_values` distinct values, the rest fold into `other`.

use std::collections::BTreeSet;

use super::{CREATED, FOLDED, VAULT_DURATION, VAULT_REQUESTS, exposition};
use crate::support::{DEADLINE, Daemon, Metrics, default_config, pair_with, send};

/// The `mount_point` values of `name`'s series.
fn mount_points(text: &str, name: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| {
            let at = l.find("mount_point=\"")? + "mount_point=\"".len();
            Some(l[at..at + l[at..].find('"')?].to_owned())
        })
        .collect()
}

/// 2,000 distinct mount points with `max_label_values = 25`: 25 values plus `other` in
/// both Vault metrics, every request still counted, and the 1,975 folded ones counted in
/// `metric_labels_folded_total{label="mount_point"}`.
#[test]
fn label_cap_folds_mount_points_into_other() {
    let daemon = Daemon::start_with(|dir| {
        default_config(dir).replace(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n",
            "[metrics]\nlisten = \"127.0.0.1:0\"\nmax_label_values = 25\n",
        )
    });
    let events: String = (0..2_000)
        .map(|i| pair_with(i, |e| e.mount(&format!("m{i}/"))))
        .collect();
    send(&daemon, events);
    daemon.wait_until(DEADLINE, "2,000 spans", || {
        daemon.metrics().sum(CREATED) >= 2_000.0
    });
    let text = exposition(&daemon);
    let m = Metrics::parse(&text);
    for name in [VAULT_REQUESTS, &format!("{VAULT_DURATION}_count")] {
        let mounts = mount_points(&text, name);
        assert_eq!(mounts.len(), 26, "{name}: {mounts:?}");
        assert!(mounts.contains("other"), "{name}");
        assert!(
            mounts.contains("m0/") && mounts.contains("m24/"),
            "the first 25 kept"
        );
    }
    assert_eq!(m.sum(VAULT_REQUESTS), 2_000.0);
    assert_eq!(
        m.get(
            VAULT_REQUESTS,
            &[
                ("operation", "read"),
                ("mount_point", "other"),
                ("namespace", "root"),
                ("status", "ok")
            ]
        ),
        1_975.0
    );
    assert_eq!(m.get(FOLDED, &[("label", "mount_point")]), 1_975.0);
    assert_eq!(m.get(FOLDED, &[("label", "namespace")]), 0.0);
}

/// The default cap is 500 distinct values.
#[test]
fn default_label_cap_is_500() {
    let m_text = {
        let daemon = Daemon::start_default();
        let events: String = (0..2_000)
            .map(|i| pair_with(i, |e| e.mount(&format!("m{i}/"))))
            .collect();
        send(&daemon, events);
        daemon.wait_until(DEADLINE, "2,000 spans", || {
            daemon.metrics().sum(CREATED) >= 2_000.0
        });
        exposition(&daemon)
    };
    let m = Metrics::parse(&m_text);
    let mounts = mount_points(&m_text, VAULT_REQUESTS);
    assert_eq!(mounts.len(), 501);
    assert!(mounts.contains("other"));
    assert_eq!(m.get(FOLDED, &[("label", "mount_point")]), 1_500.0);
    assert_eq!(m.sum(VAULT_REQUESTS), 2_000.0);
}

//! `auditspan import`'s progress on stderr: a line at each interval when stderr is not a
//! terminal, a progress bar when it is (a pseudo-terminal from `script`).

use std::process::Command;

use crate::support::auditspan;
use crate::support::files::pairs_text;

/// An audit log big enough that the import takes a few hundred milliseconds at least.
fn big_log(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("audit.log");
    std::fs::write(&path, pairs_text(0..20_000)).unwrap();
    path
}

/// Not on a terminal: progress lines at the interval (10 s by default; 50 ms here), each
/// naming bytes of the total, events per second, spans and the ETA; then the summary.
#[test]
fn import_prints_progress_lines_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let log = big_log(dir.path());
    let out = auditspan(dir.path())
        .args(["import", "--progress-interval-ms", "50"])
        .arg(&log)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("auditspan import: ") && l.contains(" MB of "))
        .collect();
    assert!(!progress.is_empty(), "no progress line:\n{stderr}");
    for line in &progress {
        assert!(
            line.contains("%), ")
                && line.contains(" events (")
                && line.contains("/s), ")
                && line.contains(" spans, ETA "),
            "{line}"
        );
    }
    assert!(
        stderr.contains("40000 lines: 40000 events"),
        "the summary:\n{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 20_000);
}

/// On a terminal: an indicatif bar with the bytes, events, spans and ETA, cleared at the
/// end, before the summary.
#[test]
fn import_draws_a_progress_bar_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let log = big_log(dir.path());
    let command = format!(
        "'{}' import '{}' > /dev/null",
        env!("CARGO_BIN_EXE_auditspan"),
        log.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir.path())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains(" events ("), "no bar drawn:\n{screen}");
    assert!(screen.contains("ETA"), "{screen}");
    assert!(screen.contains("40000 lines: 40000 events"), "{screen}");
}

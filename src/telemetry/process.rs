//! The standard, unprefixed `process_*` metrics (as Prometheus client libraries export
//! them), read at scrape time.
//!
//! `metrics-process` reads `/proc/self` (through `procfs`); this module only renders what
//! it found, in the text format, after the recorder's own output. It does not go through
//! the `metrics` facade: counters there are integers, and CPU seconds would lose their
//! fractions. A value the platform cannot tell is left out.

use std::fmt::Write as _;

/// Appends the process metrics to `out`, an exposition that ends with a newline.
pub fn render(out: &mut String) {
    let m = metrics_process::collector::collect();
    let mut family = |name: &str, kind: &str, help: &str, value: Option<f64>| {
        if let Some(value) = value {
            // Writing to a String does not fail.
            write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
            )
            .ok();
        }
    };
    family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        m.cpu_seconds_total,
    );
    family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        m.resident_memory_bytes.map(|v| v as f64),
    );
    family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        m.virtual_memory_bytes.map(|v| v as f64),
    );
    family(
        "process_virtual_memory_max_bytes",
        "gauge",
        "Maximum amount of virtual memory available in bytes.",
        // 0 means unlimited: leave it out rather than report a limit of 0.
        m.virtual_memory_max_bytes
            .filter(|v| *v > 0)
            .map(|v| v as f64),
    );
    family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        m.open_fds.map(|v| v as f64),
    );
    family(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        m.max_fds.filter(|v| *v > 0).map(|v| v as f64),
    );
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        m.start_time_seconds.map(|v| v as f64),
    );
    family(
        "process_threads",
        "gauge",
        "Number of OS threads in the process.",
        m.threads.map(|v| v as f64),
    );
}

#[cfg(test)]
mod tests {
    /// This process has CPU time, memory, open files and a start time.
    #[test]
    fn renders_the_standard_names() {
        let mut out = String::new();
        super::render(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                out.contains(&format!("\n{name} ")),
                "{name} missing:\n{out}"
            );
        }
        assert!(out.contains("# TYPE process_cpu_seconds_total counter\n"));
        assert!(out.ends_with("\n\n"));
    }
}

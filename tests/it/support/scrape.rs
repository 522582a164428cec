//! One scrape of `/metrics`: [`Metrics`] parses the Prometheus text format into samples
//! keyed by metric name and sorted labels, and answers the questions tests and the bench
//! ask of them (a sample, a sum, the values of one label, a histogram quantile).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::http_agent;

/// A sample's labels, sorted by name.
type Labels = Vec<(String, String)>;

/// One scrape of `/metrics` (Prometheus text format), keyed by metric name and sorted labels.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    samples: BTreeMap<(String, Labels), f64>,
}

impl Metrics {
    /// GET `http://{addr}/metrics` and parse it; the error names what failed (connection,
    /// status, body).
    pub fn scrape(addr: SocketAddr) -> Result<Metrics, String> {
        let mut response = http_agent()
            .get(&format!("http://{addr}/metrics"))
            .call()
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("status {status}: {body}"));
        }
        Ok(Metrics::parse(&body))
    }

    /// Parses the text exposition format. Panics naming the line on a malformed sample: a
    /// scrape that Prometheus would reject is a bug in the daemon.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (name, labels, value) = parse_sample(line)
                    .unwrap_or_else(|| panic!("malformed metrics line: {line:?}\n{text}"));
                ((name, labels), value)
            })
            .collect();
        Metrics { samples }
    }

    /// The sample with exactly these labels (in any order), if present.
    pub fn get_opt(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut labels: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.sort();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The sample with exactly these labels; 0 when absent (a counter that was never
    /// incremented is usually not exported at all).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get_opt(name, labels).unwrap_or(0.0)
    }

    /// The sum of every sample of `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.sum_matching(name, &[])
    }

    /// The sum of the samples of `name` whose labels include all of `labels`.
    pub fn sum_matching(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|((n, have), _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Whether any sample of `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.samples.keys().any(|(n, _)| n == name)
    }

    /// The samples of `name` summed per value of `label` (a sample without it counts under
    /// ""), e.g. spans created per `outcome`.
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for ((n, labels), value) in &self.samples {
            if n != name {
                continue;
            }
            let key = labels
                .iter()
                .find(|(k, _)| k == label)
                .map_or_else(String::new, |(_, v)| v.clone());
            *sums.entry(key).or_default() += value;
        }
        sums
    }

    /// The `q` quantile of the histogram `name` (all its series together), interpolated
    /// linearly within the bucket that holds it, as Prometheus' `histogram_quantile` does;
    /// NaN when the histogram has no sample.
    pub fn histogram_quantile(&self, name: &str, q: f64) -> f64 {
        let mut buckets: Vec<(f64, f64)> = self
            .by_label(&format!("{name}_bucket"), "le")
            .into_iter()
            .map(|(le, count)| {
                let le = match le.as_str() {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().unwrap_or(f64::NAN),
                };
                (le, count)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let Some(&(_, total)) = buckets.last() else {
            return f64::NAN;
        };
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for (le, count) in buckets {
            if count >= rank && count > 0.0 {
                if le.is_infinite() {
                    return lower;
                }
                return lower
                    + (le - lower) * (rank - below) / (count - below).max(f64::MIN_POSITIVE);
            }
            (lower, below) = (le, count);
        }
        lower
    }
}

/// `name{k="v",...} value [timestamp]` → (name, sorted labels, value).
fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_owned();
            rest = rest[eq + 1..].strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()? {
                        (_, 'n') => value.push('\n'),
                        (_, escaped) => value.push(escaped),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            rest = &rest[end + 1..];
            labels.push((key, value));
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        number => number.parse().ok()?,
    };
    labels.sort();
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scrape parser reads names, escaped label values in any order, and special values.
    #[test]
    fn metrics_parser_reads_the_text_format() {
        let metrics = Metrics::parse(
            "# TYPE auditspan_spans_created_total counter\n\
             auditspan_spans_created_total{outcome=\"paired\"} 7\n\
             auditspan_spans_created_total{outcome=\"response_missing\"} 2\n\
             auditspan_events_ignored_total{reason=\"audit_test\",input=\"unix\"} 1\n\
             odd{a=\"x\\\"y\\\\z\\n\"} +Inf\n\
             auditspan_correlator_pending 0 1712345678000\n",
        );
        assert_eq!(
            metrics.get("auditspan_spans_created_total", &[("outcome", "paired")]),
            7.0
        );
        assert_eq!(metrics.sum("auditspan_spans_created_total"), 9.0);
        assert_eq!(
            metrics.get(
                "auditspan_events_ignored_total",
                &[("input", "unix"), ("reason", "audit_test")]
            ),
            1.0
        );
        assert_eq!(
            metrics.sum_matching(
                "auditspan_events_ignored_total",
                &[("reason", "audit_test")]
            ),
            1.0
        );
        assert_eq!(metrics.get("odd", &[("a", "x\"y\\z\n")]), f64::INFINITY);
        assert_eq!(
            metrics.get_opt("auditspan_correlator_pending", &[]),
            Some(0.0)
        );
        assert_eq!(metrics.get("absent_total", &[]), 0.0);
    }
}

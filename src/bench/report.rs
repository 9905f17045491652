//! A bench run's figures: a human table and one JSON object with the same
//! numbers, plus the machine they were measured on (figures from shared,
//! noisy machines mean little without it).

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// What one run measured.
#[derive(Debug)]
pub struct Report {
    scenario: String,
    parameters: Vec<(String, Value)>,
    figures: Vec<Figure>,
}

#[derive(Debug)]
struct Figure {
    name: String,
    value: f64,
    unit: &'static str,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_owned(),
            parameters: Vec::new(),
            figures: Vec::new(),
        }
    }

    /// Records an input of the run (members, rate, ...).
    pub fn parameter(&mut self, name: &str, value: impl Into<Value>) -> &mut Self {
        self.parameters.push((name.to_owned(), value.into()));
        self
    }

    /// Records a measured figure.
    pub fn figure(&mut self, name: &str, value: f64, unit: &'static str) -> &mut Self {
        self.figures.push(Figure {
            name: name.to_owned(),
            value,
            unit,
        });
        self
    }

    /// Records p50/p90/p99/p99.9/max of a latency histogram kept in
    /// microseconds, as milliseconds.
    pub fn latency(&mut self, prefix: &str, histogram: &Histogram<u64>) -> &mut Self {
        if histogram.is_empty() {
            return self;
        }
        for (label, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)] {
            let ms = histogram.value_at_quantile(q) as f64 / 1000.0;
            self.figure(&format!("{prefix} {label}"), ms, "ms");
        }
        self.figure(
            &format!("{prefix} max"),
            histogram.max() as f64 / 1000.0,
            "ms",
        )
    }

    /// Copies the figures of `part` named in `names` (those it has), each
    /// prefixed with `prefix`: how a combined run reports its parts.
    pub fn include(&mut self, prefix: &str, part: &Report, names: &[&str]) -> &mut Self {
        for figure in part
            .figures
            .iter()
            .filter(|f| names.contains(&f.name.as_str()))
        {
            self.figure(
                &format!("{prefix} {}", figure.name),
                figure.value,
                figure.unit,
            );
        }
        self
    }

    /// A figure by name, for callers that derive further figures.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value)
    }

    /// The table printed at the end of a run.
    pub fn to_table(&self) -> String {
        let mut out = format!("switchboard bench {} ({})\n", self.scenario, machine());
        let params: Vec<String> = self
            .parameters
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(out, "  {}", params.join("  "));
        let width = self.figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
        for f in &self.figures {
            let _ = writeln!(
                out,
                "  {:width$}  {:>14} {}",
                f.name,
                format_value(f.value),
                f.unit
            );
        }
        out
    }

    /// The same figures as one JSON object:
    /// `{scenario, machine, parameters: {...}, results: {name: {value, unit}}}`.
    pub fn to_json(&self) -> String {
        let parameters: Map<String, Value> = self.parameters.iter().cloned().collect();
        let results: Map<String, Value> = self
            .figures
            .iter()
            .map(|f| (f.name.clone(), json!({"value": f.value, "unit": f.unit})))
            .collect();
        json!({
            "scenario": self.scenario,
            "machine": machine(),
            "parameters": parameters,
            "results": results,
        })
        .to_string()
    }
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// The machine the figures come from: cores, OS and architecture.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// A histogram for latencies in microseconds, 1 µs to 10 min, 3 digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut report = Report::new("fanout");
        report
            .parameter("members", 1000)
            .parameter("protocol", "chat");
        report.figure("delivered", 123_456.0, "msg/s");
        let mut h = latency_histogram();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        report.latency("latency", &h);
        report
    }

    #[test]
    fn the_json_report_parses_and_carries_every_figure() {
        let parsed: Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(parsed["scenario"], "fanout");
        assert_eq!(parsed["parameters"]["members"], 1000);
        assert_eq!(parsed["results"]["delivered"]["value"], 123_456.0);
        assert_eq!(parsed["results"]["delivered"]["unit"], "msg/s");
        assert_eq!(parsed["results"]["latency p99"]["value"], 0.99);
        assert_eq!(parsed["results"]["latency max"]["value"], 1.0);
    }

    #[test]
    fn the_table_has_one_line_per_figure() {
        let table = sample().to_table();
        assert!(table.starts_with("switchboard bench fanout ("));
        assert!(table.contains("members=1000  protocol=chat"));
        assert!(table.contains("delivered"));
        assert_eq!(table.lines().count(), 2 + 1 + 5);
    }
}

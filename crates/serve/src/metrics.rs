//! `GET /metrics` in the Prometheus text format: requests by route and status, a request
//! latency histogram, a batch size histogram and the predictions made.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Latency buckets, in seconds.
const LATENCY_BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];
/// Batch size buckets, in images.
const BATCH_BOUNDS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A cumulative histogram with fixed bounds.
struct Histogram {
    bounds: &'static [f64],
    /// One count per bound, then the `+Inf` bucket; not cumulative (summed when rendered).
    counts: Vec<AtomicU64>,
    /// Sum of observations, in millionths, so that it can be atomic.
    sum_micros: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let bucket = self
            .bounds
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value * 1e6).round() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (index, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = self
                .bounds
                .get(index)
                .map_or("+Inf".to_string(), |bound| bound.to_string());
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {cumulative}");
    }
}

/// The server's counters, shared by the handlers and the inference thread.
pub struct Metrics {
    /// `(route, status) -> requests`; routes are the router's patterns, so the label set is
    /// bounded whatever paths clients ask for.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency: Histogram,
    batch_sizes: Histogram,
    predictions: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All counts at zero.
    pub fn new() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(&LATENCY_BOUNDS),
            batch_sizes: Histogram::new(&BATCH_BOUNDS),
            predictions: AtomicU64::new(0),
        }
    }

    /// A request to `route` answered with `status` after `elapsed`.
    pub fn observe_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((route, status)).or_insert(0) += 1;
        }
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// A forward pass over `images` images.
    pub fn observe_batch(&self, images: usize) {
        self.batch_sizes.observe(images as f64);
        self.predictions.fetch_add(images as u64, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mnist_lstm_http_requests_total HTTP requests answered, by route and status.\n\
             # TYPE mnist_lstm_http_requests_total counter\n",
        );
        if let Ok(requests) = self.requests.lock() {
            for ((route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "mnist_lstm_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        self.latency.render(
            &mut out,
            "mnist_lstm_http_request_duration_seconds",
            "Time from a request's headers to its answer.",
        );
        self.batch_sizes.render(
            &mut out,
            "mnist_lstm_batch_size_images",
            "Images per forward pass of the inference thread.",
        );
        let _ = writeln!(
            out,
            "# HELP mnist_lstm_predictions_total Images classified.\n\
             # TYPE mnist_lstm_predictions_total counter\n\
             mnist_lstm_predictions_total {}",
            self.predictions.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_requests_are_labelled() {
        let metrics = Metrics::new();
        metrics.observe_request("/v1/predict", 200, Duration::from_micros(1500));
        metrics.observe_request("/v1/predict", 400, Duration::from_secs(20));
        metrics.observe_batch(3);
        let text = metrics.render();
        assert!(
            text.contains("mnist_lstm_http_requests_total{route=\"/v1/predict\",status=\"400\"} 1")
        );
        assert!(text.contains("mnist_lstm_http_request_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("mnist_lstm_http_request_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("mnist_lstm_http_request_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("mnist_lstm_batch_size_images_bucket{le=\"4\"} 1"));
        assert!(text.contains("mnist_lstm_predictions_total 3"));
    }
}

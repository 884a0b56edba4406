//! Prometheus metrics: requests by route and status, latency histograms by route, and the
//! gallery's size. Written by hand in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

impl Metrics {
    /// Records one answered request.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let key = (method.to_string(), route.to_string(), status);
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = latency.entry(route.to_string()).or_default();
        for (count, bound) in h.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    /// The exposition text, with the requests in flight and the gallery's subjects and faces.
    pub fn render(&self, in_flight: usize, subjects: usize, faces: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP maskid_http_requests_in_flight Requests being answered now (probes excepted).\n");
        out.push_str("# TYPE maskid_http_requests_in_flight gauge\n");
        let _ = writeln!(out, "maskid_http_requests_in_flight {in_flight}");
        out.push_str(
            "# HELP maskid_http_requests_total Requests by method, route and status (499: the client hung up first).\n",
        );
        out.push_str("# TYPE maskid_http_requests_total counter\n");
        for ((method, route, status), n) in self.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(
                out,
                "maskid_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP maskid_http_request_duration_seconds Time to answer, by route.\n");
        out.push_str("# TYPE maskid_http_request_duration_seconds histogram\n");
        for (route, h) in self.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "maskid_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "maskid_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "maskid_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", h.sum);
            let _ = writeln!(out, "maskid_http_request_duration_seconds_count{{route=\"{route}\"}} {}", h.count);
        }
        out.push_str("# HELP maskid_gallery_subjects Enrolled people.\n# TYPE maskid_gallery_subjects gauge\n");
        let _ = writeln!(out, "maskid_gallery_subjects {subjects}");
        out.push_str("# HELP maskid_gallery_faces Enrolled faces.\n# TYPE maskid_gallery_faces gauge\n");
        let _ = writeln!(out, "maskid_gallery_faces {faces}");
        out
    }
}

//! Prometheus metrics: requests by route and status, latency histograms by route, where the
//! model requests' time goes (waiting for a model slot, then at work), and the gallery's size.
//! Written by hand in the text exposition format.

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

impl Histogram {
    fn add(&mut self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (count, bound) in self.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Its lines in the exposition format, `labels` (`key="value"` pairs) on each.
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (count, bound) in self.counts.iter().zip(BUCKETS) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}", self.count);
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// The service's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Model requests (identify, verify, enrol): from their body being in to a model slot
    /// being theirs, and then at work (decode, detect, align, embed, search or store).
    model_wait: Mutex<Histogram>,
    model_work: Mutex<Histogram>,
}

impl Metrics {
    /// Records one answered request.
    pub fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let key = (method.to_string(), route.to_string(), status);
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()).entry(key).or_default() += 1;
        self.latency.lock().unwrap_or_else(|e| e.into_inner()).entry(route.to_string()).or_default().add(elapsed);
    }

    /// Records where one model request's time went.
    pub fn record_model(&self, wait: Duration, work: Duration) {
        self.model_wait.lock().unwrap_or_else(|e| e.into_inner()).add(wait);
        self.model_work.lock().unwrap_or_else(|e| e.into_inner()).add(work);
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
            h.write(&mut out, "maskid_http_request_duration_seconds", &format!("route=\"{route}\""));
        }
        for (name, help, h) in [
            ("maskid_model_wait_seconds", "Model requests waiting for a model slot.", &self.model_wait),
            (
                "maskid_model_work_seconds",
                "Model requests at work: decode, detect, align, embed, search.",
                &self.model_work,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            h.lock().unwrap_or_else(|e| e.into_inner()).write(&mut out, name, "");
        }
        out.push_str("# HELP maskid_gallery_subjects Enrolled people.\n# TYPE maskid_gallery_subjects gauge\n");
        let _ = writeln!(out, "maskid_gallery_subjects {subjects}");
        out.push_str("# HELP maskid_gallery_faces Enrolled faces.\n# TYPE maskid_gallery_faces gauge\n");
        let _ = writeln!(out, "maskid_gallery_faces {faces}");
        out
    }
}

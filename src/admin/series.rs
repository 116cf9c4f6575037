//! The dashboard's time series: once a second, every version's requests per second, success
//! rate and p50 / p99 latency over that second, from the per-version totals the metrics keep
//! (the numbers `http_requests_total` and `http_request_duration_seconds` export). The last five
//! minutes are kept.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::metrics::{Metrics, VersionSample};

/// Points kept per version: five minutes, one a second.
const KEPT: usize = 300;

/// One second of one version: when (seconds since the epoch), requests per second, success
/// rate (percent), p50 and p99 latency (ms); no rate or latency without requests.
type Point = (f64, f64, Option<f64>, Option<f64>, Option<f64>);

#[derive(Default)]
struct Track {
    last: Option<(Instant, VersionSample)>,
    points: VecDeque<Point>,
}

/// Every version's recent points.
#[derive(Default)]
pub(crate) struct Series {
    tracks: Mutex<HashMap<(String, String), Track>>,
}

impl Series {
    /// Takes a point of every version from `metrics`.
    pub(crate) fn sample(&self, metrics: &Metrics) {
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        for (key, total) in metrics.versions() {
            let track = tracks.entry(key).or_default();
            if let Some((then, before)) = &track.last {
                let secs = now.duration_since(*then).as_secs_f64().max(1e-3);
                let d = total.since(before);
                track.points.push_back((
                    wall,
                    d.requests as f64 / secs,
                    d.success_rate(),
                    d.quantile_ms(0.5),
                    d.quantile_ms(0.99),
                ));
                while track.points.len() > KEPT {
                    track.points.pop_front();
                }
            }
            track.last = Some((now, total));
        }
    }

    /// `[{service, version, points: [[t, rps, success, p50, p99], ...]}]`.
    pub(crate) fn json(&self) -> Value {
        let tracks = self.tracks.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Value> = tracks
            .iter()
            .map(|((service, version), t)| {
                let points: Vec<Value> = t
                    .points
                    .iter()
                    .map(|p| json!([p.0, p.1, p.2, p.3, p.4]))
                    .collect();
                json!({"service": service, "version": version, "points": points})
            })
            .collect();
        out.sort_by(|a, b| {
            (a["service"].as_str(), a["version"].as_str())
                .cmp(&(b["service"].as_str(), b["version"].as_str()))
        });
        Value::Array(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_rates_over_each_second() {
        let metrics = Metrics::new();
        let series = Series::default();
        let v2 = metrics.version("shop", "v2");
        series.sample(&metrics);
        for i in 0..10 {
            v2.record(
                if i < 9 { 200 } else { 503 },
                std::time::Duration::from_millis(3),
            );
        }
        series.sample(&metrics);
        let j = series.json();
        let p = &j[0]["points"][0];
        assert_eq!(j[0]["service"], "shop");
        assert_eq!(j[0]["version"], "v2");
        assert!(p[1].as_f64().unwrap() > 10.0, "{p}");
        assert_eq!(p[2].as_f64(), Some(90.0));
        assert!(p[4].as_f64().unwrap() <= 5.0, "{p}");
    }
}

//! Health checks (Kong's `healthchecks`, weir's DestinationRule extension `healthChecks`).

use super::*;
use crate::backend::target_health::{ActiveSpec, Counting, HealthSpec, ProbeKind};
use crate::config::kong;

impl<'a> Checker<'a> {
    /// Health-check settings within Kong's ranges.
    pub(super) fn health_checks(&mut self, r: &Resource, h: &kong::Healthchecks) {
        if h.threshold.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
            self.err(r, h.pos, "healthchecks.threshold must be between 0 and 100");
        }
        let mut statuses: Vec<(Pos, &[u16])> = Vec::new();
        let mut counts: Vec<(Pos, Option<u32>)> = Vec::new();
        if let Some(a) = &h.active {
            if let Some(k) = &a.kind
                && !matches!(k.value.as_str(), "http" | "https" | "tcp")
            {
                self.err(
                    r,
                    k.pos,
                    format!(
                        "active check type {}: weir probes http, https and tcp",
                        k.value
                    ),
                );
            }
            if a.kind.as_ref().is_some_and(|k| k.value == "https")
                && a.https_verify_certificate != Some(false)
                && crate::tls::upstream::system_bundle().is_none()
            {
                self.err(
                    r,
                    a.pos,
                    "https probes verify against the system CA bundle, and none was found (set SSL_CERT_FILE, or https_verify_certificate: false)",
                );
            }
            if a.timeout.is_some_and(|t| t <= 0.0) {
                self.err(r, a.pos, "active.timeout must be above 0");
            }
            if let Some(x) = &a.healthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.push((x.pos, x.successes));
            }
            if let Some(x) = &a.unhealthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.extend([x.http_failures, x.tcp_failures, x.timeouts].map(|c| (x.pos, c)));
            }
        }
        if let Some(p) = &h.passive {
            if let Some(x) = &p.healthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.push((x.pos, x.successes));
            }
            if let Some(x) = &p.unhealthy {
                statuses.push((x.pos, x.http_statuses.as_deref().unwrap_or_default()));
                counts.extend([x.http_failures, x.tcp_failures, x.timeouts].map(|c| (x.pos, c)));
            }
        }
        for (pos, list) in statuses {
            if let Some(bad) = list.iter().find(|s| !(100..=999).contains(*s)) {
                self.err(r, pos, format!("{bad} is not an HTTP status code"));
            }
        }
        for (pos, count) in counts {
            if count.is_some_and(|c| c > 255) {
                self.err(r, pos, "health-check counters go from 0 to 255");
            }
        }
    }
}

/// Health checks with Kong's defaults for what is not set; `None` when nothing is enabled
/// (every threshold and interval 0, Kong's default).
pub(super) fn health_spec(h: &kong::Healthchecks) -> Option<HealthSpec> {
    let secs = |s: Option<f64>| Duration::from_secs_f64(s.unwrap_or(0.0).max(0.0));
    let active = h.active.as_ref().and_then(|a| {
        let healthy = a.healthy.clone().unwrap_or_default();
        let unhealthy = a.unhealthy.clone().unwrap_or_default();
        let spec = ActiveSpec {
            kind: match a.kind.as_ref().map(|k| k.value.as_str()) {
                Some("tcp") => ProbeKind::Tcp,
                Some("https") => ProbeKind::Https {
                    sni: a.https_sni.clone(),
                    verify: a.https_verify_certificate != Some(false),
                },
                _ => ProbeKind::Http,
            },
            path: a.http_path.clone().unwrap_or_else(|| "/".to_owned()),
            timeout: Duration::from_secs_f64(a.timeout.unwrap_or(1.0).max(0.001)),
            healthy_interval: secs(healthy.interval),
            unhealthy_interval: secs(unhealthy.interval),
            counting: Counting {
                healthy_statuses: healthy.http_statuses.unwrap_or_else(|| vec![200, 302]),
                successes: healthy.successes.unwrap_or(0),
                unhealthy_statuses: unhealthy
                    .http_statuses
                    .unwrap_or_else(|| vec![429, 404, 500, 501, 502, 503, 504, 505]),
                http_failures: unhealthy.http_failures.unwrap_or(0),
                tcp_failures: unhealthy.tcp_failures.unwrap_or(0),
                timeouts: unhealthy.timeouts.unwrap_or(0),
            },
        };
        (!spec.healthy_interval.is_zero() || !spec.unhealthy_interval.is_zero()).then_some(spec)
    });
    let passive = h.passive.as_ref().and_then(|p| {
        let healthy = p.healthy.clone().unwrap_or_default();
        let unhealthy = p.unhealthy.clone().unwrap_or_default();
        let counting = Counting {
            healthy_statuses: healthy
                .http_statuses
                .unwrap_or_else(|| (200..=208).chain([226]).chain(300..=308).collect()),
            successes: healthy.successes.unwrap_or(0),
            unhealthy_statuses: unhealthy
                .http_statuses
                .unwrap_or_else(|| vec![429, 500, 503]),
            http_failures: unhealthy.http_failures.unwrap_or(0),
            tcp_failures: unhealthy.tcp_failures.unwrap_or(0),
            timeouts: unhealthy.timeouts.unwrap_or(0),
        };
        (counting.http_failures > 0 || counting.tcp_failures > 0 || counting.timeouts > 0)
            .then_some(counting)
    });
    let threshold = h.threshold.unwrap_or(0.0);
    (active.is_some() || passive.is_some() || threshold > 0.0).then_some(HealthSpec {
        active,
        passive,
        threshold,
    })
}

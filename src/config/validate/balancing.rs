//! `loadBalancer` (simple, consistent hash and its keys, warmup) and `outlierDetection`.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn load_balancer(&mut self, r: &Resource, lb: &istio::LoadBalancerSettings) {
        if lb.simple == Some(istio::SimpleLb::Passthrough) {
            self.err(r, lb.pos, "loadBalancer PASSTHROUGH is not supported");
        }
        if let Some(ch) = &lb.consistent_hash {
            if lb.simple.is_some() {
                self.err(
                    r,
                    lb.pos,
                    "loadBalancer takes one of simple and consistentHash",
                );
            }
            self.hash_key(r, ch);
            if let Some(f) = &ch.fallback {
                self.hash_key(r, f);
                if f.fallback.is_some() || f.ring_hash.is_some() || f.maglev.is_some() {
                    self.err(
                        r,
                        f.pos,
                        "consistentHash.fallback is one key, without fallback, ringHash or maglev",
                    );
                }
            }
            if ch.ring_hash.is_some() && ch.maglev.is_some() {
                self.err(r, ch.pos, "consistentHash takes one of ringHash and maglev");
            }
            if let Some(size) = ch.maglev.as_ref().and_then(|m| m.table_size)
                && !is_prime(size)
            {
                self.err(r, ch.pos, format!("maglev.tableSize {size} is not a prime"));
            }
            let ring = ch
                .ring_hash
                .as_ref()
                .and_then(|h| h.minimum_ring_size)
                .or(ch.minimum_ring_size);
            if let Some(size) = ring
                .into_iter()
                .chain(ch.maglev.as_ref().and_then(|m| m.table_size))
                .find(|&s| s > MAX_TABLE_SIZE)
            {
                self.err(
                    r,
                    ch.pos,
                    format!("hash table size {size} is above {MAX_TABLE_SIZE}"),
                );
            }
        }
        if let Some(w) = &lb.warmup {
            if w.duration.is_none() {
                self.err(r, w.pos, "warmup needs a duration");
            }
            if w.minimum_percent
                .is_some_and(|p| !(0.0..=100.0).contains(&p.0))
            {
                self.err(r, w.pos, "warmup.minimumPercent must be between 0 and 100");
            }
            if w.aggression.is_some_and(|a| a.0 < 1.0) {
                self.err(r, w.pos, "warmup.aggression must be at least 1");
            }
        }
    }

    /// Exactly one well-formed request key.
    pub(super) fn hash_key(&mut self, r: &Resource, ch: &istio::ConsistentHashLb) {
        let keys = [
            ch.http_header_name.is_some(),
            ch.http_cookie.is_some(),
            ch.use_source_ip == Some(true),
            ch.http_query_parameter_name.is_some(),
            ch.use_path == Some(true),
            ch.uri_capture.is_some(),
        ];
        if keys.iter().filter(|k| **k).count() != 1 {
            self.err(
                r,
                ch.pos,
                "consistentHash takes one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName, usePath, uriCapture",
            );
        }
        if let Some(h) = &ch.http_header_name
            && HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            self.err(r, ch.pos, format!("`{h}` is not a header name"));
        }
        if let Some(c) = &ch.http_cookie
            && (c.name.is_empty() || c.name.contains([';', '=', ' ', ',']))
        {
            self.err(r, c.pos, format!("`{}` is not a cookie name", c.name));
        }
        if let Some(name) = &ch.uri_capture
            && (name.is_empty()
                || name.starts_with(|c: char| c.is_ascii_digit())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            self.err(r, ch.pos, format!("`{name}` is not a capture group name"));
        }
    }
}

/// Outlier detection with Istio's defaults for what is not set.
pub(super) fn outlier_policy(od: &istio::OutlierDetection) -> OutlierPolicy {
    let d = OutlierPolicy::default();
    let dur = |v: Option<crate::config::decode::Dur>, default| v.map_or(default, |v| v.0);
    OutlierPolicy {
        consecutive_5xx: od
            .consecutive_5xx_errors
            .or(od.consecutive_errors)
            .unwrap_or(d.consecutive_5xx),
        consecutive_gateway: od.consecutive_gateway_errors.unwrap_or(0),
        consecutive_local: od
            .consecutive_local_origin_failures
            .unwrap_or(d.consecutive_local),
        split_local_origin: od.split_external_local_origin_errors.unwrap_or(false),
        interval: dur(od.interval, d.interval),
        base_ejection: dur(od.base_ejection_time, d.base_ejection),
        max_ejection_percent: od.max_ejection_percent.unwrap_or(d.max_ejection_percent),
        min_health_percent: od.min_health_percent.unwrap_or(d.min_health_percent),
        error_codes: od
            .outlier_detection_http_error_codes
            .iter()
            .map(|&c| c as u16)
            .collect(),
    }
}

/// `consistentHash` as weir runs it; `None` when no key is set (reported by validation).
pub(super) fn hash_policy(ch: &istio::ConsistentHashLb) -> Option<HashPolicy> {
    let algo = match (&ch.maglev, &ch.ring_hash) {
        (Some(m), _) => HashAlgo::Maglev(m.table_size.unwrap_or(DEFAULT_MAGLEV_SIZE)),
        (None, ring) => HashAlgo::Ring(
            ring.as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .unwrap_or(DEFAULT_RING_SIZE),
        ),
    };
    Some(HashPolicy {
        key: hash_key(ch)?,
        fallback: ch.fallback.as_deref().and_then(hash_key),
        algo,
    })
}

/// The request key `ch` names.
pub(super) fn hash_key(ch: &istio::ConsistentHashLb) -> Option<HashKey> {
    Some(if let Some(h) = &ch.http_header_name {
        HashKey::Header(HeaderName::from_bytes(h.as_bytes()).ok()?)
    } else if let Some(c) = &ch.http_cookie {
        HashKey::Cookie {
            name: c.name.clone(),
            path: c.path.clone(),
            ttl: c.ttl.map(|t| t.0),
        }
    } else if ch.use_source_ip == Some(true) {
        HashKey::SourceIp
    } else if ch.use_path == Some(true) {
        HashKey::Path
    } else if let Some(name) = &ch.uri_capture {
        HashKey::UriCapture(name.clone())
    } else {
        HashKey::Query(ch.http_query_parameter_name.clone()?)
    })
}

pub(super) fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

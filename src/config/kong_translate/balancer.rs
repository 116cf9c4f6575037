//! An upstream's balancer settings (`algorithm`, `hash_on`, `hash_fallback`) as Istio's
//! `loadBalancer`.

use super::entities::{Errors, Upstream};
use crate::config::decode::Dur;
use crate::config::istio::{
    ConsistentHashLb, HttpCookie, LoadBalancerSettings, RingHash, SimpleLb,
};
use crate::config::yaml::Pos;
use std::time::Duration;

pub(super) fn load_balancer(u: &Upstream, e: &mut Errors<'_>) -> Option<LoadBalancerSettings> {
    let spec = &u.spec;
    let algorithm = spec.algorithm.as_ref();
    let simple = |lb| {
        Some(LoadBalancerSettings {
            simple: Some(lb),
            ..LoadBalancerSettings::default()
        })
    };
    match algorithm.map_or("round-robin", |a| a.value.as_str()) {
        // `weighted-round-robin` is the seed's name for it; Kong's round robin is weighted.
        "round-robin" | "weighted-round-robin" => simple(SimpleLb::RoundRobin),
        // Kong's `latency` is a peak-EWMA balancer; least-request is weir's nearest.
        "least-connections" | "latency" => simple(SimpleLb::LeastRequest),
        "consistent-hashing" => {
            let on = spec.hash_on.as_ref();
            let on_kind = on.map_or("none", |o| o.value.as_str());
            let fallback = spec.hash_fallback.as_ref();
            let fallback_kind = fallback.map_or("none", |f| f.value.as_str());
            let fallback_pos = fallback.map_or(u.at.pos, |f| f.pos);
            // Kong's schema rules for the pair.
            if fallback_kind != "none" {
                let clash = match on_kind {
                    "none" => Some("hash_fallback must be none when hash_on is none".to_owned()),
                    "cookie" => {
                        Some("hash_fallback must be none when hash_on is cookie".to_owned())
                    }
                    k if k == fallback_kind => {
                        let names = match k {
                            "header" => Some((&spec.hash_on_header, &spec.hash_fallback_header)),
                            "query_arg" => {
                                Some((&spec.hash_on_query_arg, &spec.hash_fallback_query_arg))
                            }
                            "uri_capture" => {
                                Some((&spec.hash_on_uri_capture, &spec.hash_fallback_uri_capture))
                            }
                            _ => None,
                        };
                        match names {
                            Some((a, b))
                                if a.as_deref().map(str::to_ascii_lowercase)
                                    != b.as_deref().map(str::to_ascii_lowercase) =>
                            {
                                None
                            }
                            _ => Some(format!("hash_fallback must differ from hash_on ({k})")),
                        }
                    }
                    _ => None,
                };
                if let Some(message) = clash {
                    e.at(&u.at, fallback_pos, message);
                    return None;
                }
            }
            let first = hash_key(u, on_kind, on.map_or(u.at.pos, |o| o.pos), Which::On, e)?;
            let second = hash_key(u, fallback_kind, fallback_pos, Which::Fallback, e)?;
            // weir identifies no consumers (it has no authentication plugins), so `consumer`
            // never gives a key and the fallback decides, as in Kong without a consumer.
            let (key, fallback) = match (first, second) {
                (Some(k), f) => (k, f.map(Box::new)),
                (None, Some(f)) => (f, None),
                (None, None) => return simple(SimpleLb::RoundRobin),
            };
            Some(LoadBalancerSettings {
                consistent_hash: Some(ConsistentHashLb {
                    pos: u.at.pos,
                    ring_hash: Some(RingHash {
                        minimum_ring_size: Some(u64::from(spec.slots.unwrap_or(10_000))),
                        ..RingHash::default()
                    }),
                    fallback,
                    ..key
                }),
                ..LoadBalancerSettings::default()
            })
        }
        other => {
            let pos = algorithm.map_or(u.at.pos, |a| a.pos);
            e.at(
                &u.at,
                pos,
                format!(
                    "algorithm `{other}`: expected round-robin, consistent-hashing, least-connections or latency"
                ),
            );
            None
        }
    }
}

/// Which of an upstream's two hash keys.
#[derive(Clone, Copy)]
pub(super) enum Which {
    On,
    Fallback,
}

/// The `consistentHash` key for Kong's `hash_on` or `hash_fallback` value `kind`; `Some(None)`
/// for `none` and `consumer` (which never gives a key in weir).
pub(super) fn hash_key(
    u: &Upstream,
    kind: &str,
    pos: Pos,
    which: Which,
    e: &mut Errors<'_>,
) -> Option<Option<ConsistentHashLb>> {
    let spec = &u.spec;
    let prefix = match which {
        Which::On => "hash_on",
        Which::Fallback => "hash_fallback",
    };
    let mut need = |field: &Option<String>, what: &str, name: &str| {
        if field.is_none() {
            e.at(&u.at, pos, format!("{prefix} {what} needs {name}"));
        }
        field.clone()
    };
    let key = ConsistentHashLb {
        pos: u.at.pos,
        ..ConsistentHashLb::default()
    };
    let pick = |on: &Option<String>, fallback: &Option<String>| match which {
        Which::On => on.clone(),
        Which::Fallback => fallback.clone(),
    };
    Some(Some(match kind {
        "none" | "consumer" => return Some(None),
        "ip" => ConsistentHashLb {
            use_source_ip: Some(true),
            ..key
        },
        "path" => ConsistentHashLb {
            use_path: Some(true),
            ..key
        },
        "header" => ConsistentHashLb {
            http_header_name: Some(need(
                &pick(&spec.hash_on_header, &spec.hash_fallback_header),
                "header",
                &format!("{prefix}_header"),
            )?),
            ..key
        },
        "query_arg" => ConsistentHashLb {
            http_query_parameter_name: Some(need(
                &pick(&spec.hash_on_query_arg, &spec.hash_fallback_query_arg),
                "query_arg",
                &format!("{prefix}_query_arg"),
            )?),
            ..key
        },
        "uri_capture" => ConsistentHashLb {
            uri_capture: Some(need(
                &pick(&spec.hash_on_uri_capture, &spec.hash_fallback_uri_capture),
                "uri_capture",
                &format!("{prefix}_uri_capture"),
            )?),
            ..key
        },
        // Kong names the cookie in `hash_on_cookie` for both keys and, when the request has
        // none, makes one up and sets it on the response (a session cookie).
        "cookie" => ConsistentHashLb {
            http_cookie: Some(HttpCookie {
                name: need(&spec.hash_on_cookie, "cookie", "hash_on_cookie")?,
                path: Some(
                    spec.hash_on_cookie_path
                        .clone()
                        .unwrap_or_else(|| "/".to_owned()),
                ),
                ttl: Some(Dur(Duration::ZERO)),
                ..HttpCookie::default()
            }),
            ..key
        },
        other => {
            e.at(
                &u.at,
                pos,
                format!(
                    "{prefix} `{other}`: expected none, consumer, ip, header, cookie, path, query_arg or uri_capture"
                ),
            );
            return None;
        }
    }))
}

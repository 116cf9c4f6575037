//! Keeps the key sets of `RequestAuthentication` rules fresh: a task per source (a `jwksUri`,
//! or an issuer's OpenID discovery document), started when a configuration first names it and
//! ended when no configuration does.
//!
//! A source is fetched at once, then every [`REFRESH`] (Istio's default), and again when a
//! token names a `kid` it does not have (at most once per `authn::ASK_EVERY`: keys rotated at
//! the issuer are picked up without a restart). A fetch that fails keeps the keys already held;
//! a source that never answered holds none, and its tokens are refused (fail closed), which
//! the log says and `weir_auth_jwks_keys` shows as 0. Failed fetches are retried with a
//! backoff from 1 s to [`RETRY_MAX`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Method;
use serde_json::Value;

use super::call::call;
use crate::policy::access::authn::{Jwks, KeySource};
use crate::policy::access::jwk::{KeySet, parse_jwks};
use crate::snapshot::Snapshot;

/// How often keys are fetched again.
pub(crate) const REFRESH: Duration = Duration::from_secs(20 * 60);
/// The longest wait before retrying a failed fetch.
const RETRY_MAX: Duration = Duration::from_secs(60);
/// How often a waiting fetcher checks that its source is still named.
const CHECK: Duration = Duration::from_secs(5);

/// Starts a fetcher for every source of `snap` that has none.
pub(crate) fn watch(snap: &Snapshot) {
    for source in snap.key_sources() {
        if source.claim() {
            tokio::spawn(run(Arc::downgrade(&source), source.wake.clone()));
        }
    }
}

async fn run(source: Weak<KeySource>, wake: Arc<tokio::sync::Notify>) {
    let mut failures = 0u32;
    loop {
        let Some(s) = source.upgrade() else {
            return;
        };
        let wait = match fetch(&s).await {
            Ok(set) => {
                if s.keys().as_deref() != Some(&set) {
                    tracing::info!(source = s.label(), keys = set.keys.len(), "JWKS fetched.");
                }
                s.store(set);
                failures = 0;
                REFRESH
            }
            Err(e) => {
                s.failed();
                failures += 1;
                if s.keys().is_some() {
                    tracing::warn!(source = s.label(), error = %e, "Cannot fetch the JWKS: the keys fetched before keep working.");
                } else {
                    tracing::error!(source = s.label(), error = %e, "Cannot fetch the JWKS, and none was ever fetched: its tokens are refused (fail closed).");
                }
                Duration::from_secs(1u64 << failures.min(6)).min(RETRY_MAX)
            }
        };
        drop(s);
        // Wait for the next fetch, or for a token with an unknown kid; end when no
        // configuration names the source any more.
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if source.strong_count() == 0 {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let asked = tokio::select! {
                () = tokio::time::sleep((deadline - now).min(CHECK)) => false,
                () = wake.notified() => true,
            };
            if asked {
                break;
            }
        }
    }
}

/// Fetches a source's keys.
async fn fetch(s: &KeySource) -> Result<KeySet, String> {
    let uri = match &s.jwks {
        Jwks::Inline(set) => return Ok(set.clone()),
        Jwks::Uri(u) => u.clone(),
        Jwks::Discovery(issuer) => {
            let url = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let doc = get(&url, s.timeout).await?;
            let doc: Value = serde_json::from_str(&doc)
                .map_err(|e| format!("{url}: not an OpenID configuration: {e}"))?;
            doc.get("jwks_uri")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{url}: no jwks_uri"))?
                .to_owned()
        }
    };
    let text = get(&uri, s.timeout).await?;
    parse_jwks(&text).map_err(|e| format!("{uri}: {e}"))
}

async fn get(url: &str, timeout: Duration) -> Result<String, String> {
    let reply = call(Method::GET, url, None, timeout)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if reply.status != 200 {
        return Err(format!("{url} answered {}", reply.status));
    }
    Ok(reply.body)
}

//! Flagger's webhooks: a JSON `POST` of `{name, namespace, phase, checksum, metadata}`; any 2xx
//! answer passes, anything else (after `retries` further tries) fails with the reason.
//!
//! A webhook (or metrics provider) whose host weir routes on its mesh listener (a ServiceEntry
//! host, such as the tutorials' `flagger-loadtester.test`) is called through it, as a sidecar
//! would send it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::spec::{HookKind, HookSpec, RolloutSpec};
use super::status::{Event, Status};
use crate::snapshot::Snapshot;

/// Weir's mesh listener and what it routes: where webhooks to mesh hosts are sent.
#[derive(Clone)]
pub(super) struct Mesh {
    /// The routing served now.
    pub(crate) snap: Arc<Snapshot>,
    /// The mesh listener.
    pub(crate) addr: SocketAddr,
}

impl Mesh {
    /// The mesh listener, if it routes `url`'s host.
    pub(super) fn route(&self, url: &str) -> Option<SocketAddr> {
        let uri: http::Uri = url.parse().ok()?;
        let host = uri.host()?.to_ascii_lowercase();
        self.snap
            .table(self.addr)?
            .has_host(&host)
            .then_some(self.addr)
    }
}

/// Pause between the tries of one webhook.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Calls every webhook of `kind`, in order, until one fails.
pub(super) async fn run(
    spec: &RolloutSpec,
    kind: HookKind,
    status: &Status,
    mesh: &Mesh,
) -> Result<(), String> {
    for h in spec.hooks.iter().filter(|h| h.kind == kind) {
        call(spec, h, status, BTreeMap::new(), mesh)
            .await
            .map_err(|why| format!("webhook {} {why}", h.name))?;
    }
    Ok(())
}

/// Sends `events` to every `event` webhook, in order; failures are logged.
pub(super) async fn send_events(
    spec: &RolloutSpec,
    status: &Status,
    events: &[Event],
    mesh: &Mesh,
) {
    for h in spec.hooks.iter().filter(|h| h.kind == HookKind::Event) {
        for e in events {
            let extra = BTreeMap::from([
                ("eventMessage".to_owned(), e.message.clone()),
                ("eventType".to_owned(), e.kind.clone()),
                (
                    "timestamp".to_owned(),
                    format!("{}", (e.time * 1000.0) as u64),
                ),
            ]);
            if let Err(why) = call(spec, h, status, extra, mesh).await {
                tracing::warn!(canary = %spec.name, webhook = %h.name, "Event webhook failed: {why}");
            }
        }
    }
}

/// Calls one webhook, with its retries.
async fn call(
    spec: &RolloutSpec,
    hook: &HookSpec,
    status: &Status,
    extra: BTreeMap<String, String>,
    mesh: &Mesh,
) -> Result<(), String> {
    let mut metadata = hook.metadata.clone();
    metadata.extend(extra);
    let payload = json!({
        "name": spec.name,
        "namespace": spec.namespace,
        "phase": status.phase,
        "checksum": status.revision,
        "metadata": metadata,
    });
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    let via = mesh.route(&hook.url);
    let mut why = String::new();
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let sent = crate::control::call::call_via(
            http::Method::POST,
            &hook.url,
            Some(("application/json", body.clone())),
            hook.timeout,
            via,
            None,
        )
        .await;
        match sent {
            Ok(r) if (200..300).contains(&r.status) => return Ok(()),
            Ok(r) => {
                let text: String = r.body.trim().chars().take(200).collect();
                why = format!("answered {}", r.status);
                if !text.is_empty() {
                    why = format!("{why}: {text}");
                }
            }
            Err(e) => why = e.to_string(),
        }
    }
    Err(why)
}

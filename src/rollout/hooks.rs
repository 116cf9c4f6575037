//! Flagger's webhooks: a JSON `POST` of `{name, namespace, phase, checksum, metadata}`; any 2xx
//! answer passes, anything else (after `retries` further tries) fails with the reason.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use super::machine::{Event, Status};
use super::spec::{HookKind, HookSpec, RolloutSpec};

/// Pause between the tries of one webhook.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Calls every webhook of `kind`, in order, until one fails.
pub(super) async fn run(spec: &RolloutSpec, kind: HookKind, status: &Status) -> Result<(), String> {
    for h in spec.hooks.iter().filter(|h| h.kind == kind) {
        call(spec, h, status, BTreeMap::new())
            .await
            .map_err(|why| format!("webhook {} {why}", h.name))?;
    }
    Ok(())
}

/// Sends `events` to every `event` webhook, in order; failures are logged.
pub(super) async fn send_events(spec: &RolloutSpec, status: &Status, events: &[Event]) {
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
            if let Err(why) = call(spec, h, status, extra).await {
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
    let mut why = String::new();
    for attempt in 0..=hook.retries {
        if attempt > 0 {
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        let sent = crate::client::call(
            http::Method::POST,
            &hook.url,
            Some(("application/json", body.clone())),
            hook.timeout,
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

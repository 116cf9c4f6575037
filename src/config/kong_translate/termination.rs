//! Kong's `request-termination` plugin: a fixed answer instead of the upstream's.

use super::entities::{At, Errors};
use super::plugins::config_of;
use crate::config::istio::{HeaderOperations, Headers, HttpBody, HttpDirectResponse, HttpRoute};
use crate::config::kong::KongPlugin;

/// Kong's `request-termination`: a fixed answer instead of the upstream's.
pub(super) struct Termination {
    pub(super) status: u32,
    pub(super) body: String,
    pub(super) content_type: String,
    /// Only requests with this header are answered.
    pub(super) trigger: Option<String>,
}

impl Termination {
    pub(super) fn apply(&self, mut rule: HttpRoute) -> HttpRoute {
        rule.route.clear();
        rule.rewrite = None;
        rule.retries = None;
        rule.timeout = None;
        rule.direct_response = Some(HttpDirectResponse {
            pos: rule.pos,
            status: self.status,
            body: Some(HttpBody {
                pos: rule.pos,
                string: Some(self.body.clone()),
                ..HttpBody::default()
            }),
        });
        rule.headers = Some(Headers {
            pos: rule.pos,
            response: Some(HeaderOperations {
                pos: rule.pos,
                set: [("content-type".to_owned(), self.content_type.clone())].into(),
                ..HeaderOperations::default()
            }),
            ..Headers::default()
        });
        rule
    }
}

pub(super) fn termination(plugin: &(At, KongPlugin), e: &mut Errors<'_>) -> Option<Termination> {
    let at = &plugin.0;
    pub(super) const KEYS: [&str; 6] = [
        "status_code",
        "message",
        "body",
        "content_type",
        "trigger",
        "echo",
    ];
    let (pos, config) = config_of(plugin, &KEYS, e);
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    if config.get("echo").and_then(|v| v.as_bool()) == Some(true) {
        e.at(at, pos, "request-termination: echo is not supported yet");
        return None;
    }
    let status = config.get("status_code").map_or(Some(503), |v| v.as_u64());
    let Some(status) = status.filter(|s| (100..=599).contains(s)) else {
        e.at(
            at,
            pos,
            "request-termination: status_code must be between 100 and 599",
        );
        return None;
    };
    if text("message").is_some() && text("body").is_some() {
        e.at(
            at,
            pos,
            "request-termination: give message or body, not both",
        );
        return None;
    }
    let (body, content_type) = match (text("body"), text("message")) {
        (Some(body), _) => (
            body,
            text("content_type").unwrap_or_else(|| "application/json; charset=utf-8".to_owned()),
        ),
        (None, message) => {
            // Without a message, the status's reason phrase.
            let message = message.unwrap_or_else(|| {
                http::StatusCode::from_u16(status as u16)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("Service unavailable")
                    .to_owned()
            });
            (
                serde_json::json!({ "message": message }).to_string(),
                "application/json; charset=utf-8".to_owned(),
            )
        }
    };
    Some(Termination {
        status: status as u32,
        body,
        content_type,
        trigger: text("trigger").map(|t| t.to_ascii_lowercase()),
    })
}

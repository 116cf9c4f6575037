//! `corsPolicy`, compiled.

use super::*;
use crate::policy::cors::Cors;

impl<'a> Checker<'a> {
    /// `corsPolicy`, compiled.
    pub(super) fn cors(&mut self, r: &Resource, cors: &istio::CorsPolicy) -> Option<Box<Cors>> {
        let mut origins = Vec::new();
        for o in &cors.allow_origins {
            origins.push(self.string_match(r, o, false)?);
        }
        origins.extend(cors.allow_origin.iter().map(|o| match o.as_str() {
            "*" => StrMatcher::Present,
            o => StrMatcher::Exact(o.into()),
        }));
        let list = |items: &[String]| {
            (!items.is_empty())
                .then(|| HeaderValue::from_str(&items.join(",")).ok())
                .flatten()
        };
        Some(Box::new(Cors {
            origins,
            methods: list(&cors.allow_methods),
            headers: list(&cors.allow_headers),
            expose: list(&cors.expose_headers),
            max_age: cors.max_age.map(|d| d.0.as_secs()),
            credentials: cors.allow_credentials == Some(true),
            forward_unmatched: cors.unmatched_preflights
                != Some(istio::UnmatchedPreflights::Ignore),
            mirror_headers: cors.mirror_request_headers == Some(true),
            forward_preflights: cors.forward_preflights == Some(true),
        }))
    }
}

//! The scope of a rule's Kong access plugins (compiled by `config::kong_access`).

use std::sync::Arc;

use super::Checker;
use super::access::{KongSpec, ScopeSpec};
use crate::config::Resource;
use crate::config::istio::HttpRoute;
use crate::config::kong::KongPlugin;
use crate::config::kong_access::plugin;
use crate::policy::access::kong::Plugin;

impl Checker<'_> {
    /// The scope of a rule's access plugins; errors of rules made from Kong's entities were
    /// reported at the plugins' own places by the translation.
    pub(super) fn kong_scope(&mut self, r: &Resource, route: &HttpRoute) -> Option<usize> {
        let enabled: Vec<&KongPlugin> = route
            .access_plugins
            .iter()
            .filter(|p| p.enabled != Some(false))
            .collect();
        if enabled.is_empty() {
            return None;
        }
        let consumers = self.consumers.clone();
        let generated = r
            .metadata
            .annotations
            .get(crate::config::generate::GENERATED_BY)
            .is_some_and(|g| g.starts_with(crate::config::kong_translate::KONG_PREFIX));
        let mut errors = Vec::new();
        let mut plugins: Vec<(Plugin, Arc<str>)> = enabled
            .iter()
            .filter_map(|p| {
                let run = plugin(p, &r.file, &consumers, &mut errors)?;
                let label = p.instance_name.clone().unwrap_or_else(|| {
                    format!(
                        "{}@{}",
                        p.name.value,
                        route.name.as_deref().unwrap_or(r.name())
                    )
                });
                Some((run, Arc::from(label)))
            })
            .collect();
        if !generated {
            self.errors.extend(errors);
        }
        plugins.sort_by_key(|(p, _)| std::cmp::Reverse(p.priority()));
        let spec = ScopeSpec {
            name: format!("kong route {}", route.name.as_deref().unwrap_or(r.name())),
            kong: Some(KongSpec { plugins, consumers }),
            ..ScopeSpec::default()
        };
        Some(self.intern_scope(spec))
    }
}

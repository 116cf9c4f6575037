//! Configuration: files in, validated runtime model out.
//!
//! `files -> yaml::Node trees -> typed resources (ResourceSet) -> validate -> Model`.
//! Every problem is reported as `file:line:column: message`, all of them in one pass; nothing is
//! applied unless the whole set is valid. Supported dialects: Istio `networking.istio.io`
//! (v1alpha3, v1beta1, v1) and Flagger `flagger.app/v1beta1`.

pub mod changes;
pub mod decode;
pub mod emit;
pub mod experiment;
pub mod flagger;
pub mod generate;
pub mod istio;
pub mod kong;
pub(crate) mod kong_access;
pub mod kong_translate;
mod resource;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use decode::{ConfigError, Dur};
use decode::{Cx, Decode, Fields, Opaque, Spanned};
pub use resource::{Metadata, Resource, ResourceSet, Spec};
pub use validate::{Model, PolicySpec, ScopeSpec, validate};
use yaml::{Node, Pos};

/// Istio API versions weir reads.
const ISTIO_VERSIONS: &[&str] = &[
    "networking.istio.io/v1alpha3",
    "networking.istio.io/v1beta1",
    "networking.istio.io/v1",
];
/// Istio security API versions weir reads.
const ISTIO_SECURITY_VERSIONS: &[&str] = &["security.istio.io/v1beta1", "security.istio.io/v1"];
/// Flagger API versions weir reads.
const FLAGGER_VERSIONS: &[&str] = &["flagger.app/v1beta1"];
/// Kong's Kubernetes API version (the seed's Kong kinds).
const KONG_VERSIONS: &[&str] = &["configuration.konghq.com/v1"];
/// weir's own API versions (`Experiment`).
const WEIR_VERSIONS: &[&str] = &["weir.io/v1alpha1"];

/// Reads every path (a YAML file, or a directory of `*.yaml` / `*.yml` files).
pub fn load_paths(paths: &[PathBuf]) -> Result<ResourceSet, Vec<ConfigError>> {
    let (set, errors) = read_paths(paths);
    finish(set, errors)
}

/// Reads and validates every path, reporting decoding and validation errors together.
pub fn check(
    paths: &[PathBuf],
    mesh_addr: std::net::SocketAddr,
) -> Result<(ResourceSet, Model), Vec<ConfigError>> {
    let (set, mut errors) = read_paths(paths);
    match validate(&set, mesh_addr) {
        Ok(model) if errors.is_empty() => return Ok((set, model)),
        Ok(_) => {}
        Err(more) => errors.extend(more),
    }
    errors.sort();
    errors.dedup();
    Err(errors)
}

/// Reads every path; returns what decoded, and every error.
pub fn read_paths(paths: &[PathBuf]) -> (ResourceSet, Vec<ConfigError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        for file in expand(path, &mut errors) {
            let name: Arc<str> = file.display().to_string().into();
            match std::fs::read_to_string(&file) {
                Ok(text) => files.push((name, Arc::from(text))),
                Err(e) => errors.push(file_error(&name, format!("cannot read file: {e}"))),
            }
        }
    }
    let (set, more) = read_texts(files);
    errors.extend(more);
    (set, errors)
}

/// Parses files given as (name, text); returns what decoded, and every error.
pub fn read_texts(files: Vec<(Arc<str>, Arc<str>)>) -> (ResourceSet, Vec<ConfigError>) {
    let mut set = ResourceSet::default();
    let mut errors = Vec::new();
    for (name, text) in files {
        set.resources.extend(parse_str(&name, &text, &mut errors));
        set.sources.push(name.to_string());
        set.texts.push(text);
    }
    generate::apex_routing(&mut set);
    kong_translate::translate(&mut set, &mut errors);
    (set, errors)
}

/// Parses one file's text; errors are appended to `errors`.
pub fn parse_str(file: &Arc<str>, text: &str, errors: &mut Vec<ConfigError>) -> Vec<Resource> {
    let (docs, yaml_errors) = yaml::parse(text);
    errors.extend(yaml_errors.into_iter().map(|e| ConfigError {
        file: file.clone(),
        pos: e.pos,
        message: e.message,
    }));
    let mut cx = Cx {
        file: file.clone(),
        errors,
    };
    let mut out = Vec::new();
    for doc in &docs {
        decode_document(doc, &mut cx, &mut out);
    }
    out
}

/// Parses text that must be valid on its own (embedded configs, tests).
pub fn parse_set(file: &str, text: &str) -> Result<ResourceSet, Vec<ConfigError>> {
    let file: Arc<str> = file.into();
    let mut errors = Vec::new();
    let resources = parse_str(&file, text, &mut errors);
    let mut set = ResourceSet {
        resources,
        sources: vec![file.to_string()],
        // Not files: nothing to keep as the last good configuration.
        texts: Vec::new(),
        warnings: Vec::new(),
    };
    generate::apex_routing(&mut set);
    kong_translate::translate(&mut set, &mut errors);
    finish(set, errors)
}

fn finish(set: ResourceSet, mut errors: Vec<ConfigError>) -> Result<ResourceSet, Vec<ConfigError>> {
    if errors.is_empty() {
        Ok(set)
    } else {
        errors.sort();
        errors.dedup();
        Err(errors)
    }
}

fn file_error(file: &Arc<str>, message: String) -> ConfigError {
    ConfigError {
        file: file.clone(),
        pos: Pos { line: 1, col: 1 },
        message,
    }
}

/// The files a config path stands for: itself, or the YAML files of a directory, sorted.
pub fn expand(path: &Path, errors: &mut Vec<ConfigError>) -> Vec<PathBuf> {
    if !path.is_dir() {
        return vec![path.to_path_buf()];
    }
    match std::fs::read_dir(path) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_yaml(p))
                .collect();
            files.sort();
            files
        }
        Err(e) => {
            let name: Arc<str> = path.display().to_string().into();
            errors.push(file_error(&name, format!("cannot read directory: {e}")));
            Vec::new()
        }
    }
}

/// Whether a path names a YAML file.
pub fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn decode_document(doc: &Node, cx: &mut Cx<'_>, out: &mut Vec<Resource>) {
    if doc.get("_format_version").is_some() {
        // A Kong declarative config: the whole file is one.
        if let Some(config) = kong::KongConfig::decode(doc, cx) {
            out.push(Resource {
                file: cx.file.clone(),
                pos: doc.pos,
                api_version: "kong/declarative".to_owned(),
                kind: "Kong",
                metadata: Metadata {
                    pos: doc.pos,
                    name: Some(Spanned {
                        pos: doc.pos,
                        value: "kong".to_owned(),
                    }),
                    ..Metadata::default()
                },
                spec: Spec::Kong(Box::new(config)),
            });
        }
        return;
    }
    let Some(mut f) = Fields::new(doc, cx, "resource") else {
        return;
    };
    let api_version = f.get::<Spanned<String>>("apiVersion");
    let kind = f.get::<Spanned<String>>("kind");
    let (Some(api_version), Some(kind)) = (api_version, kind) else {
        return;
    };
    if kind.value == "List" && api_version.value == "v1" {
        let items = f.get::<Opaque>("items");
        let metadata = f.get::<Opaque>("metadata");
        f.finish(&["apiVersion", "kind", "items", "metadata"]);
        drop((items, metadata));
        if let Some(items) = doc.get("items")
            && let yaml::Value::Seq(items) = &items.value
        {
            for item in items {
                decode_document(item, cx, out);
            }
        }
        return;
    }
    let versions = match kind.value.as_str() {
        "VirtualService" | "DestinationRule" | "ServiceEntry" | "Gateway" => ISTIO_VERSIONS,
        "Canary" | "MetricTemplate" | "AlertProvider" => FLAGGER_VERSIONS,
        "KongService" | "KongUpstream" | "KongRoute" | "KongPlugin" => KONG_VERSIONS,
        "RequestAuthentication" | "AuthorizationPolicy" => ISTIO_SECURITY_VERSIONS,
        "Experiment" => WEIR_VERSIONS,
        other => {
            f.error(
                kind.pos,
                format!(
                    "unsupported kind `{other}`: weir reads VirtualService, DestinationRule, \
                     ServiceEntry, Gateway (networking.istio.io), RequestAuthentication, \
                     AuthorizationPolicy (security.istio.io), Canary, MetricTemplate, \
                     AlertProvider (flagger.app), KongService, KongUpstream, KongRoute, \
                     KongPlugin (configuration.konghq.com), Experiment (weir.io) and Kong \
                     declarative files"
                ),
            );
            return;
        }
    };
    if !versions.contains(&api_version.value.as_str()) {
        f.error(
            api_version.pos,
            format!(
                "unsupported apiVersion `{}` for {}: expected one of {}",
                api_version.value,
                kind.value,
                versions.join(", ")
            ),
        );
        return;
    }
    let metadata = f.get::<Metadata>("metadata");
    if kind.value == "KongPlugin" {
        // Its fields are at the top level.
        let plugin = f.get::<Spanned<String>>("plugin");
        let config = f.get::<Option<kong::PluginConfig>>("config");
        let disabled = f.get::<Option<bool>>("disabled");
        let protocols = f.get::<Vec<String>>("protocols");
        f.finish(&[
            "apiVersion",
            "kind",
            "metadata",
            "plugin",
            "config",
            "disabled",
            "protocols",
        ]);
        if let (Some(metadata), Some(plugin)) = (metadata, plugin) {
            out.push(Resource {
                file: cx.file.clone(),
                pos: doc.pos,
                api_version: api_version.value,
                kind: "KongPlugin",
                metadata,
                spec: Spec::KongPlugin(kong::KongPluginSpec {
                    pos: doc.pos,
                    plugin,
                    config: config.flatten(),
                    disabled: disabled.flatten(),
                    protocols: protocols.unwrap_or_default(),
                }),
            });
        }
        return;
    }
    let spec = match kind.value.as_str() {
        "VirtualService" => f.get("spec").map(Spec::VirtualService),
        "DestinationRule" => f.get("spec").map(Spec::DestinationRule),
        "ServiceEntry" => f.get("spec").map(Spec::ServiceEntry),
        "Gateway" => f.get("spec").map(Spec::Gateway),
        "RequestAuthentication" => f.get("spec").map(Spec::RequestAuthentication),
        "AuthorizationPolicy" => f.get("spec").map(Spec::AuthorizationPolicy),
        "Canary" => f.get("spec").map(Spec::Canary),
        "MetricTemplate" => f.get("spec").map(Spec::MetricTemplate),
        "KongService" => f
            .get::<Option<kong::KongService>>("spec")
            .map(Spec::KongService),
        "KongUpstream" => f.get("spec").map(Spec::KongUpstream),
        "KongRoute" => f.get("spec").map(Spec::KongRoute),
        "Experiment" => f.get("spec").map(Spec::Experiment),
        _ => f.get("spec").map(Spec::AlertProvider),
    };
    let status = f.get::<Opaque>("status");
    drop(status);
    f.finish(&["apiVersion", "kind", "metadata", "spec", "status"]);
    if let (Some(metadata), Some(spec)) = (metadata, spec) {
        if metadata.name.is_none() {
            cx.error(doc.pos, format!("{} has no metadata.name", kind.value));
        }
        out.push(Resource {
            file: cx.file.clone(),
            pos: doc.pos,
            api_version: api_version.value,
            kind: spec.kind(),
            metadata,
            spec,
        });
    }
}

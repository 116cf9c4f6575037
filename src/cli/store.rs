//! `weir apply`, `weir get` and `weir delete`: the resources of a fleet's store. A change is
//! validated whole, with everything else in the store, before anything is written, and written
//! in one transaction that fails if the store changed since it was read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{self, ConfigError};
use crate::store::StoreUrl;
use crate::store::documents::{Document, documents};
use crate::store::etcd::Etcd;
use crate::store::keys::Keys;
use crate::store::resources::{self, Edit, Stored};

/// The mesh address validation assumes (as `weir validate`).
const MESH: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 15001);

/// Reads the store, or says why not.
async fn read(url: &StoreUrl) -> Result<(Etcd, Keys, Stored), ExitCode> {
    let etcd = Etcd::new(url.endpoints.clone());
    let keys = Keys::new(&url.prefix);
    match resources::read(&etcd, &keys).await {
        Ok(stored) => Ok((etcd, keys, stored)),
        Err(e) => {
            eprintln!("weir: cannot read the store {url}: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// Validates what was read (with `errors` found before), printing every error as
/// `file:line:column: message` and then their count and `consequence`.
fn check(
    (set, more): (config::ResourceSet, Vec<ConfigError>),
    mut errors: Vec<ConfigError>,
    consequence: &str,
) -> Result<(), ExitCode> {
    errors.extend(more);
    if let Err(more) = config::validate(&set, MESH) {
        errors.extend(more);
    }
    if errors.is_empty() {
        return Ok(());
    }
    errors.sort();
    errors.dedup();
    for e in &errors {
        println!("{e}");
    }
    eprintln!("{} errors; {consequence}", errors.len());
    Err(ExitCode::FAILURE)
}

/// Who writes, for the store's write marker.
fn writer(command: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".into());
    format!("weir {command} ({user}@{})", crate::store::host_name())
}

/// `weir apply --store URL -f PATH...`.
pub(super) async fn apply(url: StoreUrl, paths: Vec<PathBuf>, dry_run: bool) -> ExitCode {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in &paths {
        for file in config::expand(path, &mut errors) {
            let name: Arc<str> = file.display().to_string().into();
            match std::fs::read_to_string(&file) {
                Ok(text) => files.push((name, Arc::<str>::from(text))),
                Err(e) => errors.push(ConfigError {
                    file: name,
                    pos: config::yaml::Pos { line: 1, col: 1 },
                    message: format!("cannot read file: {e}"),
                }),
            }
        }
    }
    let (etcd, keys, stored) = match read(&url).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    // The documents given, by key (a key given twice: the later one is an error).
    let mut given: BTreeMap<String, Document> = BTreeMap::new();
    for (name, text) in &files {
        match documents(name, text) {
            Ok(docs) => {
                for d in docs {
                    let key = keys.resource(&d.kind, &d.namespace, &d.name);
                    if let Some(first) = given.get(&key) {
                        errors.push(ConfigError {
                            file: d.file.clone(),
                            pos: config::yaml::Pos {
                                line: d.line,
                                col: 1,
                            },
                            message: format!(
                                "{} {}/{} is also given at {}:{}",
                                d.kind, d.namespace, d.name, first.file, first.line
                            ),
                        });
                        continue;
                    }
                    given.insert(key, d);
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    // Validate the store as it would be: its other documents, and the files given.
    let mut all = stored.files(&|k| given.contains_key(k));
    all.extend(files.iter().cloned());
    if let Err(code) = check(
        config::read_texts(all),
        errors,
        &format!("nothing was written to {url}"),
    ) {
        return code;
    }
    let mut edits = Vec::new();
    for (key, d) in &given {
        let what = match stored.docs.get(key) {
            Some(kv) if kv.value == d.text => "unchanged",
            Some(_) => "configured",
            None => "created",
        };
        println!("{} {}/{} {what}", d.kind, d.namespace, d.name);
        if dry_run && let Some(kv) = stored.docs.get(key).filter(|_| what == "configured") {
            print!("{}", super::line_diff::lines(&kv.value, &d.text, 2));
        }
        if what != "unchanged" {
            edits.push(Edit::Put(key.clone(), d.text.clone()));
        }
    }
    if dry_run {
        eprintln!("dry run: nothing was written to {url}");
        return ExitCode::SUCCESS;
    }
    if edits.is_empty() {
        eprintln!("nothing to change in {url} (revision {})", stored.revision);
        return ExitCode::SUCCESS;
    }
    finish(&etcd, &keys, &stored, &edits, "apply", &url).await
}

/// Writes the edits; says how it went.
async fn finish(
    etcd: &Etcd,
    keys: &Keys,
    stored: &Stored,
    edits: &[Edit],
    command: &str,
    url: &StoreUrl,
) -> ExitCode {
    match resources::write(etcd, keys, stored, edits, &writer(command)).await {
        Ok(revision) => {
            eprintln!("written to {url} at revision {revision}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weir: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Whether a key's kind is the one asked for: any case, singular or plural.
fn kind_matches(kind: &str, asked: &str) -> bool {
    kind.eq_ignore_ascii_case(asked)
        || (asked.strip_suffix(['s', 'S'])).is_some_and(|a| kind.eq_ignore_ascii_case(a))
}

/// The keys of `stored` for `kind` and `name` (`NAME` or `NAMESPACE/NAME`).
fn matching<'s>(
    keys: &Keys,
    stored: &'s Stored,
    kind: Option<&str>,
    name: Option<&str>,
) -> Vec<&'s String> {
    stored
        .docs
        .keys()
        .filter(|k| {
            let Some((k_kind, k_ns, k_name)) = keys.resource_id(k) else {
                return false;
            };
            kind.is_none_or(|want| kind_matches(k_kind, want))
                && name.is_none_or(|want| match want.split_once('/') {
                    Some((ns, n)) => ns == k_ns && n == k_name,
                    None => want == k_name,
                })
        })
        .collect()
}

/// `weir get --store URL [KIND [NAME]]`: the documents as written.
pub(super) async fn get(url: StoreUrl, kind: Option<String>, name: Option<String>) -> ExitCode {
    let (_, keys, stored) = match read(&url).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let found = matching(&keys, &stored, kind.as_deref(), name.as_deref());
    if found.is_empty() && (kind.is_some() || name.is_some()) {
        let what = [kind.as_deref(), name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>();
        eprintln!("weir: no {} in {url}", what.join(" "));
        return ExitCode::FAILURE;
    }
    let mut out = String::new();
    for (i, key) in found.iter().enumerate() {
        let text = &stored.docs[*key].value;
        if i > 0 && !text.starts_with("---") {
            out.push_str("---\n");
        }
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}

/// `weir delete --store URL KIND NAME`: validated like an apply (nothing that is left may
/// need what goes).
pub(super) async fn delete(url: StoreUrl, kind: String, name: String) -> ExitCode {
    let (etcd, keys, stored) = match read(&url).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    let found = matching(&keys, &stored, Some(&kind), Some(&name));
    let key = match found.as_slice() {
        [one] => (*one).clone(),
        [] => {
            eprintln!("weir: no {kind} {name} in {url}");
            return ExitCode::FAILURE;
        }
        many => {
            let names: Vec<String> = many
                .iter()
                .filter_map(|k| keys.resource_id(k).map(|(_, ns, n)| format!("{ns}/{n}")))
                .collect();
            eprintln!(
                "weir: {kind} {name} is in several namespaces ({}): name one as NAMESPACE/NAME",
                names.join(", ")
            );
            return ExitCode::FAILURE;
        }
    };
    let without = config::read_texts(stored.files(&|k| k == key));
    if let Err(code) = check(
        without,
        Vec::new(),
        &format!("without {key}; nothing was deleted"),
    ) {
        return code;
    }
    if let Some((k, ns, n)) = keys.resource_id(&key) {
        println!("{k} {ns}/{n} deleted");
    }
    finish(
        &etcd,
        &keys,
        &stored,
        &[Edit::Delete(key.clone())],
        "delete",
        &url,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::kind_matches;

    #[test]
    fn kinds() {
        assert!(kind_matches("VirtualService", "virtualservice"));
        assert!(kind_matches("VirtualService", "virtualservices"));
        assert!(kind_matches("VirtualService", "VirtualService"));
        assert!(kind_matches("Kong", "kong"));
        assert!(!kind_matches("Gateway", "gate"));
    }
}

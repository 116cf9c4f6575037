//! `weir demo --backends PATH`: a stub backend (see [`super::backend`]) on every loopback
//! endpoint the config at PATH names, answering with the endpoint's `version` label (else its
//! service's host), so that the examples can be tried without services of one's own.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use super::backend;
use crate::config::{self, ResourceSet, Spec};

/// Starts the stubs and serves until Ctrl-C or SIGTERM.
pub(crate) async fn run(paths: Vec<PathBuf>) -> ExitCode {
    let set = match config::load_paths(&paths) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("weir demo: {} errors in the config", errors.len());
            return ExitCode::FAILURE;
        }
    };
    let wanted = endpoints(&set);
    if wanted.is_empty() {
        eprintln!("weir demo: the config names no endpoint on loopback (127.0.0.0/8, ::1)");
        return ExitCode::FAILURE;
    }
    for (addr, version) in &wanted {
        match backend::start(*addr, version, 0).await {
            Ok(_) => println!("stub {version} on {addr}"),
            Err(e) => {
                eprintln!("weir demo: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{} stub backends up; Ctrl-C stops them.", wanted.len());
    stopped().await;
    ExitCode::SUCCESS
}

/// Every loopback endpoint address of the set's ServiceEntries, with what its stub answers.
fn endpoints(set: &ResourceSet) -> BTreeMap<SocketAddr, String> {
    let mut out = BTreeMap::new();
    for r in &set.resources {
        let Spec::ServiceEntry(se) = &r.spec else {
            continue;
        };
        let host = se.hosts.first().map_or(r.name(), |h| h.value.as_str());
        for e in &se.endpoints {
            let Some(ip) = loopback(&e.address.value) else {
                continue;
            };
            let version = e.labels.get("version").map_or(host, String::as_str);
            for p in &se.ports {
                let named = p.name.as_ref().and_then(|n| e.ports.get(n));
                let port = named.copied().or(p.target_port).unwrap_or(p.number);
                if let Ok(port) = u16::try_from(port) {
                    out.entry(SocketAddr::new(ip, port))
                        .or_insert_with(|| version.to_owned());
                }
            }
        }
    }
    out
}

/// The address, if it is on loopback.
fn loopback(address: &str) -> Option<IpAddr> {
    let ip = match address {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        a => a.parse().ok()?,
    };
    ip.is_loopback().then_some(ip)
}

/// Waits for Ctrl-C or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stubs_go_on_every_loopback_endpoint_port() {
        let set = config::parse_set(
            "t.yaml",
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews]
  resolution: STATIC
  ports: [{number: 9080, name: http, protocol: HTTP}]
  endpoints:
  - {address: 127.0.0.1, ports: {http: 19081}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 19082}, labels: {version: v2}}
  - {address: 10.0.0.1, ports: {http: 19083}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings}
spec:
  hosts: [ratings]
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: localhost}]
",
        )
        .unwrap();
        let got: Vec<(String, String)> = endpoints(&set)
            .into_iter()
            .map(|(a, v)| (a.to_string(), v))
            .collect();
        let want = [
            ("127.0.0.1:8080", "ratings"),
            ("127.0.0.1:19081", "v1"),
            ("127.0.0.1:19082", "v2"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, v)| (a.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want);
    }
}

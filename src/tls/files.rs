//! Certificates, keys and CA bundles read from files, and kept fresh: a file that changes on
//! disk is read again (checked at most once a second).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::time::Instant;

/// How often watched files are looked at for changes (at most, when they are used).
pub(super) const RECHECK: Duration = Duration::from_secs(1);

/// Something made from files (a rustls configuration), made again when they change. Looked at
/// once a second at most, when used; a load that fails keeps the previous one and says so in
/// the log. Open connections keep what they were made with.
#[derive(Debug)]
pub(super) struct Watched<T> {
    files: Vec<PathBuf>,
    current: ArcSwap<T>,
    /// When the files were last looked at, and what they were then.
    seen: Mutex<(Instant, Stamp)>,
}

/// What files looked like (modification time and length of each).
type Stamp = Vec<Option<(SystemTime, u64)>>;

impl<T> Watched<T> {
    /// Loads it for the first time.
    pub(super) fn new(
        files: Vec<PathBuf>,
        load: impl FnOnce() -> Result<T, String>,
    ) -> Result<Self, String> {
        Ok(Watched {
            seen: Mutex::new((Instant::now(), stamp(&files))),
            current: ArcSwap::from_pointee(load()?),
            files,
        })
    }

    /// The current one, loaded again first if its files changed.
    pub(super) fn get(&self, load: impl FnOnce() -> Result<T, String>) -> Arc<T> {
        self.refresh(load);
        self.current.load_full()
    }

    pub(super) fn refresh(&self, load: impl FnOnce() -> Result<T, String>) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if seen.0.elapsed() < RECHECK {
            return;
        }
        seen.0 = Instant::now();
        let now = stamp(&self.files);
        if now == seen.1 {
            return;
        }
        seen.1 = now;
        let file = self.files.first().map(|f| f.display().to_string());
        match load() {
            Ok(config) => {
                self.current.store(Arc::new(config));
                tracing::info!(file, "TLS files reloaded.");
            }
            Err(e) => tracing::error!(
                file,
                error = %e,
                "TLS files could not be reloaded; keeping the previous ones."
            ),
        }
    }
}

fn stamp(files: &[PathBuf]) -> Stamp {
    files
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

/// Reads a PEM certificate chain.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a PEM CA bundle into a root store.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The crypto provider (ring), named so that nothing depends on a process-wide default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

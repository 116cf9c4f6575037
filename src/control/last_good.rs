//! What weir keeps in `--state-dir` besides rollouts ([`crate::rollout::store`]): the config
//! files it last applied, so that a restart whose files on disk no longer validate still
//! serves the last good configuration. Files are replaced atomically.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError, ResourceSet};

/// The file holding the last good configuration.
const LAST_GOOD: &str = "last-good-config.json";

/// Replaces `path` (in `dir`) with `bytes`: written to a temporary file, flushed, renamed over
/// the old one, so a crash leaves the old content or the new, never half of either.
pub(crate) fn replace_file(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

/// One config file as it was applied.
#[derive(Serialize, Deserialize)]
struct File {
    path: String,
    text: String,
}

/// The config files of a configuration that was applied.
#[derive(Serialize, Deserialize)]
struct LastGood {
    files: Vec<File>,
}

/// Keeps the files `set` was read from as the last good configuration (nothing for a set not
/// read from files).
pub(crate) fn save(dir: &Path, set: &ResourceSet) -> std::io::Result<()> {
    if set.texts.is_empty() {
        return Ok(());
    }
    let saved = LastGood {
        files: set
            .sources
            .iter()
            .zip(&set.texts)
            .map(|(path, text)| File {
                path: path.clone(),
                text: text.to_string(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&saved).map_err(std::io::Error::other)?;
    replace_file(dir, &dir.join(LAST_GOOD), &bytes)
}

/// The last good configuration kept in `dir`, parsed as it was (file names included, so
/// relative paths in it still resolve); `None` if there is none or it cannot be read.
pub(crate) fn load(dir: &Path) -> Option<Result<ResourceSet, Vec<ConfigError>>> {
    let path = dir.join(LAST_GOOD);
    let bytes = std::fs::read(&path).ok()?;
    let saved: LastGood = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Unreadable last good configuration.");
            return None;
        }
    };
    let files = saved
        .files
        .into_iter()
        .map(|f| (Arc::from(f.path), Arc::from(f.text)))
        .collect();
    let (set, errors) = config::read_texts(files);
    Some(if errors.is_empty() {
        Ok(set)
    } else {
        Err(errors)
    })
}

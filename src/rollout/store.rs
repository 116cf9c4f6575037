//! Rollout state in `--state-dir`: one JSON file per Canary, replaced atomically (written to a
//! temporary file, flushed, renamed over the old one), so a crash leaves the old state or the
//! new one, never half of either. A restart resumes each rollout from its file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{RolloutSpec, Side};
use super::status::Status;

/// What is kept of a rollout (in a state file, or in a fleet's store).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    /// The target the status belongs to: a state file for another target is not resumed.
    virtual_service: String,
    primary: String,
    canary: String,
    status: Status,
    /// When the state was reached (ms since the epoch): a new driver in a fleet takes the next
    /// step an interval after it, not at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_ms: Option<u64>,
}

/// `status` of `spec`'s rollout as kept, reached at `at_ms`.
pub(crate) fn encode(spec: &RolloutSpec, status: &Status, at_ms: Option<u64>) -> String {
    let saved = Saved {
        virtual_service: spec.virtual_service.clone(),
        primary: key(&spec.primary),
        canary: key(&spec.canary),
        status: status.clone(),
        at_ms,
    };
    serde_json::to_string_pretty(&saved).unwrap_or_default()
}

/// The status kept in `text` and when it was reached, if it is for `spec`'s target.
pub(crate) fn decode(
    spec: &RolloutSpec,
    text: &[u8],
) -> Result<Option<(Status, Option<u64>)>, String> {
    let s: Saved = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    let same = s.virtual_service == spec.virtual_service
        && s.primary == key(&spec.primary)
        && s.canary == key(&spec.canary);
    Ok(same.then_some((s.status, s.at_ms)))
}

/// How a state file names a version.
fn key(side: &Side) -> String {
    format!("{}|{}", side.host, side.version())
}

/// The state directory (or none: nothing is kept).
#[derive(Clone, Debug, Default)]
pub(crate) struct Store {
    dir: Option<PathBuf>,
}

const PREFIX: &str = "canary-";
const SUFFIX: &str = ".json";

impl Store {
    /// Keeps state in `dir`, if given.
    pub(crate) fn new(dir: Option<PathBuf>) -> Store {
        Store { dir }
    }

    fn path(dir: &Path, name: &str) -> PathBuf {
        // Canary names are DNS labels; anything else is escaped so it cannot leave the dir.
        let safe: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' => c.to_string(),
                other => format!("%{:02x}", other as u32),
            })
            .collect();
        let safe = safe.trim_start_matches('.');
        dir.join(format!("{PREFIX}{safe}{SUFFIX}"))
    }

    /// The kept status of `spec`'s rollout, if it is for the same target.
    pub(crate) fn load(&self, spec: &RolloutSpec) -> Option<Status> {
        let path = Self::path(self.dir.as_ref()?, &spec.name);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Cannot read rollout state; starting over.");
                return None;
            }
        };
        match decode(spec, &text) {
            Ok(Some((status, _))) => {
                tracing::info!(canary = %spec.name, phase = ?status.phase, weight = status.routing.canary_weight, "Rollout resumed from its state file.");
                Some(status)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Unreadable rollout state; starting over.");
                None
            }
        }
    }

    /// Replaces the kept status of `spec`'s rollout.
    pub(crate) fn save(&self, spec: &RolloutSpec, status: &Status) -> std::io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let bytes = encode(spec, status, None).into_bytes();
        crate::control::last_good::replace_file(dir, &Self::path(dir, &spec.name), &bytes)
    }

    /// Forgets every rollout but `keep` (by Canary name).
    pub(crate) fn retain(&self, keep: &[&str]) {
        let Some(dir) = &self.dir else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let kept: Vec<PathBuf> = keep.iter().map(|n| Self::path(dir, n)).collect();
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PREFIX)
                && name.ends_with(SUFFIX)
                && !kept.contains(&path)
                && let Err(err) = std::fs::remove_file(&path)
            {
                tracing::warn!(path = %path.display(), error = %err, "Cannot remove rollout state.");
            }
        }
    }
}

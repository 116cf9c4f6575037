//! The resources in the store: reading them all at one revision, and writing a change to them
//! in one transaction that fails if anything under them changed since that read (two operators
//! never overwrite each other's work unseen).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::etcd::{Compare, Etcd, EtcdError, Kv, Op, prefix_end};
use super::keys::Keys;

/// The resources at one revision.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stored {
    /// The store's revision when read.
    pub(crate) revision: i64,
    /// The write marker (absent before the first write through weir).
    pub(crate) marker: Option<Kv>,
    /// Every resource document, by key.
    pub(crate) docs: BTreeMap<String, Kv>,
}

impl Stored {
    /// The documents as config files named by their keys, `except` those keys.
    pub(crate) fn files(&self, except: &dyn Fn(&str) -> bool) -> Vec<(Arc<str>, Arc<str>)> {
        self.docs
            .iter()
            .filter(|(k, _)| !except(k))
            .map(|(k, kv)| (Arc::from(k.as_str()), Arc::from(kv.value.as_str())))
            .collect()
    }
}

/// Reads every resource and the write marker at one revision.
pub(crate) async fn read(etcd: &Etcd, keys: &Keys) -> Result<Stored, EtcdError> {
    let start = keys.written();
    let (revision, kvs) = etcd
        .range(&start, Some(&prefix_end(&keys.resources())))
        .await?;
    let mut stored = Stored {
        revision,
        ..Stored::default()
    };
    for kv in kvs {
        if kv.key == start {
            stored.marker = Some(kv);
        } else if keys.resource_id(&kv.key).is_some() {
            stored.docs.insert(kv.key.clone(), kv);
        }
    }
    Ok(stored)
}

/// A change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Edit {
    /// Put this text.
    Put(String, String),
    /// Delete the key.
    Delete(String),
}

/// Why a write did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Someone else wrote since the read.
    #[error(
        "the store changed since it was read at revision {0} (another apply or delete?): nothing was written; run the command again"
    )]
    Conflict(i64),
    /// The change is larger than etcd takes in one transaction.
    #[error(
        "etcd refused the change as one transaction ({0}): etcd takes at most --max-txn-ops operations (128 by default) and --max-request-bytes bytes (1.5 MiB) per transaction; start etcd with higher limits, or apply fewer resources at a time. Nothing was written"
    )]
    TooLarge(String),
    /// etcd failed.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
}

/// Writes `edits` and the marker in one transaction, if nothing under the resources changed
/// since `stored` was read; returns the revision written.
pub(crate) async fn write(
    etcd: &Etcd,
    keys: &Keys,
    stored: &Stored,
    edits: &[Edit],
    by: &str,
) -> Result<i64, WriteError> {
    let marker = keys.written();
    let compare = [
        Compare::Modified(
            marker.clone(),
            stored.marker.as_ref().map_or(0, |m| m.mod_revision),
        ),
        Compare::UnchangedSince(
            keys.resources(),
            prefix_end(&keys.resources()),
            stored.revision,
        ),
    ];
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut ops: Vec<Op> = edits
        .iter()
        .map(|e| match e {
            Edit::Put(k, v) => Op::Put(k.clone(), v.clone(), 0),
            Edit::Delete(k) => Op::Delete(k.clone()),
        })
        .collect();
    ops.push(Op::Put(
        marker,
        json!({"writtenAtMs": at_ms, "by": by}).to_string(),
        0,
    ));
    let (ok, revision, _) = match etcd.txn(&compare, &ops, &[]).await {
        Err(EtcdError::Server { message, .. })
            if message.contains("too many operations") || message.contains("too large") =>
        {
            return Err(WriteError::TooLarge(message));
        }
        other => other?,
    };
    if ok {
        Ok(revision)
    } else {
        Err(WriteError::Conflict(stored.revision))
    }
}

/// When the marker says the resources were written (ms since the epoch).
pub(crate) fn written_at_ms(marker: &Kv) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(&marker.value)
        .ok()?
        .get("writtenAtMs")?
        .as_u64()
}

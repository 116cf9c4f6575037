//! The controller task of one rollout in a fleet: it follows the state the driver stores until
//! the election makes this instance the driver; then it takes the steps, each one written to
//! the store (fenced by the lease) before it is applied, and goes back to following the moment
//! its lease or its fence is gone.
//!
//! A new driver carries on from the stored state at the same step: it takes the next step an
//! interval after the stored one was reached, and never takes the stored one again (a step is
//! applied only once its state is stored).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::time::Instant;

use super::command::{Command, lock};
use super::controller::{Counts, Live, command, notify, publish_state, revisions, settle, trim};
use super::hooks::Mesh;
use super::machine::Machine;
use super::shared::{FleetHistory, SaveError, Seat, Shared};
use super::status::Status;
use super::store::{self, Store};
use crate::control::change::Steer;

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs one rollout of a fleet until its task is aborted or weir stops.
pub(super) async fn drive(
    control: Weak<dyn Steer>,
    machine: Arc<Mutex<Machine>>,
    shown: Arc<Mutex<Status>>,
    fleet: Arc<dyn Shared>,
    files: Store,
) {
    let spec = lock(&machine).spec.clone();
    let mut seat = fleet.seat(&spec.name);
    if let Some(c) = control.upgrade() {
        publish_state(&*c, &spec, &lock(&machine).status);
    }
    loop {
        // Follow the stored state until this instance drives.
        let (fence, at_ms) = loop {
            let s = seat.borrow_and_update().clone();
            let Some(control) = control.upgrade() else {
                return;
            };
            let at_ms = follow(&*control, &machine, &shown, &files, &s).await;
            if let Some(fence) = s.fence {
                break (fence, at_ms);
            }
            if seat.changed().await.is_err() {
                return;
            }
        };
        tracing::info!(canary = %spec.name, "This instance drives the rollout.");
        lead(
            &control, &machine, &shown, &*fleet, &files, &mut seat, fence, at_ms,
        )
        .await;
        tracing::warn!(canary = %spec.name, "This instance no longer drives the rollout.");
    }
}

/// Settles the stored state, if it is for this rollout and differs from the machine's;
/// returns when it was reached.
async fn follow(
    control: &dyn Steer,
    machine: &Mutex<Machine>,
    shown: &Mutex<Status>,
    files: &Store,
    seat: &Seat,
) -> Option<u64> {
    let (text, _) = seat.state.as_ref()?;
    let before = lock(machine).clone();
    let (status, at_ms) = match store::decode(&before.spec, text.as_bytes()) {
        Ok(Some(found)) => found,
        Ok(None) => return None,
        Err(e) => {
            tracing::error!(canary = %before.spec.name, error = %e, "Unreadable rollout state in the store.");
            return None;
        }
    };
    if status != before.status {
        let after = Machine::resume(before.spec.clone(), status);
        settle(control, machine, shown, files, &before, after).await;
    }
    at_ms
}

/// What ended a wait of the driver.
enum Turn {
    /// The machine stepped (on a copy).
    Stepped(Machine),
    /// An operator command (queued at this revision) acted.
    Command(Machine, i64),
    /// The seat changed without news for the driver.
    Nothing,
}

/// Drives until the fence is gone or a fenced write fails.
#[allow(clippy::too_many_arguments)]
async fn lead(
    control: &Weak<dyn Steer>,
    machine: &Mutex<Machine>,
    shown: &Mutex<Status>,
    fleet: &dyn Shared,
    files: &Store,
    seat: &mut watch::Receiver<Seat>,
    fence: i64,
    at_ms: Option<u64>,
) {
    let spec = lock(machine).spec.clone();
    let stale_ms = fleet.stale_after().as_millis() as u64;
    let mut history = FleetHistory::new();
    take_reading(fleet, &spec, &mut history).await;
    // The next step is due an interval after the stored one.
    let wait = at_ms.map_or(Duration::ZERO, |at| {
        Duration::from_millis((at + spec.interval.as_millis() as u64).saturating_sub(now_ms()))
    });
    let mut ticker =
        tokio::time::interval_at(Instant::now() + wait.min(spec.interval), spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut handled = 0i64;
    loop {
        let before = lock(machine).clone();
        let pending = queued(&seat.borrow(), handled);
        let turn = if let Some((cmd, rev)) = pending {
            Turn::Command(command(before.clone(), cmd), rev)
        } else {
            tokio::select! {
                _ = ticker.tick() => {
                    let Some(c) = control.upgrade() else { return };
                    let revisions = revisions(&c.snapshot(), &spec);
                    take_reading(fleet, &spec, &mut history).await;
                    let mut m = before.clone();
                    let mesh = Mesh { snap: c.snapshot(), addr: c.mesh_addr() };
                    let mut env = Live {
                        control: &*c,
                        spec: &spec,
                        counts: Counts::Fleet(&history, stale_ms),
                        mesh,
                    };
                    // A command that comes while the step waits on a webhook drops the step.
                    let interrupted = {
                        let step = m.step(revisions, &mut env);
                        tokio::pin!(step);
                        loop {
                            tokio::select! {
                                () = &mut step => break None,
                                changed = seat.changed() => {
                                    if changed.is_err() { return; }
                                    let s = seat.borrow_and_update().clone();
                                    if s.fence != Some(fence) { return; }
                                    if let Some(c) = queued(&s, handled) {
                                        break Some(c);
                                    }
                                }
                            }
                        }
                    };
                    match interrupted {
                        None => Turn::Stepped(m),
                        Some((cmd, rev)) => Turn::Command(command(before.clone(), cmd), rev),
                    }
                }
                changed = seat.changed() => {
                    if changed.is_err() { return; }
                    if seat.borrow_and_update().fence != Some(fence) { return; }
                    Turn::Nothing
                }
            }
        };
        let (after, consumed) = match turn {
            Turn::Nothing => continue,
            Turn::Stepped(m) if m.status == before.status => continue,
            Turn::Stepped(m) => (m, None),
            Turn::Command(m, rev) => (m, Some(rev)),
        };
        let state = store::encode(&spec, &after.status, Some(now_ms()));
        match fleet.save(&spec.name, fence, state, consumed).await {
            Ok(()) => {}
            Err(SaveError::Lost) => return,
            Err(SaveError::Store(e)) => {
                // Not stored, so not taken: the next tick tries again.
                tracing::error!(canary = %spec.name, error = %e, "Rollout step not stored; not applied.");
                continue;
            }
        }
        if let Some(rev) = consumed {
            handled = rev;
        }
        let Some(c) = control.upgrade() else { return };
        settle(&*c, machine, shown, files, &before, after).await;
        let mesh = Mesh {
            snap: c.snapshot(),
            addr: c.mesh_addr(),
        };
        notify(&spec, &before.status, &lock(shown).clone(), mesh);
    }
}

/// Reads every live instance's totals of the two versions, keeping as many readings as the
/// longest metric window needs.
async fn take_reading(
    fleet: &dyn Shared,
    spec: &super::spec::RolloutSpec,
    history: &mut FleetHistory,
) {
    let sides = [&spec.canary, &spec.primary]
        .map(|s| (s.host.clone(), s.version().to_owned()))
        .to_vec();
    match fleet.traffic(sides).await {
        Ok(counts) => {
            history.push_back((Instant::now(), now_ms(), counts));
            trim(history, spec, |r| r.0);
        }
        Err(e) => {
            tracing::warn!(canary = %spec.name, error = %e, "Cannot read the fleet's counts.")
        }
    }
}

/// The rollout command queued after `handled`, if any.
fn queued(seat: &Seat, handled: i64) -> Option<(Command, i64)> {
    let (name, rev) = seat.command.as_ref().filter(|(_, rev)| *rev > handled)?;
    Some((Command::parse(name)?, *rev))
}

//! Traffic mirroring (`mirror`, `mirrors`, `mirrorPercentage`): a copy of a share of a rule's
//! requests goes to another destination, fire and forget. The copy's `Host` gets Envoy's
//! `-shadow` suffix; its response is read and dropped, and counted under the mirror
//! destination's metrics (so a blue-green canary that only sees mirrored traffic can be
//! analysed). A copy is never queued for a connection and never retried, and at most
//! [`MAX_IN_FLIGHT`] are under way at once: mirroring can slow nothing down.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::fault::PER_MILLION;
use super::split::WeightedDest;

/// Mirrored requests under way at once, process-wide; more are not sent.
pub const MAX_IN_FLIGHT: usize = 1024;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// One mirror destination of a rule.
#[derive(Debug)]
pub struct Mirror {
    /// Where copies go (its weight is unused).
    pub dest: WeightedDest,
    /// Share of requests copied, parts per million.
    pub share: u32,
}

impl Mirror {
    /// Whether this request is copied; `roll` gives uniform numbers below [`PER_MILLION`].
    pub fn draw(&self, roll: impl FnOnce() -> u32) -> bool {
        self.share >= PER_MILLION || (self.share > 0 && roll() < self.share)
    }
}

/// The mirrors a request is copied to, a bit for each of the first 64 that draws it; `roll`
/// gives uniform numbers below [`PER_MILLION`].
pub fn draw_all(mirrors: &[Mirror], mut roll: impl FnMut() -> u32) -> u64 {
    mirrors
        .iter()
        .take(64)
        .enumerate()
        .filter(|(_, m)| m.draw(&mut roll))
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// A place among the mirrored requests under way; `None` when all are taken.
pub fn slot() -> Option<Slot> {
    let now = IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(());
    (now < MAX_IN_FLIGHT).then_some(slot)
}

/// Held while a mirrored request is under way.
pub struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_given_back() {
        let held: Vec<Slot> = std::iter::from_fn(slot).take(MAX_IN_FLIGHT + 10).collect();
        assert!(held.len() <= MAX_IN_FLIGHT);
        assert!(slot().is_none() || held.len() < MAX_IN_FLIGHT);
        drop(held);
        assert!(slot().is_some());
    }

    #[test]
    fn draw_all_sets_a_bit_per_mirror_drawn() {
        let mirror = |share| Mirror {
            dest: WeightedDest {
                cluster: 0,
                weight: 0,
                headers: Default::default(),
                stats: 0,
            },
            share,
        };
        let mirrors = [mirror(PER_MILLION), mirror(0), mirror(PER_MILLION / 2)];
        // Rolls below half draw the half-share mirror; the full share and zero need no roll.
        let mut rolls = [1u32].into_iter();
        assert_eq!(draw_all(&mirrors, || rolls.next().unwrap()), 0b101);
        let mut rolls = [PER_MILLION - 1].into_iter();
        assert_eq!(draw_all(&mirrors, || rolls.next().unwrap()), 0b001);
    }
}

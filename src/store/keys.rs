//! Where weir keeps what under the store's prefix `P`:
//!
//! ```text
//! P/resources                          when and by whom the resources were last written (JSON)
//! P/resources/KIND/NAMESPACE/NAME      one resource document, as written (YAML, comments kept)
//! P/rollouts/CANARY/state              the rollout's state, written by its driver only (JSON)
//! P/rollouts/CANARY/driver             the instance driving it, under that instance's lease
//! P/rollouts/CANARY/command            an operator command waiting for the driver (JSON)
//! P/rollouts/experiments/NAME/state    an experiment's state, written by its judge only (JSON)
//! P/rollouts/experiments/NAME/driver   the instance judging it, under that instance's lease
//! P/rollouts/experiments/NAME/command  an operator command waiting for the judge (JSON)
//! P/experiments/NAME/ID                an instance's counts of the experiment (JSON, no lease:
//!                                      they outlive the instance)
//! P/instances/ID                       a live instance, under its lease (JSON)
//! ```
//!
//! An experiment's judge is elected and writes exactly as a rollout's driver does, under the
//! seat name `experiments/NAME` (a Canary's name has no `/`).
//!
//! Instances watch `[P/resources, P/rollouts0)`: the resources, their marker, the rollouts and
//! the experiments' states, in one watch with one revision. The instances' own records and
//! counts, rewritten every second, are outside it and read only when asked for.

use super::etcd::prefix_end;

/// A key of the watched range, by what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Watched<'a> {
    /// The write marker.
    Written,
    /// A resource document.
    Resource,
    /// A rollout's state.
    State(&'a str),
    /// A rollout's driver.
    Driver(&'a str),
    /// A rollout's pending command.
    Command(&'a str),
    /// Anything else (ignored).
    Other,
}

/// The key layout under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The layout under `prefix` (no trailing `/`).
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The write marker.
    pub(crate) fn written(&self) -> String {
        format!("{}/resources", self.prefix)
    }

    /// The prefix of every resource.
    pub(crate) fn resources(&self) -> String {
        format!("{}/resources/", self.prefix)
    }

    /// One resource.
    pub(crate) fn resource(&self, kind: &str, namespace: &str, name: &str) -> String {
        format!("{}/resources/{kind}/{namespace}/{name}", self.prefix)
    }

    /// `KIND/NAMESPACE/NAME` of a resource key.
    pub(crate) fn resource_id<'k>(&self, key: &'k str) -> Option<(&'k str, &'k str, &'k str)> {
        let rest = key.strip_prefix(&self.resources())?;
        let mut parts = rest.splitn(3, '/');
        let (kind, ns, name) = (parts.next()?, parts.next()?, parts.next()?);
        (!kind.is_empty() && !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .then_some((kind, ns, name))
    }

    fn rollout(&self, canary: &str, what: &str) -> String {
        format!("{}/rollouts/{canary}/{what}", self.prefix)
    }

    /// A rollout's state.
    pub(crate) fn state(&self, canary: &str) -> String {
        self.rollout(canary, "state")
    }

    /// A rollout's driver.
    pub(crate) fn driver(&self, canary: &str) -> String {
        self.rollout(canary, "driver")
    }

    /// A rollout's pending command.
    pub(crate) fn command(&self, canary: &str) -> String {
        self.rollout(canary, "command")
    }

    /// The prefix of every instance's counts of `experiment`.
    pub(crate) fn tallies(&self, experiment: &str) -> String {
        format!("{}/experiments/{experiment}/", self.prefix)
    }

    /// An instance's counts of `experiment`.
    pub(crate) fn tally(&self, experiment: &str, id: &str) -> String {
        format!("{}{id}", self.tallies(experiment))
    }

    /// The prefix of the instances' records.
    pub(crate) fn instances(&self) -> String {
        format!("{}/instances/", self.prefix)
    }

    /// An instance's record.
    pub(crate) fn instance(&self, id: &str) -> String {
        format!("{}/instances/{id}", self.prefix)
    }

    /// The watched range: `[start, end)`.
    pub(crate) fn watched(&self) -> (String, String) {
        (
            self.written(),
            prefix_end(&format!("{}/rollouts/", self.prefix)),
        )
    }

    /// What a key of the watched range holds.
    pub(crate) fn classify<'k>(&self, key: &'k str) -> Watched<'k> {
        if key == self.written() {
            return Watched::Written;
        }
        if self.resource_id(key).is_some() {
            return Watched::Resource;
        }
        let Some(rest) = key.strip_prefix(&format!("{}/rollouts/", self.prefix)) else {
            return Watched::Other;
        };
        let seat = match rest.rsplit_once('/') {
            Some((seat, what))
                if !seat.contains('/')
                    || seat
                        .strip_prefix("experiments/")
                        .is_some_and(|n| !n.is_empty() && !n.contains('/')) =>
            {
                (seat, what)
            }
            _ => return Watched::Other,
        };
        match seat {
            (seat, "state") => Watched::State(seat),
            (seat, "driver") => Watched::Driver(seat),
            (seat, "command") => Watched::Command(seat),
            _ => Watched::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("/weir/");
        let (start, end) = k.watched();
        for key in [
            k.written(),
            k.resource("VirtualService", "default", "shop"),
            k.state("shop"),
            k.driver("shop"),
            k.command("shop"),
        ] {
            assert!(start <= key && key < end, "{key}");
        }
        assert!(!(start <= k.instance("a") && k.instance("a") < end));
        assert_eq!(k.classify(&k.written()), Watched::Written);
        assert_eq!(
            k.classify("/weir/resources/Gateway/ns/gw"),
            Watched::Resource
        );
        assert_eq!(k.classify("/weir/resources/Gateway/ns"), Watched::Other);
        assert_eq!(
            k.classify("/weir/rollouts/shop/state"),
            Watched::State("shop")
        );
        assert_eq!(
            k.classify("/weir/rollouts/shop/driver"),
            Watched::Driver("shop")
        );
        assert_eq!(k.classify("/weir/rollouts/shop/x"), Watched::Other);
        assert_eq!(
            k.classify("/weir/rollouts/experiments/ab/state"),
            Watched::State("experiments/ab")
        );
        assert_eq!(
            k.classify("/weir/rollouts/experiments/ab/command"),
            Watched::Command("experiments/ab")
        );
        assert_eq!(k.classify("/weir/rollouts/a/b/state"), Watched::Other);
        assert_eq!(
            k.classify("/weir/rollouts/experiments//state"),
            Watched::Other
        );
        let (start, end) = k.watched();
        let tally = k.tally("ab", "i-1");
        assert_eq!(tally, "/weir/experiments/ab/i-1");
        assert!(tally.starts_with(&k.tallies("ab")));
        assert!(!(start <= tally && tally < end), "counts are not watched");
        assert_eq!(
            k.resource_id("/weir/resources/Canary/default/shop"),
            Some(("Canary", "default", "shop"))
        );
    }
}

//! A/B experiments on the request path: which variant a participant is on, and what they did.
//!
//! A participant's key is a cookie weir sets (a random id) or a header the app already sends
//! (hashed). On first exposure the variant is drawn from a hash of the key and the
//! experiment's salt along the variants' weights, so the same key lands on the same variant on
//! every instance and after a restart, and two experiments draw independently. The variant is
//! then kept in the participant's cookie with the goals already counted and the values summed
//! so far: a participant is counted once, converts once per goal, changing weights only
//! changes where *new* participants go, and weir keeps no table of users (memory does not grow
//! with them). The counts live in [`Live`], kept across reloads while the experiment's design
//! stays the same; `crate::experiment` judges them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use prometheus_client::metrics::counter::Counter;

use crate::backend::hash::{cookie, hash_bytes};
use crate::policy::affinity::BUCKETS;
use crate::policy::split::{Split, WeightedDest};
use crate::route::matcher::{RequestMatch, RequestView};

/// The cookie format's version, its first field.
const COOKIE_VERSION: &str = "1";
/// Values are kept in the cookie in thousandths.
const VALUE_SCALE: f64 = 1000.0;

/// An experiment as the request path runs it (one per `Experiment`).
#[derive(Debug)]
pub struct Design {
    /// The Experiment's name.
    pub name: String,
    /// Who takes part (ORed); empty: every request of the target's routes.
    pub participants: Vec<RequestMatch>,
    /// Variant names, the control first.
    pub variants: Vec<String>,
    /// How participants are known.
    pub key: Key,
    /// The cookie keeping the participant's state.
    pub cookie: String,
    /// `Set-Cookie` attributes after the value.
    pub attributes: String,
    /// Mixed into every key's hash: experiments draw independently.
    pub salt: u64,
    /// Goals, in the order written.
    pub goals: Vec<GoalRule>,
}

/// Where a participant's key comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// A random id weir puts in the cookie.
    Cookie,
    /// The value of a request header.
    Header(HeaderName),
}

/// A goal and how it is met.
#[derive(Debug)]
pub struct GoalRule {
    /// Name.
    pub name: String,
    /// How it is met.
    pub meet: Meet,
}

/// How a goal is met.
#[derive(Debug)]
pub enum Meet {
    /// A 2xx answer to a request matching one of these.
    Request(Vec<RequestMatch>),
    /// A response header entry naming the goal; with `value`, the entries' values are summed
    /// (entries naming anything but another value goal count for it too).
    Header {
        /// The header.
        name: HeaderName,
        /// Sum `value=`.
        value: bool,
    },
    /// Measured by a Prometheus query per variant (nothing to do on the request path).
    Query,
}

impl GoalRule {
    /// Whether the goal sums values.
    pub fn sums(&self) -> bool {
        matches!(self.meet, Meet::Header { value: true, .. })
    }
}

/// The variants of one rule of the target: a destination per variant, in the design's order,
/// weighted as the experiment says.
#[derive(Debug)]
pub struct RuleExperiment {
    /// Index of the experiment in the snapshot.
    pub experiment: usize,
    /// One destination per variant.
    pub variants: Split,
}

/// What the experiment does to requests now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Routing {
    /// Participants on their variants, new ones assigned, everything counted.
    Running = 0,
    /// Every participant on the control (stopped, or the control won).
    Control = 1,
    /// The experiment no longer routes (its winner's canary does).
    AsIs = 2,
    /// Participants stay on their variants; new users get the route as it is; nothing counted.
    Keep = 3,
}

/// Per variant and goal: the sum of values and of the squares of each participant's total.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Moments {
    /// Sum over every conversion's value.
    pub sum: f64,
    /// Sum over participants of the square of their total.
    pub sum_squares: f64,
}

/// The counts of one experiment, kept across reloads while its design stays.
#[derive(Debug)]
pub struct Live {
    routing: AtomicU8,
    users: Vec<AtomicU64>,
    /// Variant-major: `[variant * goals + goal]`.
    conversions: Vec<AtomicU64>,
    values: Mutex<Vec<Moments>>,
    goals: usize,
    users_metric: Vec<Counter>,
    conversions_metric: Vec<Counter>,
    /// Counts kept elsewhere (a state file, the fleet's store) were added, once per design.
    restored: std::sync::atomic::AtomicBool,
}

/// A copy of the counts.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    /// Participants per variant.
    pub users: Vec<u64>,
    /// Per variant, per goal: participants who converted.
    pub conversions: Vec<Vec<u64>>,
    /// Per variant, per goal: values.
    pub values: Vec<Vec<Moments>>,
}

impl Counts {
    /// Adds `other`'s counts (of the same shape; the rest of a larger one is left out).
    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.users.iter_mut().zip(&other.users) {
            *a += b;
        }
        for (a, b) in self.conversions.iter_mut().zip(&other.conversions) {
            for (a, b) in a.iter_mut().zip(b) {
                *a += b;
            }
        }
        for (a, b) in self.values.iter_mut().zip(&other.values) {
            for (a, b) in a.iter_mut().zip(b) {
                a.sum += b.sum;
                a.sum_squares += b.sum_squares;
            }
        }
    }

    /// Whether these are counts of `variants` x `goals`.
    pub fn has_shape(&self, variants: usize, goals: usize) -> bool {
        self.users.len() == variants
            && self.conversions.len() == variants
            && self.values.len() == variants
            && self.conversions.iter().all(|g| g.len() == goals)
            && self.values.iter().all(|g| g.len() == goals)
    }
}

impl Live {
    /// Zero counts for `variants` x `goals`, mirrored into the given metric handles
    /// (`users[variant]`, `conversions[variant * goals + goal]`).
    pub fn new(
        variants: usize,
        goals: usize,
        users_metric: Vec<Counter>,
        conversions_metric: Vec<Counter>,
    ) -> Live {
        Live {
            routing: AtomicU8::new(Routing::Running as u8),
            users: (0..variants).map(|_| AtomicU64::new(0)).collect(),
            conversions: (0..variants * goals).map(|_| AtomicU64::new(0)).collect(),
            values: Mutex::new(vec![Moments::default(); variants * goals]),
            goals,
            users_metric,
            conversions_metric,
            restored: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether counts kept elsewhere were added to these.
    pub fn restored(&self) -> bool {
        self.restored.load(Ordering::Acquire)
    }

    /// Adds counts kept elsewhere, unless some already were: they count once, however many
    /// controllers (one per reload) look at these counts.
    pub fn restore(&self, kept: &Counts) {
        if !self.restored.swap(true, Ordering::AcqRel) {
            self.add(kept);
        }
    }

    /// What the experiment does to requests now.
    pub fn routing(&self) -> Routing {
        match self.routing.load(Ordering::Acquire) {
            0 => Routing::Running,
            1 => Routing::Control,
            2 => Routing::AsIs,
            _ => Routing::Keep,
        }
    }

    /// Changes what the experiment does to requests.
    pub fn set_routing(&self, r: Routing) {
        self.routing.store(r as u8, Ordering::Release);
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        let values = self
            .values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let n = self.users.len();
        let g = self.goals;
        Counts {
            users: self
                .users
                .iter()
                .map(|u| u.load(Ordering::Relaxed))
                .collect(),
            conversions: (0..n)
                .map(|v| {
                    (0..g)
                        .map(|i| self.conversions[v * g + i].load(Ordering::Relaxed))
                        .collect()
                })
                .collect(),
            values: (0..n)
                .map(|v| values[v * g..(v + 1) * g].to_vec())
                .collect(),
        }
    }

    /// Adds counts restored from elsewhere (a state file): they count as if seen here.
    pub fn add(&self, c: &Counts) {
        let g = self.goals;
        for (v, users) in c.users.iter().enumerate().take(self.users.len()) {
            self.users[v].fetch_add(*users, Ordering::Relaxed);
        }
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        for (v, goals) in c.conversions.iter().enumerate().take(self.users.len()) {
            for (i, n) in goals.iter().enumerate().take(g) {
                self.conversions[v * g + i].fetch_add(*n, Ordering::Relaxed);
            }
        }
        for (v, goals) in c.values.iter().enumerate().take(self.users.len()) {
            for (i, m) in goals.iter().enumerate().take(g) {
                values[v * g + i].sum += m.sum;
                values[v * g + i].sum_squares += m.sum_squares;
            }
        }
    }

    fn user(&self, v: usize) {
        self.users[v].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.users_metric.get(v) {
            m.inc();
        }
    }

    fn conversion(&self, v: usize, g: usize) {
        let i = v * self.goals + g;
        self.conversions[i].fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.conversions_metric.get(i) {
            m.inc();
        }
    }

    /// A participant's total for a value goal went from `before` to `after`.
    fn value(&self, v: usize, g: usize, before: f64, after: f64) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let m = &mut values[v * self.goals + g];
        m.sum += after - before;
        m.sum_squares += after * after - before * before;
    }
}

/// A participant's state, as their cookie keeps it.
#[derive(Clone, Debug, PartialEq)]
struct State {
    /// The key's id: random (cookie keys) or the header value's hash.
    id: u64,
    variant: usize,
    /// Goals already counted, a bit each.
    counted: u64,
    /// Totals of the value goals, in thousandths, in goal order.
    values: Vec<i64>,
}

impl Design {
    /// The value goals' count.
    fn value_goals(&self) -> usize {
        self.goals.iter().filter(|g| g.sums()).count()
    }

    fn read_state(&self, headers: &HeaderMap) -> Option<State> {
        let raw = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| cookie(v, &self.cookie))?;
        let mut parts = raw.split('.');
        if parts.next()? != COOKIE_VERSION {
            return None;
        }
        let id = u64::from_str_radix(parts.next()?, 16).ok()?;
        let name = parts.next()?;
        let variant = self.variants.iter().position(|v| v == name)?;
        let counted = u64::from_str_radix(parts.next()?, 16).ok()?;
        let values: Vec<i64> = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if values.len() != self.value_goals() {
            return None;
        }
        Some(State {
            id,
            variant,
            counted,
            values,
        })
    }

    fn set_cookie(&self, s: &State) -> Option<HeaderValue> {
        let mut v = format!(
            "{}={COOKIE_VERSION}.{:016x}.{}.{:x}",
            self.cookie, s.id, self.variants[s.variant], s.counted
        );
        for x in &s.values {
            v.push_str(&format!(".{x}"));
        }
        v.push_str(&self.attributes);
        HeaderValue::from_str(&v).ok()
    }

    /// The bucket (of [`BUCKETS`]) of a key's id.
    pub fn bucket(&self, id: u64) -> u32 {
        (mix(id ^ self.salt) % u64::from(BUCKETS)) as u32
    }
}

/// A participant's request on its way: what its response will count.
#[derive(Debug)]
pub struct Exposure {
    /// Index of the experiment in the snapshot.
    pub experiment: usize,
    state: State,
    /// First exposure: counted as a participant when answered.
    new: bool,
    /// Request goals whose match this request meets, a bit each.
    requested: u64,
}

impl RuleExperiment {
    /// The variant of a request's participant, with what its response is to count; `None`:
    /// not a participant (or the experiment routes no more): the rule routes it as it is.
    pub fn assign<'r>(
        &'r self,
        design: &Design,
        live: &Live,
        view: &RequestView<'_>,
        headers: &HeaderMap,
    ) -> Option<(&'r WeightedDest, Option<Exposure>)> {
        let routing = live.routing();
        if routing == Routing::AsIs {
            return None;
        }
        if !design.participants.is_empty() && !design.participants.iter().any(|m| m.matches(view)) {
            return None;
        }
        let header_id = match &design.key {
            Key::Cookie => None,
            Key::Header(h) => {
                let v = headers.get(h).filter(|v| !v.is_empty())?;
                Some(hash_bytes(v.as_bytes()))
            }
        };
        let state = design
            .read_state(headers)
            .filter(|s| header_id.is_none_or(|id| id == s.id));
        let dest = |v: usize| &self.variants.dests[v.min(self.variants.dests.len() - 1)];
        match routing {
            Routing::Control => return Some((dest(0), None)),
            Routing::Keep => return state.map(|s| (dest(s.variant), None)),
            _ => {}
        }
        let (state, new) = match state {
            Some(s) => (s, false),
            None => {
                let id = header_id.unwrap_or_else(|| fastrand::u64(1..));
                let bucket = design.bucket(id);
                let picked = self.variants.pick_bucket(bucket);
                let variant = self
                    .variants
                    .dests
                    .iter()
                    .position(|d| std::ptr::eq(d, picked))
                    .unwrap_or(0);
                let state = State {
                    id,
                    variant,
                    counted: 0,
                    values: vec![0; design.value_goals()],
                };
                (state, true)
            }
        };
        let mut requested = 0;
        for (i, g) in design.goals.iter().enumerate() {
            if let Meet::Request(ms) = &g.meet
                && ms.iter().any(|m| m.matches(view))
            {
                requested |= 1 << i;
            }
        }
        let exposure = Exposure {
            experiment: self.experiment,
            state,
            new,
            requested,
        };
        Some((dest(exposure.state.variant), Some(exposure)))
    }
}

impl Exposure {
    /// Counts what the response shows (a first exposure, goals met, values) and returns the
    /// participant's cookie when their state changed.
    pub fn observe(
        mut self,
        design: &Design,
        live: &Live,
        status: StatusCode,
        headers: &HeaderMap,
    ) -> Option<HeaderValue> {
        if live.routing() != Routing::Running {
            return None;
        }
        let v = self.state.variant;
        let mut changed = self.new;
        if self.new {
            live.user(v);
        }
        let mut value_slot = 0;
        for (g, goal) in design.goals.iter().enumerate() {
            let bit = 1u64 << g;
            let (met, value) = match &goal.meet {
                Meet::Request(_) => (self.requested & bit != 0 && status.is_success(), None),
                Meet::Header { name, value } if !status.is_client_error() => {
                    entries(headers, name, design, &goal.name, *value)
                }
                _ => (false, None),
            };
            if met && self.state.counted & bit == 0 {
                self.state.counted |= bit;
                live.conversion(v, g);
                changed = true;
            }
            if goal.sums() {
                if let Some(add) = value {
                    let slot = &mut self.state.values[value_slot];
                    let before = *slot as f64 / VALUE_SCALE;
                    *slot = slot.saturating_add((add * VALUE_SCALE).round() as i64);
                    live.value(v, g, before, *slot as f64 / VALUE_SCALE);
                    changed = true;
                }
                value_slot += 1;
            }
        }
        if changed {
            design.set_cookie(&self.state)
        } else {
            None
        }
    }
}

/// Whether a response header names `goal` (`x-weir-goal: signup, purchase; value=42.50`), and
/// with `value` the sum of the values of its entries: those naming the goal, and those naming
/// anything but another value goal (`purchase; value=42.50` feeds a `revenue` value goal).
fn entries(
    headers: &HeaderMap,
    name: &HeaderName,
    design: &Design,
    goal: &str,
    value: bool,
) -> (bool, Option<f64>) {
    let mut met = false;
    let mut sum: Option<f64> = None;
    for line in headers.get_all(name).iter().filter_map(|v| v.to_str().ok()) {
        for entry in line.split(',') {
            let mut params = entry.split(';').map(str::trim);
            let named = params.next().unwrap_or_default();
            let amount = params.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                (k.trim().eq_ignore_ascii_case("value"))
                    .then(|| v.trim().trim_matches('"').parse::<f64>().ok())
                    .flatten()
                    .filter(|x| x.is_finite() && x.abs() < 1e12)
            });
            let mine = named == goal;
            if !value {
                met |= mine;
                continue;
            }
            let other_value_goal = design
                .goals
                .iter()
                .any(|g| g.name == named && g.name != goal && g.sums());
            if let Some(x) = amount
                && (mine || !other_value_goal)
            {
                met = true;
                *sum.get_or_insert(0.0) += x;
            }
        }
    }
    (met, sum)
}

/// A 64-bit finaliser (splitmix64): every bit of the input moves every bit of the output.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::headers::HeaderEdits;

    fn design(key: Key) -> Design {
        Design {
            name: "exp".into(),
            participants: Vec::new(),
            variants: vec!["control".into(), "new-ui".into()],
            key,
            cookie: "weir-exp".into(),
            attributes: "; Max-Age=60; Path=/; HttpOnly; SameSite=Lax".into(),
            salt: hash_bytes(b"exp"),
            goals: vec![
                GoalRule {
                    name: "signup".into(),
                    meet: Meet::Header {
                        name: HeaderName::from_static("x-weir-goal"),
                        value: false,
                    },
                },
                GoalRule {
                    name: "revenue".into(),
                    meet: Meet::Header {
                        name: HeaderName::from_static("x-weir-goal"),
                        value: true,
                    },
                },
            ],
        }
    }

    fn rule(weights: [u32; 2]) -> RuleExperiment {
        RuleExperiment {
            experiment: 0,
            variants: Split::new(
                weights
                    .iter()
                    .enumerate()
                    .map(|(i, &weight)| WeightedDest {
                        cluster: i,
                        weight,
                        headers: HeaderEdits::default(),
                        stats: i,
                    })
                    .collect(),
            ),
        }
    }

    fn view(headers: &HeaderMap) -> RequestView<'_> {
        RequestView::new("/", "GET", "shop", "http", 80, headers)
    }

    fn cookie_of(set: &HeaderValue) -> HeaderMap {
        let s = set.to_str().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(s.split(';').next().unwrap()).unwrap(),
        );
        h
    }

    #[test]
    fn a_participant_is_counted_once_and_converts_once_per_goal() {
        let d = design(Key::Cookie);
        let live = Live::new(2, 2, Vec::new(), Vec::new());
        let r = rule([50, 50]);
        let none = HeaderMap::new();
        let (dest, x) = r.assign(&d, &live, &view(&none), &none).unwrap();
        let set = x
            .unwrap()
            .observe(&d, &live, StatusCode::OK, &none)
            .unwrap();
        let back = cookie_of(&set);
        let v = dest.cluster;
        let mut goal = HeaderMap::new();
        goal.insert(
            "x-weir-goal",
            HeaderValue::from_static("signup, purchase; value=42.50"),
        );
        let mut cookie = back;
        for _ in 0..3 {
            let (again, x) = r.assign(&d, &live, &view(&cookie), &cookie).unwrap();
            assert_eq!(again.cluster, v);
            if let Some(set) = x.unwrap().observe(&d, &live, StatusCode::OK, &goal) {
                cookie = cookie_of(&set);
            }
        }
        let c = live.counts();
        assert_eq!(c.users[v], 1);
        assert_eq!(c.users.iter().sum::<u64>(), 1);
        assert_eq!(c.conversions[v], vec![1, 1]);
        // Three purchases of 42.50: one participant with a total of 127.50.
        assert!((c.values[v][1].sum - 127.5).abs() < 1e-9);
        assert!((c.values[v][1].sum_squares - 127.5 * 127.5).abs() < 1e-6);
    }

    #[test]
    fn header_keys_land_on_the_same_variant_everywhere_and_weights_move_only_new_users() {
        let d = design(Key::Header(HeaderName::from_static("x-user-id")));
        let live = Live::new(2, 2, Vec::new(), Vec::new());
        let mut seen = [0u32; 2];
        for u in 0..2000 {
            let mut h = HeaderMap::new();
            h.insert(
                "x-user-id",
                HeaderValue::from_str(&format!("user-{u}")).unwrap(),
            );
            let first = rule([50, 50])
                .assign(&d, &live, &view(&h), &h)
                .unwrap()
                .0
                .cluster;
            // Another instance, or after a restart: the same answer from the key alone.
            let again = rule([50, 50])
                .assign(&d, &live, &view(&h), &h)
                .unwrap()
                .0
                .cluster;
            assert_eq!(first, again);
            seen[first] += 1;
            // With its cookie, the participant stays even when the weights change.
            let (_, x) = rule([50, 50]).assign(&d, &live, &view(&h), &h).unwrap();
            let set = x
                .unwrap()
                .observe(&d, &live, StatusCode::OK, &HeaderMap::new());
            let mut with = cookie_of(&set.unwrap());
            with.insert("x-user-id", h["x-user-id"].clone());
            let skewed = rule([1, 99]);
            let moved = skewed.assign(&d, &live, &view(&with), &with).unwrap().0;
            assert_eq!(moved.cluster, first);
        }
        // 2000 fair draws: mean 1000, sigma ~22; 6 sigma is 134.
        assert!(seen[0].abs_diff(1000) < 134, "{seen:?}");
    }

    #[test]
    fn experiments_draw_independently() {
        let a = design(Key::Cookie);
        let mut b = design(Key::Cookie);
        b.salt = hash_bytes(b"other");
        let same = (1..=4000u64)
            .filter(|&id| (a.bucket(id) < 5000) == (b.bucket(id) < 5000))
            .count();
        // Independent halves agree half the time: mean 2000, sigma ~32.
        assert!(same.abs_diff(2000) < 200, "{same}");
    }

    #[test]
    fn a_tampered_or_foreign_cookie_starts_over() {
        let d = design(Key::Cookie);
        for bad in [
            "weir-exp=2.00000000000000aa.control.0.0",
            "weir-exp=1.zz.control.0.0",
            "weir-exp=1.00000000000000aa.nobody.0.0",
            "weir-exp=1.00000000000000aa.control.0",
        ] {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_static(bad));
            assert_eq!(d.read_state(&h), None, "{bad}");
        }
    }

    #[test]
    fn stopped_experiments_send_participants_to_the_control_and_count_nothing() {
        let d = design(Key::Cookie);
        let live = Live::new(2, 2, Vec::new(), Vec::new());
        live.set_routing(Routing::Control);
        let none = HeaderMap::new();
        let r = rule([0, 1]);
        for _ in 0..50 {
            let (dest, x) = r.assign(&d, &live, &view(&none), &none).unwrap();
            assert_eq!((dest.cluster, x.is_none()), (0, true));
        }
        live.set_routing(Routing::AsIs);
        assert!(r.assign(&d, &live, &view(&none), &none).is_none());
        assert_eq!(live.counts().users, vec![0, 0]);
    }
}

//! Weighted choice of a destination, made per request.

use http::{HeaderMap, HeaderValue};

use crate::policy::affinity::Affinity;
use crate::policy::headers::HeaderEdits;

/// One destination of a rule.
#[derive(Debug)]
pub struct WeightedDest {
    /// Index of its cluster in the snapshot.
    pub cluster: usize,
    /// Relative weight; 0 gets nothing.
    pub weight: u32,
    /// Destination-level header edits.
    pub headers: HeaderEdits,
    /// Index of its metrics handles in the snapshot.
    pub stats: usize,
}

/// Destinations with relative weights.
#[derive(Debug)]
pub struct Split {
    /// The destinations.
    pub dests: Vec<WeightedDest>,
    cumulative: Vec<u32>,
}

impl Split {
    /// A split over `dests`, whose weights must not all be zero.
    pub fn new(dests: Vec<WeightedDest>) -> Split {
        let mut sum = 0u32;
        let cumulative = dests
            .iter()
            .map(|d| {
                sum += d.weight;
                sum
            })
            .collect();
        Split { dests, cumulative }
    }

    /// Sum of the weights.
    pub fn total(&self) -> u32 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// The destination for a draw `r` in `0..total()`.
    pub fn pick_at(&self, r: u32) -> &WeightedDest {
        let i = self.cumulative.partition_point(|&c| c <= r);
        &self.dests[i.min(self.dests.len() - 1)]
    }

    /// The destination of cohort bucket `b` (of [`super::affinity::BUCKETS`]): the same
    /// bucket always lands on the same destination while the weights stand.
    pub fn pick_bucket(&self, b: u32) -> &WeightedDest {
        let scaled = u64::from(b) * u64::from(self.total()) / u64::from(super::affinity::BUCKETS);
        self.pick_at(scaled as u32)
    }

    /// A request's destination: by its cohort under session affinity (a client without one is
    /// assigned one, with the cookie that keeps it there), else at random by weight.
    pub fn pick_for(
        &self,
        affinity: Option<&Affinity>,
        headers: &HeaderMap,
    ) -> (&WeightedDest, Option<HeaderValue>) {
        let Some(a) = affinity else {
            return (self.pick(), None);
        };
        match a.bucket(headers) {
            Some(bucket) => (self.pick_bucket(bucket), None),
            None => {
                let (bucket, cookie) = a.assign();
                (self.pick_bucket(bucket), cookie)
            }
        }
    }

    /// A destination chosen at random by weight.
    pub fn pick(&self) -> &WeightedDest {
        if self.dests.len() == 1 {
            return &self.dests[0];
        }
        self.pick_at(fastrand::u32(..self.total()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weights: &[u32]) -> Split {
        Split::new(
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
        )
    }

    #[test]
    fn cohorts_only_grow_toward_the_last_destination() {
        use super::super::affinity::BUCKETS;
        let mut before: Vec<bool> = vec![false; BUCKETS as usize];
        for w in [0, 1, 10, 25, 50, 99, 100] {
            let s = split(&[100 - w, w]);
            let on: Vec<bool> = (0..BUCKETS)
                .map(|b| s.pick_bucket(b).cluster == 1)
                .collect();
            // The canary's share of buckets is its weight, exactly.
            assert_eq!(on.iter().filter(|&&x| x).count() as u32, w * BUCKETS / 100);
            // Nobody leaves the canary as its weight grows.
            assert!(before.iter().zip(&on).all(|(was, is)| !was || *is), "{w}");
            before = on;
        }
    }

    #[test]
    fn draws_map_to_weights_exactly() {
        let s = split(&[90, 0, 10]);
        let mut counts = [0; 3];
        for r in 0..s.total() {
            counts[s.pick_at(r).cluster] += 1;
        }
        assert_eq!(counts, [90, 0, 10]);
    }

    #[test]
    fn random_picks_stay_within_bounds() {
        fastrand::seed(7);
        let s = split(&[1, 3]);
        let n = 40_000;
        let v2 = (0..n).filter(|_| s.pick().cluster == 1).count() as f64;
        // Mean 30000, sigma ~87: six sigma is about 520.
        assert!((v2 - 30_000.0).abs() < 600.0, "{v2}");
    }

    #[test]
    fn pick_for_keeps_a_cohort_and_assigns_new_clients_one() {
        use super::super::affinity::Affinity;
        let s = split(&[50, 50]);
        let none = HeaderMap::new();
        // Without affinity: a weighted pick, no cookie.
        assert!(s.pick_for(None, &none).1.is_none());
        let a = Affinity::new("cohort", None, None, None, false, false, None, false);
        // A new client gets a cookie naming its bucket, and that bucket's destination.
        let (dest, cookie) = s.pick_for(Some(&a), &none);
        let cookie = cookie.expect("a new client is given a cohort");
        let value = cookie.to_str().unwrap();
        let bucket: u32 = value["cohort=".len()..value.find(';').unwrap()]
            .parse()
            .unwrap();
        assert_eq!(dest.cluster, s.pick_bucket(bucket).cluster);
        // Coming back with it, the client lands on the same destination and gets no new cookie.
        let mut back = HeaderMap::new();
        back.insert(
            http::header::COOKIE,
            HeaderValue::from_str(&format!("cohort={bucket}")).unwrap(),
        );
        for _ in 0..20 {
            let (again, none) = s.pick_for(Some(&a), &back);
            assert_eq!((again.cluster, none), (dest.cluster, None));
        }
    }
}

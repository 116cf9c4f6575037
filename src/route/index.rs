//! An index from paths to the rules that could match them, so that exact and prefix routes cost
//! a few hash lookups however many rules a host has. First-match order is kept: candidates are
//! tried in rule order.

use std::collections::HashMap;

use super::matcher::{RequestMatch, RequestView, StrMatcher};

/// Candidate rules per path.
#[derive(Clone, Debug, Default)]
pub struct PathIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    prefix: HashMap<Box<str>, Vec<u32>>,
    prefix_lens: Vec<usize>,
    exact_ci: HashMap<Box<str>, Vec<u32>>,
    prefix_ci: HashMap<Box<str>, Vec<u32>>,
    prefix_ci_lens: Vec<usize>,
    /// Rules with a block the index cannot narrow (regex, no uri condition).
    always: Vec<u32>,
}

impl PathIndex {
    /// Indexes rules given as their match blocks (an empty list matches everything).
    pub fn build<'a>(rules: impl IntoIterator<Item = &'a [RequestMatch]>) -> PathIndex {
        let mut ix = PathIndex::default();
        for (i, blocks) in rules.into_iter().enumerate() {
            let i = i as u32;
            if blocks.is_empty() {
                ix.always.push(i);
            }
            for block in blocks {
                let Some(uri) = &block.uri else {
                    ix.always.push(i);
                    continue;
                };
                match (&uri.matcher, uri.ignore_case) {
                    (StrMatcher::Exact(s), false) => add(&mut ix.exact, None, s, i),
                    (StrMatcher::Exact(s), true) => add(&mut ix.exact_ci, None, s, i),
                    (StrMatcher::Prefix(s), false) => {
                        add(&mut ix.prefix, Some(&mut ix.prefix_lens), s, i)
                    }
                    (StrMatcher::Prefix(s), true) => {
                        add(&mut ix.prefix_ci, Some(&mut ix.prefix_ci_lens), s, i)
                    }
                    _ => ix.always.push(i),
                }
            }
        }
        ix.always.dedup();
        ix.prefix_lens.sort_unstable();
        ix.prefix_ci_lens.sort_unstable();
        ix
    }

    /// Calls `f` with each candidate rule index in increasing order until it returns `Some`.
    pub fn find<T>(&self, req: &RequestView<'_>, mut f: impl FnMut(u32) -> Option<T>) -> Option<T> {
        let mut lists: Vec<&[u32]> = Vec::new();
        if !self.exact.is_empty()
            && let Some(l) = self.exact.get(req.path)
        {
            lists.push(l);
        }
        collect_prefixes(&self.prefix, &self.prefix_lens, req.path, &mut lists);
        if !self.exact_ci.is_empty() || !self.prefix_ci.is_empty() {
            let lower = req.lower_path();
            if let Some(l) = self.exact_ci.get(lower) {
                lists.push(l);
            }
            collect_prefixes(&self.prefix_ci, &self.prefix_ci_lens, lower, &mut lists);
        }
        if lists.is_empty() {
            return self.always.iter().find_map(|&i| f(i));
        }
        lists.push(&self.always);
        let mut heads = vec![0usize; lists.len()];
        let mut last = None;
        loop {
            let next = lists
                .iter()
                .zip(&heads)
                .filter_map(|(l, &h)| l.get(h).copied())
                .min()?;
            for (l, h) in lists.iter().zip(heads.iter_mut()) {
                if l.get(*h) == Some(&next) {
                    *h += 1;
                }
            }
            if last == Some(next) {
                continue;
            }
            last = Some(next);
            if let Some(found) = f(next) {
                return Some(found);
            }
        }
    }
}

fn add(map: &mut HashMap<Box<str>, Vec<u32>>, lens: Option<&mut Vec<usize>>, key: &str, rule: u32) {
    let list = map.entry(key.into()).or_default();
    if list.last() != Some(&rule) {
        list.push(rule);
    }
    if let Some(lens) = lens
        && !lens.contains(&key.len())
    {
        lens.push(key.len());
    }
}

fn collect_prefixes<'a>(
    map: &'a HashMap<Box<str>, Vec<u32>>,
    lens: &[usize],
    path: &str,
    out: &mut Vec<&'a [u32]>,
) {
    for &len in lens {
        if len > path.len() {
            break;
        }
        if path.is_char_boundary(len)
            && let Some(l) = map.get(&path[..len])
        {
            out.push(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::matcher::UriMatch;
    use http::HeaderMap;

    fn block(m: StrMatcher) -> Vec<RequestMatch> {
        vec![RequestMatch {
            uri: Some(UriMatch {
                matcher: m,
                ignore_case: false,
            }),
            ..Default::default()
        }]
    }

    #[test]
    fn candidates_in_rule_order() {
        let rules = [
            block(StrMatcher::Prefix("/api/v2".into())),
            block(StrMatcher::Exact("/api".into())),
            vec![],
            block(StrMatcher::Prefix("/api".into())),
        ];
        let ix = PathIndex::build(rules.iter().map(|r| r.as_slice()));
        let h = HeaderMap::new();
        let seen = |path: &str| {
            let mut out = Vec::new();
            let view = RequestView::new(path, "GET", "h", "http", 80, &h);
            ix.find(&view, |i| {
                out.push(i);
                None::<()>
            });
            out
        };
        assert_eq!(seen("/api/v2/x"), vec![0, 2, 3]);
        assert_eq!(seen("/api"), vec![1, 2, 3]);
        assert_eq!(seen("/other"), vec![2]);
    }
}

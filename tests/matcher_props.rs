//! Property tests: the path index finds exactly the rule a linear first-match scan finds, and
//! string matchers agree with their definitions.

use http::HeaderMap;
use proptest::prelude::*;
use weir::route::index::PathIndex;
use weir::route::matcher::{RequestMatch, RequestView, StrMatcher, UriMatch, compile_regex};

fn path() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "ab", "/", "A"], 0..6)
        .prop_map(|parts| format!("/{}", parts.concat()))
}

fn block() -> impl Strategy<Value = RequestMatch> {
    (0..4u8, path(), any::<bool>()).prop_map(|(kind, p, ignore_case)| {
        let p = if ignore_case {
            p.to_ascii_lowercase()
        } else {
            p
        };
        let matcher = match kind {
            0 => StrMatcher::Exact(p.into()),
            1 => StrMatcher::Prefix(p.into()),
            2 => StrMatcher::Regex(compile_regex(&format!("{}.*", regex::escape(&p))).unwrap()),
            _ => return RequestMatch::default(),
        };
        RequestMatch {
            uri: Some(UriMatch {
                matcher,
                ignore_case,
            }),
            ..Default::default()
        }
    })
}

proptest! {
    #[test]
    fn index_agrees_with_linear_scan(
        rules in proptest::collection::vec(proptest::collection::vec(block(), 0..3), 1..12),
        paths in proptest::collection::vec(path(), 1..8),
    ) {
        let index = PathIndex::build(rules.iter().map(|r| r.as_slice()));
        let headers = HeaderMap::new();
        for p in &paths {
            let view = RequestView::new(p, "GET", "h", "http", 80, &headers);
            let matches = |i: usize| rules[i].is_empty() || rules[i].iter().any(|b| b.matches(&view));
            let linear = (0..rules.len()).find(|&i| matches(i));
            let indexed = index.find(&view, |i| matches(i as usize).then_some(i as usize));
            prop_assert_eq!(linear, indexed, "path {}", p);
        }
    }

    #[test]
    fn string_matchers_follow_their_definitions(a in ".{0,12}", b in ".{0,12}") {
        let joined = format!("{a}{b}");
        prop_assert!(StrMatcher::Prefix(a.as_str().into()).matches(&joined));
        prop_assert!(StrMatcher::Exact(a.as_str().into()).matches(&a));
        prop_assert_eq!(StrMatcher::Exact(a.as_str().into()).matches(&joined), b.is_empty());
        let literal = StrMatcher::Regex(compile_regex(&regex::escape(&a)).unwrap());
        prop_assert!(literal.matches(&a));
        prop_assert_eq!(literal.matches(&joined), b.is_empty());
    }
}

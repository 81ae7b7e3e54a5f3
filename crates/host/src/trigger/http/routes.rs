//! Spin's HTTP route syntax and matching: exact paths, `:name` segments and a trailing `/...`
//! wildcard. The most specific route wins: segment by segment, a literal beats a `:name`
//! capture, which beats a wildcard; at equal segments an exact route beats a wildcard one.

use std::cmp::Ordering;

/// Why a route pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route {route:?}: {reason}")]
pub struct RouteError {
    /// The route as written.
    pub route: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A parsed route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    raw: String,
    /// The normalised route (`spin-matched-route`).
    based: String,
    /// The raw route without its `/...` suffix (`spin-component-route`).
    component_route: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

/// What matching a path against one pattern finds.
struct Captured {
    path_info: String,
    captures: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// What a matched route tells the component (the `spin-*` route headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub raw_route: String,
    /// The normalised route (`spin-matched-route`).
    pub based_route: String,
    /// The raw route without its `/...` suffix (`spin-component-route`).
    pub component_route: String,
    /// The part of the path after a wildcard route's prefix (`spin-path-info`); empty for exact
    /// routes.
    pub path_info: String,
    /// `:name` captures, in order (`spin-path-match-<name>`).
    pub captures: Vec<(String, String)>,
}

impl RouteMatch {
    /// The match Spin reports for a service-chained request: a wildcard over the whole path.
    pub fn chained(path: &str) -> Self {
        Self {
            raw_route: "/...".into(),
            based_route: "/...".into(),
            component_route: String::new(),
            path_info: path.to_owned(),
            captures: Vec::new(),
        }
    }
}

impl RoutePattern {
    /// Parses a route as written in `[[trigger.http]] route`.
    pub fn parse(raw: &str) -> Result<Self, RouteError> {
        let fail = |reason| RouteError {
            route: raw.to_owned(),
            reason,
        };
        let mut path = raw.trim().to_owned();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let (prefix, wildcard) = match path
            .strip_suffix("/...")
            .or_else(|| path.strip_suffix("/*"))
        {
            Some(prefix) => (prefix.to_owned(), true),
            None => (path.strip_suffix('/').unwrap_or(&path).to_owned(), false),
        };
        let mut segments = Vec::new();
        for segment in prefix.split('/').skip(1) {
            if segment.is_empty() {
                return Err(fail("empty path segment (doubled /)"));
            }
            if segment.contains("...") || segment.contains('*') {
                return Err(fail("a wildcard may only end the route, as /..."));
            }
            match segment.strip_prefix(':') {
                Some("") => return Err(fail("`:` captures must be named, as :name")),
                Some(name) => segments.push(Segment::Capture(name.to_owned())),
                None => segments.push(Segment::Literal(segment.to_owned())),
            }
        }
        Ok(Self {
            raw: raw.to_owned(),
            based: based(&segments, wildcard),
            component_route: raw.strip_suffix("/...").unwrap_or(raw).to_owned(),
            segments,
            wildcard,
        })
    }

    /// The route as written.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// What the component is told when this pattern wins.
    fn told(&self, captured: Captured) -> RouteMatch {
        RouteMatch {
            raw_route: self.raw.clone(),
            based_route: self.based.clone(),
            component_route: self.component_route.clone(),
            path_info: captured.path_info,
            captures: captured.captures,
        }
    }

    /// Matches a request path (without query).
    fn capture(&self, path: &str) -> Option<Captured> {
        let mut rest = path;
        let mut captures = Vec::new();
        for segment in &self.segments {
            let after_slash = rest.strip_prefix('/')?;
            let end = after_slash.find('/').unwrap_or(after_slash.len());
            let value = &after_slash[..end];
            match segment {
                Segment::Literal(text) if text == value => {}
                Segment::Capture(name) if !value.is_empty() => {
                    captures.push((name.clone(), value.to_owned()));
                }
                _ => return None,
            }
            rest = &after_slash[end..];
        }
        let path_info = if self.wildcard {
            rest.to_owned()
        } else if rest.is_empty() || rest == "/" {
            String::new()
        } else {
            return None;
        };
        Some(Captured {
            path_info,
            captures,
        })
    }

    /// Orders patterns by specificity: `Greater` means `self` wins over `other`.
    fn specificity(&self, other: &Self) -> Ordering {
        for (mine, theirs) in self.segments.iter().zip(&other.segments) {
            let order = rank(mine).cmp(&rank(theirs));
            if order != Ordering::Equal {
                return order;
            }
        }
        let (mine, theirs) = (self.segments.len(), other.segments.len());
        match mine.cmp(&theirs) {
            // Same segments: an exact route beats a wildcard one.
            Ordering::Equal => other.wildcard.cmp(&self.wildcard),
            // One extends the other: the next element of the longer is a segment (more
            // specific) unless the shorter ends in a wildcard, which the longer refines too.
            longer => longer,
        }
    }
}

fn based(segments: &[Segment], wildcard: bool) -> String {
    let mut based: String = segments
        .iter()
        .map(|segment| match segment {
            Segment::Literal(text) => format!("/{text}"),
            Segment::Capture(name) => format!("/:{name}"),
        })
        .collect();
    if wildcard {
        based.push_str("/...");
    } else if based.is_empty() {
        based.push('/');
    }
    based
}

fn rank(segment: &Segment) -> u8 {
    match segment {
        Segment::Literal(_) => 2,
        Segment::Capture(_) => 1,
    }
}

/// Routes to targets: the most specific matching route wins.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Router<T> {
    /// Builds a router from `(route, target)` pairs in manifest order. As in Spin, when the same
    /// route text appears twice the later one wins; the replaced entries are returned so the
    /// caller can warn about them.
    pub fn new(routes: Vec<(RoutePattern, T)>) -> (Self, Vec<(RoutePattern, T)>) {
        let mut kept: Vec<(RoutePattern, T)> = Vec::new();
        let mut replaced = Vec::new();
        for (pattern, target) in routes {
            match kept
                .iter_mut()
                .find(|(existing, _)| existing.raw == pattern.raw)
            {
                Some(slot) => replaced.push(std::mem::replace(slot, (pattern, target))),
                None => kept.push((pattern, target)),
            }
        }
        (Self { routes: kept }, replaced)
    }

    /// The most specific route matching `path`, with its target (first declared wins a tie).
    pub fn route(&self, path: &str) -> Option<(&T, RouteMatch)> {
        let mut best: Option<(&RoutePattern, &T, Captured)> = None;
        for (pattern, target) in &self.routes {
            let Some(found) = pattern.capture(path) else {
                continue;
            };
            let better = best
                .as_ref()
                .is_none_or(|(current, _, _)| pattern.specificity(current) == Ordering::Greater);
            if better {
                best = Some((pattern, target, found));
            }
        }
        best.map(|(pattern, target, found)| (target, pattern.told(found)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &RoutePattern, path: &str) -> Option<RouteMatch> {
        pattern.capture(path).map(|captured| pattern.told(captured))
    }

    fn router(routes: &[&str]) -> Router<String> {
        let pairs = routes
            .iter()
            .map(|r| (RoutePattern::parse(r).unwrap(), r.to_string()))
            .collect();
        Router::new(pairs).0
    }

    fn winner(router: &Router<String>, path: &str) -> Option<String> {
        router.route(path).map(|(target, _)| target.clone())
    }

    #[test]
    fn exact_beats_wildcard() {
        let r = router(&["/...", "/one"]);
        assert_eq!(winner(&r, "/one").as_deref(), Some("/one"));
        assert_eq!(winner(&r, "/two").as_deref(), Some("/..."));
        let r = router(&["/foo/...", "/foo"]);
        assert_eq!(winner(&r, "/foo").as_deref(), Some("/foo"));
        assert_eq!(winner(&r, "/foo/x").as_deref(), Some("/foo/..."));
    }

    #[test]
    fn longest_wildcard_prefix_wins_whatever_the_order() {
        let r = router(&["/one/...", "/one/two/three/...", "/one/two/..."]);
        assert_eq!(
            winner(&r, "/one/two/three/four").as_deref(),
            Some("/one/two/three/...")
        );
        assert_eq!(winner(&r, "/one/two/x").as_deref(), Some("/one/two/..."));
        assert_eq!(winner(&r, "/one").as_deref(), Some("/one/..."));
    }

    #[test]
    fn literal_beats_capture_beats_wildcard() {
        let r = router(&["/users/...", "/users/:id", "/users/me"]);
        assert_eq!(winner(&r, "/users/me").as_deref(), Some("/users/me"));
        assert_eq!(winner(&r, "/users/42").as_deref(), Some("/users/:id"));
        assert_eq!(
            winner(&r, "/users/42/orders").as_deref(),
            Some("/users/...")
        );
    }

    #[test]
    fn root_wildcard_matches_everything() {
        let r = router(&["/..."]);
        for path in ["/", "/abc/", "/foo/bar"] {
            assert!(winner(&r, path).is_some(), "{path}");
        }
    }

    #[test]
    fn trailing_slashes() {
        let r = router(&["/foo"]);
        assert!(winner(&r, "/foo/").is_some());
        assert!(winner(&r, "/foo/bar").is_none());
        assert!(winner(&r, "/foobar").is_none());
        let root = router(&["/"]);
        assert!(winner(&root, "/").is_some());
        assert!(winner(&root, "/x").is_none());
    }

    #[test]
    fn path_info_follows_spin() {
        let pattern = RoutePattern::parse("/foo/...").unwrap();
        let info = |path| matches(&pattern, path).map(|m| m.path_info);
        assert_eq!(info("/foo").as_deref(), Some(""));
        assert_eq!(info("/foo/").as_deref(), Some("/"));
        assert_eq!(info("/foo/bar").as_deref(), Some("/bar"));
        assert_eq!(info("/foo/bar/").as_deref(), Some("/bar/"));
        assert_eq!(info("/foobar"), None);
    }

    #[test]
    fn headers_for_a_capture_route() {
        let found = matches(
            &RoutePattern::parse("/foo/:userid/...").unwrap(),
            "/foo/42/bar",
        )
        .unwrap();
        assert_eq!(found.based_route, "/foo/:userid/...");
        assert_eq!(found.raw_route, "/foo/:userid/...");
        assert_eq!(found.component_route, "/foo/:userid");
        assert_eq!(found.path_info, "/bar");
        assert_eq!(found.captures, [("userid".to_string(), "42".to_string())]);
        let root = matches(&RoutePattern::parse("/...").unwrap(), "/x").unwrap();
        assert_eq!(root.component_route, "");
        assert_eq!(root.based_route, "/...");
    }

    #[test]
    fn duplicate_route_text_last_one_wins() {
        let pairs = vec![
            (RoutePattern::parse("/a").unwrap(), "first"),
            (RoutePattern::parse("/a").unwrap(), "second"),
        ];
        let (router, replaced) = Router::new(pairs);
        assert_eq!(router.route("/a").map(|(t, _)| *t), Some("second"));
        assert_eq!(replaced.len(), 1);
        assert_eq!(replaced[0].1, "first");
    }

    #[test]
    fn refuses_bad_patterns() {
        for bad in ["/a/.../b", "/:", "/a//b", "/*/x"] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(RoutePattern::parse("no-slash").unwrap().based, "/no-slash");
    }
}

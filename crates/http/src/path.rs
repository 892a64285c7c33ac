//! The one spelling of a path that is routed. Anything else — `.` or `..`
//! segments, empty segments, backslashes, percent-encoded separators — is
//! answered 400 before it can reach a route (the gateway's forwarding checks
//! it too, and the fallback of every service's router).

/// Whether a request path is in the one spelling that is routed (and that
/// the gateway forwards unchanged): no `.` or `..` segments, no empty segment inside it, no
/// backslash, and no percent-encoded `.`, `/`, `\` or `%` (each of which some
/// later parser would turn into a different path than the one routed).
pub fn is_canonical(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if path.contains('\\') {
        return false;
    }
    let lower = path.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%25", "%00"]
        .iter()
        .any(|encoded| lower.contains(encoded))
    {
        return false;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments
        .iter()
        .enumerate()
        .all(|(i, s)| *s != "." && *s != ".." && (!s.is_empty() || i == last))
}

/// What a path no route matched gets: 400 if it is not in canonical form
/// (so no other spelling of a path looks merely absent), else 404.
pub fn unrouted(path: &str) -> crate::Problem {
    if is_canonical(path) {
        crate::Problem::not_found("No such resource.")
    } else {
        crate::Problem::bad_request("The path is not in canonical form.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_plain_spelling_is_canonical() {
        for good in [
            "/",
            "/api/v1/products",
            "/api/v1/products/",
            "/api/v1/products/abc",
        ] {
            assert!(is_canonical(good), "{good}");
        }
        for bad in [
            "api/v1/products",
            "//api/v1/products",
            "/api/v1//products",
            "/api/v1/./products",
            "/api/v1/products/..",
            "/api/v1/products%2f",
            "/api/v1/products%2F",
            "/api/v1/products%5c",
            "/api/v1/products%25",
            "/api/v1/products%00",
            "/api/v1/products%2e",
            "/api/v1/products\\x",
        ] {
            assert!(!is_canonical(bad), "{bad}");
        }
        assert_eq!(unrouted("/api/v1//x").status, 400);
        assert_eq!(unrouted("/api/v1/x").status, 404);
    }
}

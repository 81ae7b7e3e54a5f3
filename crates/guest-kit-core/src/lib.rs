//! The plain-Rust half of `guest-kit` (`components/guest-kit`): what its helpers compute without
//! touching Spin or WASI, so it builds and is unit-tested natively, without `spin-sdk`. The
//! components use these through `guest-kit`, which re-exports the public ones.

pub mod access;

/// The `key=value` pairs of a query string, in order, percent-decoded (`+` is kept as is); a
/// pair without `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
}

/// Escapes `text` for a query string: everything but unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) becomes `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Decodes `%XX` escapes (invalid UTF-8 becomes U+FFFD); a `%` not followed by two hex digits
/// stays as it is.
pub fn percent_decode(text: &str) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let hex = |at: usize| {
        bytes
            .get(at)
            .and_then(|byte| char::from(*byte).to_digit(16))
    };
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The path below a component's route from its `spin-path-info` header: `/` when the header is
/// missing or empty (never the full request path, which would still hold the route's prefix).
pub fn path_info(header: Option<&str>) -> String {
    match header {
        None | Some("") => "/".to_owned(),
        Some(info) => info.to_owned(),
    }
}

/// An error with every cause below it, `outer: inner: innermost`, for logs and problem details
/// (an error's `Display` usually names only its own step).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// Whether a Content-Type value names JSON (`application/json` or `application/*+json`, any
/// parameters).
pub fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// Reads a counter's stored bytes: Spin's SQLite store keeps `increment`ed values as 8-byte
/// little-endian integers, its Redis store as decimal text (`INCRBY`). Decimal text is tried
/// first; it cannot be mistaken for a binary value below 3.4 × 10^18 (whose eight bytes would
/// all have to be ASCII digits).
pub fn decode_counter(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok().filter(|text| {
        let digits = text.strip_prefix('-').unwrap_or(text);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    match text {
        Some(text) => text.parse().ok(),
        None => <[u8; 8]>::try_from(bytes).ok().map(i64::from_le_bytes),
    }
}

/// The scheme of an outbound URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpScheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

/// `http://host:port/path?query` → (scheme, authority, path with query); `None` unless the URL
/// is `http(s)://authority[/path]` with an authority.
pub fn split_url(url: &str) -> Option<(HttpScheme, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "http" => HttpScheme::Http,
        "https" => HttpScheme::Https,
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    (!authority.is_empty()).then_some((scheme, authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        query_pairs(query).collect()
    }

    #[test]
    fn error_chains_name_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&error), "outer: inner");
    }

    #[test]
    fn query_pairs_split_and_decode() {
        let own = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(pairs(""), vec![]);
        assert_eq!(
            pairs("status=pending&&limit=5&flag"),
            vec![own("status", "pending"), own("limit", "5"), own("flag", "")]
        );
        assert_eq!(
            pairs("a=x%3Dy%26z&b=%e2%9c%93&c=+1"),
            vec![own("a", "x=y&z"), own("b", "\u{2713}"), own("c", "+1")]
        );
        assert_eq!(
            pairs("a=100%&b=%zz&c=%+1&d=%4"),
            vec![
                own("a", "100%"),
                own("b", "%zz"),
                own("c", "%+1"),
                own("d", "%4")
            ]
        );
        assert_eq!(pairs("a=%FF"), vec![own("a", "\u{fffd}")]);
        let odd = "1732:ord_01 a&b=c/%";
        assert_eq!(percent_encode(odd), "1732%3Aord_01%20a%26b%3Dc%2F%25");
        assert_eq!(
            pairs(&format!("after={}", percent_encode(odd))),
            vec![own("after", odd)]
        );
    }

    #[test]
    fn json_media_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(yes), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "json",
        ] {
            assert!(!is_json_media_type(no), "{no}");
        }
    }

    #[test]
    fn urls_split_into_their_parts() {
        let parts = |url| split_url(url).map(|(s, a, p)| (matches!(s, HttpScheme::Http), a, p));
        assert_eq!(
            parts("http://127.0.0.1:3000/external/validate?x=1"),
            Some((true, "127.0.0.1:3000", "/external/validate?x=1"))
        );
        assert_eq!(
            parts("https://example.com"),
            Some((false, "example.com", "/"))
        );
        assert_eq!(parts("ftp://example.com/"), None);
        assert_eq!(parts("http:///path"), None);
        assert_eq!(parts("127.0.0.1:3000/x"), None);
    }

    #[test]
    fn counters_decode_from_either_backend() {
        assert_eq!(decode_counter(&42i64.to_le_bytes()), Some(42));
        assert_eq!(decode_counter(&(-3i64).to_le_bytes()), Some(-3));
        assert_eq!(decode_counter(b"42"), Some(42));
        assert_eq!(decode_counter(b"10000000"), Some(10_000_000));
        assert_eq!(decode_counter(b"-7"), Some(-7));
        assert_eq!(decode_counter(b"{}"), None);
        assert_eq!(decode_counter(b""), None);
    }
}

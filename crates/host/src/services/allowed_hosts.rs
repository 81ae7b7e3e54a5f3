//! `allowed_outbound_hosts`: which addresses a component may reach, with Spin's syntax and
//! matching rules (`scheme://host[:port]`, `*` wildcards, `*.domain`, CIDR ranges, port ranges,
//! `self` for relative requests).

use std::net::IpAddr;

/// Why an `allowed_outbound_hosts` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed_outbound_hosts entry {entry:?}: {reason}")]
pub struct AllowedHostError {
    /// The entry as written (after variables were filled in).
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<AllowedHost>,
}

#[derive(Debug, Clone)]
struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Any,
    /// `*.example.com`, stored as `.example.com`.
    Subdomain(String),
    Exact(String),
    Network {
        base: IpAddr,
        prefix: u8,
    },
    /// `self`: relative requests back to this application. wasmtime's `wasi:http` refuses
    /// URLs without a host before they reach the host's policy, so this matches nothing.
    ThisApp,
}

#[derive(Debug, Clone, Copy)]
enum PortPattern {
    Any,
    Exact(u16),
    /// `start..end`, end excluded (as in Spin).
    Range(u16, u16),
}

/// The port a scheme uses when a URL or an entry names none (Spin's table).
pub fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "mqtt" => Some(1883),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses entries whose `{{ variables }}` have already been filled in.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, AllowedHostError> {
        let entries = entries
            .iter()
            .map(|entry| AllowedHost::parse(entry.as_ref().trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Whether a request to `scheme://host[:port]` is allowed. A missing port means the
    /// scheme's well-known port; a scheme without one is refused.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let Some(port) = port.or_else(|| well_known_port(scheme)) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|entry| entry.matches(scheme, &host, port))
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<Self, AllowedHostError> {
        let fail = |reason: &str| AllowedHostError {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        if entry == "insecure:allow-all" {
            return Err(fail(
                "'insecure:allow-all' is not allowed; use '*://*:*' instead",
            ));
        }
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err(fail(
                "does not contain a scheme (e.g., 'http://' or '*://'); to allow everything use '*://*:*'",
            ));
        };
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_owned()),
            _ => return Err(fail("the scheme must be letters only, or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = split_host_port(rest).map_err(|reason| fail(&reason))?;
        let host = HostPattern::parse(host).map_err(|reason| fail(&reason))?;
        if port.is_none() && matches!(host, HostPattern::Network { .. }) {
            return Err(fail(
                "an IP range needs an explicit port, e.g. *://10.0.0.0/8:80",
            ));
        }
        let port = match port {
            None => match scheme.as_deref().and_then(well_known_port) {
                Some(port) => PortPattern::Exact(port),
                None => {
                    return Err(fail(
                        "no port was given and the scheme has no well-known port; add :PORT or :*",
                    ));
                }
            },
            Some(port) => PortPattern::parse(port).map_err(|reason| fail(&reason))?,
        };
        Ok(Self { scheme, host, port })
    }

    fn matches(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && self.host.matches(host)
            && self.port.matches(port)
    }
}

/// Splits `host[:port]`, keeping IPv6 brackets (`[::1]:80`) and CIDR ranges (`ff00::/8:80`) whole.
pub(crate) fn split_host_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(after_bracket) = rest.strip_prefix('[') {
        let close = after_bracket
            .find(']')
            .ok_or("an IPv6 address opened with [ is not closed")?;
        let host = &rest[..close + 2];
        return match &rest[close + 2..] {
            "" => Ok((host, None)),
            tail => tail
                .strip_prefix(':')
                .map(|port| (host, Some(port)))
                .ok_or_else(|| "unexpected text after the IPv6 address".to_owned()),
        };
    }
    match rest.rsplit_once(':') {
        Some((host, port)) if looks_like_port(port) => Ok((host, Some(port))),
        Some(_) if rest.contains('/') => Ok((rest, None)),
        Some((_, port)) => Err(format!("{port:?} is not a port")),
        None => Ok((rest, None)),
    }
}

fn looks_like_port(text: &str) -> bool {
    text == "*" || (!text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

impl HostPattern {
    fn parse(host: &str) -> Result<Self, String> {
        if host.is_empty() {
            return Err("the host is empty; use * for any host".into());
        }
        if host == "*" {
            return Ok(Self::Any);
        }
        if host == "self" || host == "self.alt" {
            return Ok(Self::ThisApp);
        }
        if let Some((base, prefix)) = host.split_once('/') {
            let base: IpAddr = base
                .parse()
                .map_err(|_| "hosts must not contain paths".to_owned())?;
            let max = if base.is_ipv4() { 32 } else { 128 };
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("/{prefix} is not a valid prefix length"))?;
            return Ok(Self::Network { base, prefix });
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.is_empty() || domain.contains('*') {
                return Err("a wildcard host must look like *.example.com".into());
            }
            return Ok(Self::Subdomain(format!(".{}", domain.to_ascii_lowercase())));
        }
        if host.contains('*') {
            return Err("* may only be the whole host or the first label (*.example.com)".into());
        }
        Ok(Self::Exact(host.to_ascii_lowercase()))
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Subdomain(suffix) => host.ends_with(suffix.as_str()),
            Self::Exact(exact) => host == exact,
            Self::Network { base, prefix } => host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| in_network(ip, *base, *prefix)),
            Self::ThisApp => false,
        }
    }
}

fn in_network(ip: IpAddr, base: IpAddr, prefix: u8) -> bool {
    match (ip, base) {
        (IpAddr::V4(ip), IpAddr::V4(base)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

impl PortPattern {
    fn parse(port: &str) -> Result<Self, String> {
        if port == "*" {
            return Ok(Self::Any);
        }
        if let Some((start, end)) = port.split_once("..") {
            let start = start
                .parse()
                .map_err(|_| format!("{start:?} is not a port"))?;
            let end = end.parse().map_err(|_| format!("{end:?} is not a port"))?;
            return Ok(Self::Range(start, end));
        }
        port.parse()
            .map(Self::Exact)
            .map_err(|_| format!("{port:?} is not a port"))
    }

    fn matches(self, port: u16) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => port == exact,
            Self::Range(start, end) => (start..end).contains(&port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap()
    }

    #[test]
    fn exact_hosts_use_the_scheme_default_port() {
        let allowed = hosts(&["http://example.com", "https://api.example.com:8443"]);
        assert!(allowed.allows("http", "example.com", None));
        assert!(allowed.allows("http", "EXAMPLE.com", Some(80)));
        assert!(!allowed.allows("http", "example.com", Some(8080)));
        assert!(!allowed.allows("https", "example.com", None));
        assert!(allowed.allows("https", "api.example.com", Some(8443)));
        assert!(!allowed.allows("https", "api.example.com", None));
    }

    #[test]
    fn wildcards_for_scheme_host_subdomain_and_port() {
        let allowed = hosts(&["*://*.example.com:*", "http://localhost:*", "https://*:443"]);
        assert!(allowed.allows("redis", "a.example.com", Some(1)));
        assert!(allowed.allows("http", "a.b.example.com", None));
        assert!(!allowed.allows("http", "example.com", None));
        assert!(!allowed.allows("http", "myexample.com", None));
        assert!(allowed.allows("http", "localhost", Some(3001)));
        assert!(allowed.allows("https", "anything.org", None));
        assert!(!allowed.allows("http", "anything.org", None));
    }

    #[test]
    fn port_ranges_exclude_the_end() {
        let allowed = hosts(&["http://localhost:8000..8010"]);
        assert!(allowed.allows("http", "localhost", Some(8000)));
        assert!(allowed.allows("http", "localhost", Some(8009)));
        assert!(!allowed.allows("http", "localhost", Some(8010)));
    }

    #[test]
    fn ip_ranges_and_ipv6() {
        let allowed = hosts(&["*://10.0.0.0/8:80", "http://[::1]:8001", "*://ff00::/8:*"]);
        assert!(allowed.allows("http", "10.1.2.3", None));
        assert!(!allowed.allows("http", "11.0.0.1", None));
        assert!(allowed.allows("http", "[::1]", Some(8001)));
        assert!(allowed.allows("http", "[ff01::1]", Some(9)));
    }

    #[test]
    fn service_chaining_is_ordinary_matching() {
        let allowed = hosts(&["http://orders.spin.internal"]);
        assert!(allowed.allows("http", "orders.spin.internal", None));
        assert!(!allowed.allows("http", "payments.spin.internal", None));
        assert!(hosts(&["http://*.spin.internal"]).allows("http", "payments.spin.internal", None));
    }

    #[test]
    fn self_names_no_absolute_host() {
        let allowed = hosts(&["http://self"]);
        assert!(!allowed.allows("http", "self", None));
        assert!(!allowed.allows("http", "localhost", None));
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in [
            "example.com",
            "insecure:allow-all",
            "tcp://example.com",
            "http://example.com/path",
            "http://ex*ample.com",
            "http://example.com:abc",
            "*://10.0.0.0/8",
            "http://10.0.0.0/8",
            "http://ff00::/8",
            "*://example.com",
            "http://",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad}");
        }
    }
}

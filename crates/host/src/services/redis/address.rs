//! Redis addresses (`redis://[user[:password]@]host[:port][/db]`): the parts the allow-list and
//! the broker choice need. Only `redis://`: `rediss://`, Redis over TLS, is not supported by
//! this build.

use crate::services::allowed_hosts::{split_host_port, well_known_port};

/// A parsed Redis address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisAddress {
    /// The host, lowercase (IPv6 in brackets).
    pub host: String,
    /// The port (6379 when not given).
    pub port: u16,
    /// The address as written: how to connect (credentials, database). Which server it names
    /// is `host:port` alone (see [`RedisAddress::same_server`]).
    pub url: String,
}

impl RedisAddress {
    /// Parses an address; `None` when it is not a `redis://` URL with a host.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("redis://")?;
        let authority = rest.split(['/', '?']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
        let (host, port) = split_host_port(host_port).ok()?;
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(port) => port.parse().ok()?,
            None => well_known_port("redis")?,
        };
        Some(Self {
            host: host.to_ascii_lowercase(),
            port,
            url: url.to_owned(),
        })
    }

    /// Whether both name the same server (`host:port`).
    pub fn same_server(&self, other: &Self) -> bool {
        self.host == other.host && self.port == other.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_spin_accepts() {
        let plain = RedisAddress::parse("redis://127.0.0.1").unwrap();
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 6379));
        let full = RedisAddress::parse("redis://user:p%40ss@Cache.Example:6380/2").unwrap();
        assert_eq!((full.host.as_str(), full.port), ("cache.example", 6380));
        assert!(full.same_server(&RedisAddress::parse("redis://cache.example:6380/0").unwrap()));
        let v6 = RedisAddress::parse("redis://[::1]:7000").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", 7000));
        for bad in [
            "127.0.0.1:6379",
            "http://x",
            "redis://",
            "redis://:6379",
            "redis://h:port",
            "rediss://tls.example",
            "redis://[::1]junk",
        ] {
            assert!(RedisAddress::parse(bad).is_none(), "{bad}");
        }
    }
}

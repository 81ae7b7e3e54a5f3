//! Whom a request counts against: the client's API key (`x-api-key`) when it sends one, else
//! its address. The address is the TCP peer's (`spin-client-addr`, port dropped); a
//! `x-forwarded-for` header is believed only when that peer is one of the `trusted_proxies`,
//! and then the nearest address in it that is not a trusted proxy is the client's. Anyone can
//! write that header, so without the setting it is ignored.

use guest_kit_core::access::client_ip;
use resilience::ClientKey;
use std::net::IpAddr;

/// The proxies whose `x-forwarded-for` the gateway believes (the `trusted_proxies` variable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpAddr>);

impl TrustedProxies {
    /// Parses a comma- or space-separated list of IP addresses (empty: none).
    pub fn parse(text: &str) -> Result<Self, String> {
        text.split([',', ' '])
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|_| format!("trusted_proxies: {item:?} is not an IP address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

/// A client, as the rate limiter counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Client {
    /// By API key (the key itself, never logged or stored: see [`Client::key`]).
    ApiKey(String),
    /// By address.
    Address(IpAddr),
    /// No API key and no usable address: all such requests share one limit.
    Unknown,
}

impl Client {
    /// The client of a request with these `x-api-key`, `spin-client-addr` and
    /// `x-forwarded-for` header values.
    pub fn identify(
        api_key: Option<&str>,
        client_addr: Option<&str>,
        forwarded_for: Option<&str>,
        trusted: &TrustedProxies,
    ) -> Self {
        if let Some(key) = api_key.map(str::trim).filter(|key| !key.is_empty()) {
            return Client::ApiKey(key.to_owned());
        }
        let Some(peer) = client_ip(client_addr) else {
            return Client::Unknown;
        };
        if !trusted.contains(peer) {
            return Client::Address(peer);
        }
        // Right to left: each hop appended the address it saw; the first one that is not a
        // trusted proxy is the client as far as trusted hops can tell.
        let hops = forwarded_for
            .unwrap_or_default()
            .rsplit(',')
            .map(|hop| hop.trim().parse::<IpAddr>());
        for hop in hops {
            match hop {
                Ok(ip) if trusted.contains(ip) => continue,
                Ok(ip) => return Client::Address(ip),
                Err(_) => break,
            }
        }
        Client::Address(peer)
    }

    /// The limiter's key: a hash, so neither the store nor the logs ever hold an API key.
    /// Keys and addresses never share a limit.
    pub fn key(&self) -> ClientKey {
        match self {
            Client::ApiKey(key) => ClientKey::new(&format!("key:{key}")),
            Client::Address(ip) => ClientKey::new(&format!("addr:{ip}")),
            Client::Unknown => ClientKey::new("addr:unknown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_api_key_names_the_client_else_its_address() {
        let none = TrustedProxies::default();
        assert_eq!(
            Client::identify(Some(" k1 "), Some("10.0.0.1:5000"), None, &none),
            Client::ApiKey("k1".into())
        );
        assert_eq!(
            Client::identify(Some(""), Some("10.0.0.1:5000"), None, &none),
            Client::Address(ip("10.0.0.1"))
        );
        assert_eq!(
            Client::identify(None, Some("[::1]:80"), None, &none),
            Client::Address(ip("::1"))
        );
        assert_eq!(Client::identify(None, None, None, &none), Client::Unknown);
        // Two connections from one address are one client.
        assert_eq!(
            Client::identify(None, Some("10.0.0.1:1"), None, &none).key(),
            Client::identify(None, Some("10.0.0.1:2"), None, &none).key()
        );
        assert_ne!(
            Client::ApiKey("10.0.0.1".into()).key(),
            Client::Address(ip("10.0.0.1")).key()
        );
        assert!(!format!("{:?}", Client::ApiKey("s3cret".into()).key()).contains("s3cret"));
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.9, 10.0.0.8").unwrap();
        let spoofed = Some("1.2.3.4");
        assert_eq!(
            Client::identify(None, Some("10.0.0.7:1"), spoofed, &proxies),
            Client::Address(ip("10.0.0.7")),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            Client::identify(
                None,
                Some("10.0.0.9:1"),
                Some("6.6.6.6, 5.5.5.5, 10.0.0.8"),
                &proxies
            ),
            Client::Address(ip("5.5.5.5")),
            "the nearest untrusted hop, not the client-written first one"
        );
        assert_eq!(
            Client::identify(None, Some("10.0.0.9:1"), None, &proxies),
            Client::Address(ip("10.0.0.9"))
        );
        assert_eq!(
            Client::identify(None, Some("10.0.0.9:1"), Some("garbage"), &proxies),
            Client::Address(ip("10.0.0.9"))
        );
        assert_eq!(TrustedProxies::parse(""), Ok(TrustedProxies::default()));
        assert!(TrustedProxies::parse("10.0.0.0/8").is_err());
    }
}

//! Where a login comes from, as lockout counts it: `PAM_RHOST` turned into one source key
//! (IPv4 as is, IPv6 grouped by its /64, a host name lowercased, no rhost = "local").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest source key kept; longer host names are cut (two names that share their
/// first 253 bytes then count as one source, which only makes lockout stricter).
pub const MAX_SOURCE_BYTES: usize = 253;

/// One source of logins, the unit of per-source lockout.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Source(String);

/// The source of logins without a remote host (sudo, su, a console).
pub const LOCAL: &str = "local";

impl Source {
    /// The source of a login whose `PAM_RHOST` is `rhost` (empty when unset).
    ///
    /// An IPv6 address counts by its /64, the block one customer usually gets: one
    /// attacker rotating addresses inside it stays one source. An IPv4-mapped IPv6
    /// address counts as the IPv4 address. Brackets and a zone (`%eth0`) are dropped.
    pub fn from_rhost(rhost: &str) -> Source {
        let trimmed = rhost.trim();
        if trimmed.is_empty() {
            return Source(LOCAL.into());
        }
        match parse_address(trimmed) {
            Some(IpAddr::V4(v4)) => Source(v4.to_string()),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(v4.to_string()),
                None => Source(format!("{}/64", network_64(v6))),
            },
            None => Source(host_name(trimmed)),
        }
    }

    /// The key as stored and shown.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_address(text: &str) -> Option<IpAddr> {
    let unbracketed = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    // A zone names the local interface, not the peer: fe80::1%eth0 is fe80::1.
    let without_zone = match unbracketed.split_once('%') {
        Some((address, _zone)) if address.contains(':') => address,
        _ => unbracketed,
    };
    if let Ok(v6) = without_zone.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    // Only the dotted quad: "10.1" or "0x7f.1" are host names to us, as to sshd.
    without_zone
        .parse::<Ipv4Addr>()
        .ok()
        .filter(|_| without_zone.split('.').count() == 4)
        .map(IpAddr::V4)
}

fn network_64(address: Ipv6Addr) -> Ipv6Addr {
    let bits = u128::from(address) & !((1u128 << 64) - 1);
    Ipv6Addr::from(bits)
}

/// A host name as given, lowercased, without a trailing dot, cut to `MAX_SOURCE_BYTES`.
fn host_name(text: &str) -> String {
    let lower = text.trim_end_matches('.').to_lowercase();
    let mut end = lower.len().min(MAX_SOURCE_BYTES);
    while !lower.is_char_boundary(end) {
        end -= 1;
    }
    if end == 0 {
        // "." or the like: still a remote host, never "local".
        return "(unnamed host)".into();
    }
    lower[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rhost: &str) -> String {
        Source::from_rhost(rhost).0
    }

    #[test]
    fn no_rhost_is_local() {
        assert_eq!(key(""), "local");
        assert_eq!(key("  "), "local");
    }

    #[test]
    fn ipv4_is_kept_as_is() {
        assert_eq!(key("127.0.0.2"), "127.0.0.2");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_ne!(key("127.0.0.2"), key("127.0.0.3"));
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(key("::1"), "::/64");
        assert_eq!(key("::2"), key("::1"));
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:DB8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_eq!(key("[2001:db8:1:2::9]"), "2001:db8:1:2::/64");
        assert_eq!(key("fe80::1%eth0"), "fe80::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[test]
    fn host_names_are_lowercased_and_bounded() {
        assert_eq!(key("Host.Example.ORG."), "host.example.org");
        assert_eq!(key("10.1"), "10.1");
        let long = "a".repeat(400);
        assert_eq!(key(&long).len(), MAX_SOURCE_BYTES);
        let wide = "é".repeat(200);
        assert!(key(&wide).len() <= MAX_SOURCE_BYTES);
        assert_ne!(key("."), "local");
    }

    #[test]
    fn a_host_name_cannot_pose_as_local_or_an_address_block() {
        // "local" typed as an rhost is a host name: it shares the key, which only makes a
        // caller that sets PAM_RHOST=local count with local logins (stricter, never looser).
        assert_eq!(key("LOCAL"), "local");
        assert_eq!(key("::/64"), "::/64");
    }
}

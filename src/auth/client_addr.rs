//! The client address a request is counted under (every per-address limit:
//! failed logins, registrations, expensive reads). The peer's address,
//! unless the peer is one of the configured `TRUSTED_PROXIES`: then the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
//! Entries left of it were written by whoever sent the request and are not
//! believed; with no trusted proxies configured the header is never read.
//!
//! - **One spelling per address.** An IPv4-mapped IPv6 address
//!   (`::ffff:192.0.2.1`, what a dual-stack listener reports for an IPv4
//!   peer) is the IPv4 address it maps, for the proxy match and for the
//!   limits, and so is a mapped network in `TRUSTED_PROXIES`.
//! - **One key per IPv6 /64.** A single IPv6 host is routinely handed a
//!   whole /64 and may pick any address in it, so a limit keyed by the full
//!   /128 is escaped by rotating the low bits: [`limit_key`] counts an IPv6
//!   client by its /64, an IPv4 client by its address.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address of the client that sent `req`; `None` when the peer is unknown.
pub fn client_address(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip().to_canonical();
    let forwarded = req
        .headers()
        .get_all(X_FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok());
    Some(resolve(peer, forwarded, trusted))
}

/// [`client_address`] on its parts. The `X-Forwarded-For` values are read in
/// order (several header lines are one list); an entry that is not an
/// address ends the walk at the last hop that was trusted.
fn resolve<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| canonical_net(net).contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
    let mut nearest = peer;
    for entry in entries.iter().rev() {
        let Some(hop) = parse_hop(entry.trim()) else {
            return nearest;
        };
        if !is_trusted(&hop) {
            return hop;
        }
        nearest = hop;
    }
    nearest
}

/// `192.0.2.1`, `2001:db8::1`, or either with a port (`192.0.2.1:443`,
/// `[2001:db8::1]:443`), canonical (a mapped IPv4 address as IPv4).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

/// A network of IPv4-mapped IPv6 addresses (`::ffff:10.0.0.0/104`) as the
/// IPv4 network it maps (`10.0.0.0/8`), so that it matches canonical
/// addresses; any other network as it is.
fn canonical_net(net: &IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.network().to_ipv4_mapped()
        && v6.prefix_len() >= 96
        && let Ok(mapped) = ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96)
    {
        return IpNet::V4(mapped);
    }
    *net
}

/// What per-address limits count `address` under: an IPv4 address itself,
/// an IPv6 address by its /64 (the rest zeroed), a mapped IPv4 address as
/// IPv4. Two addresses of one /64 get one key; the key is text, so it can be
/// hashed like any other limit key.
pub fn limit_key(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("a network")).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let peer = ip("203.0.113.9");
        assert_eq!(resolve(peer, ["198.51.100.1"].into_iter(), &[]), peer);
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(resolve(peer, ["198.51.100.1"].into_iter(), &trusted), peer);
    }

    #[test]
    fn a_trusted_peer_names_the_right_most_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8", "192.0.2.7/32"]);
        let peer = ip("10.1.2.3");
        let header = ["1.1.1.1, 198.51.100.4", "192.0.2.7:8443"];
        assert_eq!(
            resolve(peer, header.into_iter(), &trusted),
            ip("198.51.100.4"),
            "the left-most entry is whatever the client wrote"
        );
        assert_eq!(
            resolve(peer, ["[2001:db8::5]:443"].into_iter(), &trusted),
            ip("2001:db8::5")
        );
        assert_eq!(resolve(peer, std::iter::empty(), &trusted), peer);
        assert_eq!(
            resolve(peer, ["garbage, 10.0.0.2"].into_iter(), &trusted),
            ip("10.0.0.2"),
            "a broken entry ends the walk at the last trusted hop"
        );
    }

    #[test]
    fn mapped_addresses_match_ipv4_proxies_and_count_as_ipv4() {
        let trusted = nets(&["10.0.0.0/8"]);
        let header = ["::ffff:198.51.100.4"];
        assert_eq!(
            resolve(ip("10.1.2.3"), header.into_iter(), &trusted),
            ip("198.51.100.4"),
            "a mapped hop is named as the IPv4 address it maps"
        );
        assert_eq!(
            resolve(
                ip("10.1.2.3"),
                ["::ffff:10.0.0.9, ::ffff:10.0.0.8"].into_iter(),
                &trusted
            ),
            ip("10.0.0.9"),
            "mapped hops of a trusted IPv4 network are trusted"
        );
        let mapped_trusted = nets(&["::ffff:10.0.0.0/104"]);
        assert_eq!(
            resolve(ip("10.1.2.3"), ["203.0.113.5"].into_iter(), &mapped_trusted),
            ip("203.0.113.5"),
            "a mapped network in TRUSTED_PROXIES matches IPv4 peers"
        );
        assert_eq!(
            limit_key(ip("::ffff:192.0.2.1")),
            limit_key(ip("192.0.2.1"))
        );
        assert_eq!(limit_key(ip("192.0.2.1")), "192.0.2.1");
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a = limit_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"));
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(a, limit_key(ip("2001:db8:1:2::1")));
        assert_ne!(
            a,
            limit_key(ip("2001:db8:1:3::1")),
            "another /64 is another client"
        );
    }
}

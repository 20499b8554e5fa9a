//! The client address a request is counted under (the login throttle's
//! per-address limit). The peer's address, unless the peer is one of the
//! configured `TRUSTED_PROXIES`: then the right-most `X-Forwarded-For` entry
//! that is not itself a trusted proxy. Entries left of it were written by
//! whoever sent the request and are not believed; with no trusted proxies
//! configured the header is never read.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address of the client that sent `req`; `None` when the peer is unknown.
pub fn client_address(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
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
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
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
/// `[2001:db8::1]:443`).
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
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
}

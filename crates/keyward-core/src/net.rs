//! IP allow-lists: which addresses a key may be used from, and whether one
//! list lies inside another (a delegated key may only narrow its maker's).
//!
//! Lists are stored as normalised CIDR strings (`203.0.113.0/24`); an entry
//! that does not parse allows nothing.

use std::net::IpAddr;

use ipnet::IpNet;

fn nets(list: &[String]) -> impl Iterator<Item = IpNet> + '_ {
    list.iter().filter_map(|n| n.parse::<IpNet>().ok())
}

/// Whether a caller at `ip` may use a key with allow-list `allowed` (`None`:
/// any address). A list with no known caller address allows nothing.
pub fn ip_allowed(allowed: Option<&[String]>, ip: Option<IpAddr>) -> bool {
    let Some(list) = allowed else { return true };
    let Some(ip) = ip else { return false };
    nets(list).any(|net| net.contains(&ip))
}

/// The block a throttle counts `ip` in: an IPv4 address itself, an IPv6
/// address's /64 (one host or customer usually holds a whole /64, so
/// counting single IPv6 addresses would let it pick a fresh one per
/// request). An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn throttle_block(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

/// Whether every block of `inner` lies inside some block of `outer`.
pub fn within(inner: &[String], outer: &[String]) -> bool {
    inner.iter().all(|entry| {
        entry
            .parse::<IpNet>()
            .is_ok_and(|net| nets(outer).any(|o| o.contains(&net)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn allow_lists_hold_addresses_of_their_blocks_only() {
        let l = list(&["203.0.113.0/24", "::1/128"]);
        assert!(ip_allowed(Some(&l), Some("203.0.113.9".parse().unwrap())));
        assert!(ip_allowed(Some(&l), Some("::1".parse().unwrap())));
        assert!(!ip_allowed(Some(&l), Some("127.0.0.1".parse().unwrap())));
        assert!(!ip_allowed(Some(&l), None));
        assert!(ip_allowed(None, None));
        assert!(!ip_allowed(Some(&[]), Some("127.0.0.1".parse().unwrap())));
    }

    #[test]
    fn throttles_count_ipv6_addresses_per_64_and_ipv4_per_address() {
        let block = |s: &str| throttle_block(s.parse().unwrap()).to_string();
        assert_eq!(block("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(block("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::");
        assert_ne!(block("2001:db8:1:3::1"), block("2001:db8:1:2::1"));
        assert_eq!(block("203.0.113.9"), "203.0.113.9");
        assert_ne!(block("203.0.113.9"), block("203.0.113.10"));
        assert_eq!(block("::ffff:203.0.113.9"), "203.0.113.9");
    }

    #[test]
    fn a_list_is_within_another_when_each_block_is_inside_one_of_its() {
        let outer = list(&["10.0.0.0/8", "203.0.113.0/24"]);
        assert!(within(&list(&["10.1.0.0/16", "203.0.113.7/32"]), &outer));
        assert!(within(&[], &outer));
        assert!(!within(&list(&["0.0.0.0/0"]), &outer));
        assert!(!within(&list(&["203.0.112.0/23"]), &outer));
        assert!(!within(&list(&["not an address"]), &outer));
    }
}

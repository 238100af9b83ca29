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
    fn a_list_is_within_another_when_each_block_is_inside_one_of_its() {
        let outer = list(&["10.0.0.0/8", "203.0.113.0/24"]);
        assert!(within(&list(&["10.1.0.0/16", "203.0.113.7/32"]), &outer));
        assert!(within(&[], &outer));
        assert!(!within(&list(&["0.0.0.0/0"]), &outer));
        assert!(!within(&list(&["203.0.112.0/23"]), &outer));
        assert!(!within(&list(&["not an address"]), &outer));
    }
}

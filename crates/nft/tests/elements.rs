//! `Elements::covers` (the simulator's set lookup): a binary search over
//! disjoint sorted address ranges gives the same answer as looking at every
//! element, for any elements.

use proptest::prelude::*;
use rampart_nft::model::{key_matches, Elements, Key};
use rampart_types::IpRange;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn v4(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(n))
}

fn range(a: IpAddr, b: IpAddr) -> Key {
    Key::Addr(IpRange::new(a, b))
}

fn same(keys: Vec<Key>, probes: &[Key]) {
    let e = Elements::from(keys.clone());
    for k in probes {
        let scan = keys.iter().any(|x| key_matches(x, k));
        assert_eq!(e.covers(k), scan, "{k:?} in {keys:?}");
    }
}

fn probes() -> Vec<Key> {
    let mut p: Vec<Key> = (0..64u32).map(|n| range(v4(n), v4(n))).collect();
    p.push(range(v4(u32::MAX), v4(u32::MAX)));
    p.push(range(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ));
    p.push(Key::Mark(3));
    p
}

proptest! {
    /// Disjoint sorted ranges (the binary search) and arbitrary ones (the
    /// scan: unsorted, overlapping) alike.
    #[test]
    fn covers_is_any_element_matching(
        bounds in proptest::collection::vec((0u32..64, 0u32..4), 0..12),
        sort in any::<bool>(),
    ) {
        let mut keys: Vec<Key> = bounds
            .iter()
            .map(|&(s, len)| range(v4(s), v4(s + len)))
            .collect();
        if sort {
            keys.sort();
            // Disjoint: drop every range touching the one kept before it.
            let mut last: Option<IpAddr> = None;
            keys.retain(|k| match k {
                Key::Addr(r) if last.map_or(true, |l| l < r.start) => {
                    last = Some(r.end);
                    true
                }
                _ => false,
            });
        }
        same(keys, &probes());
    }
}

#[test]
fn mixed_families_and_non_address_keys() {
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    same(
        vec![range(v4(1), v4(3)), range(v4(10), v4(10)), range(v6, v6)],
        &probes(),
    );
    same(vec![Key::Mark(3), range(v4(1), v4(3))], &probes());
    same(vec![], &probes());
}

//! Merging a long chain of one shape grows no faster than n log n (issue
//! 13): one `bars`-style policy, source /24 + tcp port per rule, merged at
//! 25,000 and at 50,000 rules in one run. A quadratic path makes the second
//! four times the first; n log n makes it about 2.1 times. The figure the
//! user sees (the release binary at 200,000 rules) is in bench/.

use rampart_nft::merge::merge;
use rampart_nft::model::{AddrTarget, Dir, Match, Rule, Verdict};
use rampart_types::{Action, Family, IpRange, PortRange};
use std::time::{Duration, Instant};

/// Rule `i`: its own /24 (or, every 7th rule, a /20 that covers the rules
/// around it, so overlaps and splits happen) and a port.
fn policy(n: u32) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let net = if i % 7 == 3 {
                format!("10.{}.{}.0/20", (i >> 8) & 255, i & 0xf0)
            } else {
                format!("10.{}.{}.0/24", (i >> 8) & 255, i & 255)
            };
            Rule::new(format!("host.fw:{}", i + 1))
                .m(Match::Addr {
                    family: Family::V4,
                    dir: Dir::Src,
                    neg: false,
                    target: AddrTarget::Literal(vec![IpRange::from_net(&net.parse().unwrap())]),
                })
                .m(Match::Port {
                    proto: 6,
                    dir: Dir::Dst,
                    ports: vec![PortRange::single(1000 + (i % 8) as u16)],
                })
                .v(Verdict::Accept)
                .decides(Action::Accept)
        })
        .collect()
}

fn time(n: u32) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut len = 0;
    for _ in 0..3 {
        let rules = policy(n);
        let t = Instant::now();
        let out = merge(rules);
        best = best.min(t.elapsed());
        len = out.len();
    }
    (best, len)
}

#[test]
fn merging_50k_rules_costs_about_twice_25k() {
    let (t25, n25) = time(25_000);
    let (t50, n50) = time(50_000);
    let ratio = t50.as_secs_f64() / t25.as_secs_f64();
    eprintln!(
        "merge 25k: {t25:?} ({n25} rules out), 50k: {t50:?} ({n50} rules out), ratio {ratio:.2}"
    );
    // Every rule was merged into something: far fewer rules than input.
    assert!(n50 < 50_000 / 10, "{n50} rules out of 50,000");
    // n log n: 2.1; quadratic: 4. The margin absorbs a busy machine.
    assert!(
        ratio < 3.4,
        "merge time grew {ratio:.2}x from 25k to 50k rules"
    );
}

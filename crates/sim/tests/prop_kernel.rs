//! Property: on random small sites, the simulator and the kernel give every
//! random packet the same verdict. Bounded so CI stays fast; the seeds are
//! fixed (reproducible) and `RAMPART_PROP_SEEDS=1,2,3` picks others.

#[path = "../../nft/tests/common/mod.rs"]
mod common;
#[path = "support/lab.rs"]
mod lab;

use lab::Lab;
use rampart_nft::compile;
use rampart_nft::testkit::{list, rule, RuleExt, SiteBuilder};
use rampart_resolve::ir::{AddrMatch, GuestKind, SetScope, Site};
use rampart_sim::{simulate_plan, Packet};
use rampart_types::{Action, Direction, Family, Proto};

/// xorshift64*: small, deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

const PORTS: [u16; 4] = [22, 80, 443, 8080];
const ACTIONS: [Action; 3] = [Action::Accept, Action::Drop, Action::Reject];

fn random_rule(
    r: &mut Rng,
    b: &SiteBuilder,
    file: rampart_types::FileId,
    line: u32,
    host: bool,
    guests: u32,
    set: rampart_resolve::ir::SetId,
) -> rampart_resolve::ir::Rule {
    let dir = if r.chance(60) {
        Direction::In
    } else {
        Direction::Out
    };
    let action = *r.pick(&ACTIONS);
    let mut x = rule(b.at(file, line), dir, action);
    x = if r.chance(70) {
        x.tcp(*r.pick(&PORTS))
    } else {
        x.udp(*r.pick(&PORTS))
    };
    let addr_pool = ["192.0.2.50", "192.0.2.0/25", "2001:db8:1::50", "192.0.2.10"];
    match r.below(4) {
        0 => {
            let a = *r.pick(&addr_pool);
            let m = list(&[a]);
            x = if dir == Direction::In {
                x.source(m)
            } else {
                x.dest(m)
            };
        }
        1 => {
            let m = AddrMatch::Set(set);
            x = if dir == Direction::In {
                x.source(m)
            } else {
                x.dest(m)
            };
        }
        2 if guests > 0 => {
            let g = 100 + r.below(guests as u64);
            let a = format!("192.0.2.{g}");
            let m = list(&[a.as_str()]);
            x = if dir == Direction::In {
                x.source(m)
            } else {
                x.dest(m)
            };
        }
        _ => {
            if r.chance(30) {
                x = x.family(if r.chance(50) { Family::V4 } else { Family::V6 });
            }
        }
    }
    let _ = host;
    x
}

fn random_site(seed: u64) -> Site {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", &"#\n".repeat(30));
    b.node(
        "hv1",
        &[("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"])],
        &[],
    );
    let set = b.set(
        "friends",
        SetScope::Cluster,
        "dc-friends",
        &["192.0.2.50", "192.0.2.101", "2001:db8:1::50", "!192.0.2.51"],
        b.at(c, 2),
    );
    let guests = 1 + r.below(3) as u32;
    for i in 0..guests {
        let id = 100 + i;
        let f = b.file(&format!("firewall/{id}.fw"), &"#\n".repeat(30));
        let kind = if r.chance(50) {
            GuestKind::Vm
        } else {
            GuestKind::Ct
        };
        let a4 = format!("192.0.2.{id}/24");
        let a6 = format!("2001:db8:1::{id}/64");
        let mac = format!("0e:00:00:00:{:02x}:00", id & 255);
        b.guest(
            id,
            kind,
            "hv1",
            &[("vmbr0", mac.as_str(), &[a4.as_str(), a6.as_str()])],
            b.at(f, 1),
        );
        let rules: Vec<_> = (0..r.below(5))
            .map(|l| random_rule(&mut r, &b, f, 3 + l as u32, false, guests, set))
            .collect();
        let g = b.guest_mut(id);
        g.rules = rules;
        // Neighbour discovery on, or IPv6 could not work at all.
        g.options.ndp = true;
        g.options.policy_in = *r.pick(&ACTIONS);
        g.options.policy_out = *r.pick(&ACTIONS);
        if r.chance(20) {
            g.enabled = false;
        }
    }
    let rules: Vec<_> = (0..r.below(6))
        .map(|l| random_rule(&mut r, &b, c, 10 + l as u32, true, guests, set))
        .collect();
    let n = b.node_mut("hv1");
    n.firewall.rules = rules;
    n.firewall.policy_in = *r.pick(&ACTIONS);
    n.firewall.policy_out = *r.pick(&ACTIONS);
    b.build()
}

fn random_packet(r: &mut Rng, guests: u32) -> Packet {
    let mut zones = vec!["outside".to_string(), "host".to_string()];
    for i in 0..guests {
        zones.push(format!("vm{}", 100 + i));
    }
    let from = r.pick(&zones).clone();
    let mut to = r.pick(&zones).clone();
    while to == from || (from == "host" && to == "host") {
        to = r.pick(&zones).clone();
    }
    let port = *r.pick(&PORTS);
    let mut p = if r.chance(70) {
        Packet::tcp(&from, &to, port)
    } else {
        Packet::udp(&from, &to, port)
    };
    if r.chance(35) {
        p.family = Some(Family::V6);
    }
    let v6 = p.family == Some(Family::V6);
    if from == "outside" {
        let s = if v6 {
            *r.pick(&["2001:db8:1::50", "2001:db8:1::77"])
        } else {
            *r.pick(&["192.0.2.50", "192.0.2.51", "192.0.2.77"])
        };
        p.source = Some(s.parse().unwrap());
    }
    if to == "outside" {
        let d = if v6 { "2001:db8:1::60" } else { "192.0.2.60" };
        p.dest = Some(d.parse().unwrap());
    }
    p
}

#[test]
fn simulator_and_kernel_agree_on_random_sites() {
    let seeds: Vec<u64> = match std::env::var("RAMPART_PROP_SEEDS") {
        Ok(s) => s.split(',').map(|x| x.trim().parse().unwrap()).collect(),
        Err(_) => vec![1, 2, 3, 4],
    };
    let mut bad = vec![];
    let mut total = 0;
    for seed in seeds {
        let site = random_site(seed);
        // Ids of the guests: only those guests may appear in packets, so
        // figure out how many there are from the site itself.
        let guests = site.guests.len() as u32;
        let plan = compile(&site, "hv1").unwrap();
        let lab = Lab::build(&site, &plan);
        let mut r = Rng(seed ^ 0xdead_beef);
        for i in 0..10 {
            let mut p = random_packet(&mut r, guests);
            // Guests are VMs or containers at random: fix the zone prefix.
            for z in [&mut p.from, &mut p.to] {
                if let rampart_sim::Zone::Guest { id, kind, .. } = z {
                    *kind = site.guest(*id).unwrap().kind;
                }
            }
            let t = simulate_plan(&site, &plan, &p).unwrap();
            let got = lab.send(&p, t.source, t.dest);
            total += 1;
            if got != t.verdict.to_string() {
                bad.push(format!(
                    "seed {seed} packet {i}: simulator {} kernel {got}\n{t}",
                    t.verdict
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {total} random packets disagree:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let _ = Proto::Tcp;
}

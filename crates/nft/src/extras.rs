//! Rules the nftables plan needs for things outside the Proxmox firewall
//! files, given in a backend-neutral form so this crate does not depend on
//! their producers (the WireGuard plan lives in `rampart-wg`; the CLI turns
//! it into [`Extras`]).
//!
//! For each WireGuard interface of the node:
//! - `host-in`: `udp dport PORT` accepted from the peers' endpoint addresses
//!   (or from any source when some peer roams), after the user's rules and
//!   before `policy_in`, so a stranger meets the policy;
//! - `host-forward` (gateways): `iifname IF oifname IF` accepted before
//!   `policy_forward`, so the gateway forwards between its peers.
//!
//! Masquerade is not emitted: the WireGuard plan has no "this gateway NATs"
//! flag yet.

use crate::caps::Caps;
use crate::compile::{compile_cached, Plan, SiteCache};
use crate::model::*;
use rampart_resolve::ir;
use rampart_types::{Action, Diagnostics, Family, IpRange, PortRange};
use std::net::IpAddr;

/// Inputs besides the IR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub wireguard: Vec<WgPort>,
}

/// One WireGuard interface of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgPort {
    pub iface: rampart_types::names::WgIfaceName,
    /// The UDP listen port; `None` = no port to open (a roaming client).
    pub port: Option<u16>,
    /// The peers' endpoint addresses; `None` = any source (roaming peers).
    pub sources: Option<Vec<IpAddr>>,
    /// The node forwards between the peers of this interface (a gateway).
    pub forward: bool,
    /// The listen-port rules' comment (`site.toml:LINE` of the port when
    /// known); the forwarding rule says `auto:wireguard IFACE forwarding`.
    pub origin: String,
}

/// [`compile_with`](crate::compile_with), plus the rules of `extras` (see the module docs).
pub fn compile_with_extras(
    site: &ir::Site,
    node: &str,
    caps: &Caps,
    extras: &Extras,
) -> Result<Plan, Diagnostics> {
    compile_with_extras_cached(site, node, caps, extras, &SiteCache::new(site))
}

/// [`compile_with_extras`], sharing the site-wide work in `cache` (built
/// for `site`, see [`SiteCache::with_memo`]).
pub fn compile_with_extras_cached(
    site: &ir::Site,
    node: &str,
    caps: &Caps,
    extras: &Extras,
    cache: &SiteCache,
) -> Result<Plan, Diagnostics> {
    let mut plan = compile_cached(site, node, caps, cache)?;
    if extras.wireguard.is_empty() {
        return Ok(plan);
    }
    let Some(table) = plan
        .ruleset
        .tables
        .iter_mut()
        .find(|t| t.family == TableFamily::Inet)
    else {
        // The cluster firewall is off: nothing filters, nothing to open.
        return Ok(plan);
    };
    let mut changed = false;
    for c in table.chains.iter_mut() {
        let (rules, policy_prefix) = match c.name.as_str() {
            "host-in" => (listen_rules(&extras.wireguard), "policy_in"),
            "host-forward" => (forward_rules(&extras.wireguard), "policy_forward"),
            _ => continue,
        };
        if rules.is_empty() || firewall_off(c) {
            continue;
        }
        let at = policy_start(c, policy_prefix);
        c.rules.splice(at..at, rules);
        changed = true;
    }
    if changed {
        let header = format!(
            "rampart plan for node {}: generated, do not edit.\nWith the WireGuard interfaces' listen ports and forwarding.",
            plan.node
        );
        plan.script = crate::print::script(&plan.ruleset, &header);
    }
    Ok(plan)
}

fn firewall_off(c: &Chain) -> bool {
    c.rules
        .iter()
        .any(|r| r.comment == "auto:host firewall off")
}

/// Index of the first rule of the chain's policy (its neighbour-discovery
/// exception, its log rule or its verdict), or the end.
fn policy_start(c: &Chain, what: &str) -> usize {
    let verdict = format!("auto:{what} ");
    let Some(last) = c
        .rules
        .iter()
        .rposition(|r| r.comment.starts_with(&verdict))
    else {
        return c.rules.len();
    };
    let mut at = last;
    while at > 0 {
        let prev = &c.rules[at - 1].comment;
        if prev.starts_with(&verdict)
            || prev == "auto:neighbour discovery under a DROP/REJECT policy"
        {
            at -= 1;
        } else {
            break;
        }
    }
    at
}

fn listen_rules(wg: &[WgPort]) -> Vec<Rule> {
    let mut out = Vec::new();
    for w in wg {
        let Some(port) = w.port else { continue };
        let udp = Match::Port {
            proto: 17,
            dir: Dir::Dst,
            ports: vec![PortRange::single(port)],
        };
        match &w.sources {
            None => out.push(
                Rule::new(w.origin.clone())
                    .m(udp)
                    .v(Verdict::Return)
                    .decides(Action::Accept),
            ),
            Some(srcs) => {
                for f in Family::both() {
                    let mut r: Vec<IpRange> = srcs
                        .iter()
                        .filter(|a| Family::of(a) == f)
                        .map(|a| IpRange::host(*a))
                        .collect();
                    if r.is_empty() {
                        continue;
                    }
                    r.sort_by_key(|a| a.start);
                    r.dedup();
                    out.push(
                        Rule::new(w.origin.clone())
                            .m(Match::Addr {
                                family: f,
                                dir: Dir::Src,
                                neg: false,
                                target: AddrTarget::Literal(r),
                            })
                            .m(udp.clone())
                            .v(Verdict::Return)
                            .decides(Action::Accept),
                    );
                }
            }
        }
    }
    out
}

fn forward_rules(wg: &[WgPort]) -> Vec<Rule> {
    wg.iter()
        .filter(|w| w.forward)
        .map(|w| {
            Rule::new(format!("auto:wireguard {} forwarding", w.iface))
                .m(Match::Ifname {
                    dir: Dir::Src,
                    name: w.iface.to_string(),
                })
                .m(Match::Ifname {
                    dir: Dir::Dst,
                    name: w.iface.to_string(),
                })
                .v(Verdict::Return)
                .decides(Action::Accept)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_types::SiteFiles;

    fn site(host_fw: &str) -> ir::Site {
        let files = SiteFiles::new()
            .with("site.toml", "[[node]]\nname = \"hv1\"\n")
            .with(
                "firewall/cluster.fw",
                "[OPTIONS]\nenable: 1\npolicy_in: REJECT\n",
            )
            .with("nodes/hv1/host.fw", host_fw);
        let (site, d) = rampart_resolve::load(&files);
        assert!(!d.has_errors(), "{}", d.render(&site.sources));
        site
    }

    fn wg(forward: bool) -> Extras {
        Extras {
            wireguard: vec![WgPort {
                iface: "wg0".parse().unwrap(),
                port: Some(51820),
                sources: Some(vec!["192.0.2.1".parse().unwrap()]),
                forward,
                origin: "site.toml:9".into(),
            }],
        }
    }

    fn comments(plan: &Plan, chain: &str) -> Vec<String> {
        plan.ruleset
            .table(TableFamily::Inet)
            .unwrap()
            .chain(chain)
            .unwrap()
            .rules
            .iter()
            .map(|r| r.comment.clone())
            .collect()
    }

    #[test]
    fn listen_rule_goes_after_host_rules_and_before_the_logged_policy() {
        let site = site(
            "[OPTIONS]\nenable: 1\nlog_level_in: info\n\n[RULES]\nIN DROP -p udp -dport 51820 -source 192.0.2.1\n",
        );
        let plan = compile_with_extras(&site, "hv1", &Caps::default(), &wg(false)).unwrap();
        let c = comments(&plan, "host-in");
        let at = c.iter().position(|x| x == "site.toml:9").unwrap();
        let user = c
            .iter()
            .position(|x| x.contains("host.fw:"))
            .unwrap_or_else(|| panic!("{c:?}"));
        let nd = c
            .iter()
            .position(|x| x == "auto:neighbour discovery under a DROP/REJECT policy")
            .unwrap();
        assert!(user < at && at < nd, "{c:?}");
        // The policy's log rule and verdict follow, in that order.
        assert_eq!(
            &c[nd + 1..],
            ["auto:policy_in REJECT", "auto:policy_in REJECT"]
        );
        assert!(plan
            .script
            .contains("ip saddr 192.0.2.1 udp dport 51820 return comment \"site.toml:9\""));
        // Not a forwarder: host-forward is untouched.
        assert!(!comments(&plan, "host-forward")
            .iter()
            .any(|x| x.contains("wireguard")));
        let fwd = compile_with_extras(&site, "hv1", &Caps::default(), &wg(true)).unwrap();
        assert_eq!(
            comments(&fwd, "host-forward")[0],
            "auto:wireguard wg0 forwarding"
        );
    }

    #[test]
    fn host_firewall_off_adds_nothing() {
        let site = site("[OPTIONS]\nenable: 0\n");
        let plain = crate::compile(&site, "hv1").unwrap();
        let plan = compile_with_extras(&site, "hv1", &Caps::default(), &wg(true)).unwrap();
        assert_eq!(plan.ruleset, plain.ruleset);
    }
}

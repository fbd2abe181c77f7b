//! rampart's two hardening profiles, from `site.toml` (see `docs/profiles.md`):
//!
//! - `[[lockdown]]` (source document 000): a node's management services
//!   accept new connections only through the management VPN (its interface
//!   *and* an overlay source address) or from named addresses; everything
//!   else to the host is refused.
//! - `[[egress]]` (document 004): a guest subnet is policy-routed into a
//!   WireGuard tunnel to a gateway that masquerades it to the internet; the
//!   hypervisor drops everything from the tunnel and from those guests.
//!
//! Pure: [`parse`] reads the tables with spans, [`check`] relates them to the
//! site and its WireGuard plan (including the lock-out check E0503),
//! [`for_node`] gives one node's firewall additions (for `rampart-nft` and
//! `rampart-ipt`), routes, policy rules and sysctls, and [`check_compiled`]
//! proves with the simulator that the VPN still reaches a locked-down node.

mod parse;

pub use parse::{parse, Egress, Lockdown, Profiles, ServiceSpec};

use ipnet::IpNet;
use rampart_apply::{PolicyRule, Route};
use rampart_resolve::ir::{self, Platform};
use rampart_sim::{simulate_plan, Packet, State, Zone};
use rampart_types::additions::{
    FirewallAdditions, ForwardAccept, HostDrop, Lockdown as LockdownRules, Masquerade, Path,
    Service,
};
use rampart_types::names::DevName;
use rampart_types::{
    codes, Action, Diagnostic, Diagnostics, Family, FileId, IpRange, PortRange, Proto, SiteFiles,
};
use rampart_wg::plan::Role;
use rampart_wg::{Plan as WgPlan, WgSite};
use std::net::IpAddr;

/// What the profiles need to know about the site.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub site: &'a ir::Site,
    pub wg_site: Option<&'a WgSite>,
    pub wg: Option<&'a WgPlan>,
}

/// One node's share of the profiles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeProfile {
    pub firewall: FirewallAdditions,
    pub routes: Vec<Route>,
    pub rules: Vec<PolicyRule>,
    /// (key, value, why).
    pub sysctls: Vec<(String, String, String)>,
}

impl NodeProfile {
    pub fn is_empty(&self) -> bool {
        self.firewall.is_empty()
            && self.routes.is_empty()
            && self.rules.is_empty()
            && self.sysctls.is_empty()
    }
}

/// A site's profiles with the WireGuard view they refer to: one call for
/// the plan builder.
pub struct SiteProfiles {
    pub profiles: Profiles,
    pub wg_site: Option<WgSite>,
    pub wg: Option<WgPlan>,
    /// Parse and site-level diagnostics (spans in the site's `site.toml`).
    pub diags: Diagnostics,
}

/// The id of `site.toml` in the site's source map (where spans point).
pub fn site_toml_id(site: &ir::Site) -> Option<FileId> {
    (0u32..)
        .map(FileId)
        .take_while(|id| site.sources.get(*id).is_some())
        .find(|id| site.sources.path(*id) == "site.toml")
}

/// Parse the profiles of `files`' `site.toml` and check them against the
/// resolved `site` and its WireGuard plan.
pub fn load(files: &SiteFiles, site: &ir::Site) -> SiteProfiles {
    let Some(bytes) = files.get("site.toml") else {
        return SiteProfiles {
            profiles: Profiles::default(),
            wg_site: None,
            wg: None,
            diags: Diagnostics::new(),
        };
    };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let id = site_toml_id(site).unwrap_or_default();
    let (profiles, mut diags) = parse(id, &text);
    let (wg_site, _) = rampart_wg::parse_site_toml(id, &text);
    let wg = wg_site.as_ref().map(|s| rampart_wg::compile(s).0);
    if !profiles.is_empty() {
        let cx = Context {
            site,
            wg_site: wg_site.as_ref(),
            wg: wg.as_ref(),
        };
        diags.extend(check(&profiles, &cx));
    }
    SiteProfiles {
        profiles,
        wg_site,
        wg,
        diags,
    }
}

impl SiteProfiles {
    pub fn context<'a>(&'a self, site: &'a ir::Site) -> Context<'a> {
        Context {
            site,
            wg_site: self.wg_site.as_ref(),
            wg: self.wg.as_ref(),
        }
    }
    pub fn for_node(&self, site: &ir::Site, node: &str) -> NodeProfile {
        for_node(&self.profiles, &self.context(site), node)
    }
    pub fn check_compiled(
        &self,
        site: &ir::Site,
        node: &str,
        plan: &rampart_nft::Plan,
    ) -> Diagnostics {
        check_compiled(&self.profiles, &self.context(site), node, plan)
    }
}

// ---------------------------------------------------------------- services

/// The management services of a platform (issue 4): XCP-ng 22, 443, 6653,
/// 6640, cluster 5404-5405/udp, 21064; Proxmox 22, 8006, 5900-5999, 3128;
/// a plain Linux host 22. Ping always.
pub fn platform_services(p: Platform) -> Vec<Service> {
    let s = PortRange::single;
    let r = PortRange::new;
    match p {
        Platform::Xcpng => vec![
            Service::Tcp(vec![s(22), s(443), s(6640), s(6653), s(21064)]),
            Service::Udp(vec![r(5404, 5405)]),
            Service::Ping,
        ],
        Platform::Proxmox => vec![
            Service::Tcp(vec![s(22), s(3128), r(5900, 5999), s(8006)]),
            Service::Ping,
        ],
        Platform::Linux => vec![Service::Tcp(vec![s(22)]), Service::Ping],
    }
}

fn lockdown_services(l: &Lockdown, node: &ir::Node) -> Vec<Service> {
    if let Some(list) = &l.services {
        let mut tcp = vec![];
        let mut udp = vec![];
        let mut ping = false;
        for (s, _) in list {
            match s {
                ServiceSpec::Tcp(p) => tcp.push(*p),
                ServiceSpec::Udp(p) => udp.push(*p),
                ServiceSpec::Ping => ping = true,
            }
        }
        let mut out = vec![];
        if !tcp.is_empty() {
            out.push(Service::Tcp(tcp));
        }
        if !udp.is_empty() {
            out.push(Service::Udp(udp));
        }
        if ping {
            out.push(Service::Ping);
        }
        return out;
    }
    platform_services(l.platform.unwrap_or(node.platform))
}

fn origin(span: rampart_types::Span) -> String {
    format!("site.toml:{}", span.line)
}

// ---------------------------------------------------------------- checks

/// Site-level checks: names resolve, the VPN of a lockdown can carry the
/// admin to the node (E0503: a client whose AllowedIPs miss the management
/// address), an egress subnet is routed by the tunnel both ways.
pub fn check(p: &Profiles, cx: &Context) -> Diagnostics {
    let mut d = Diagnostics::new();
    let mut seen: Vec<&str> = vec![];
    for l in &p.lockdowns {
        let Some(node) = cx.site.node(&l.node) else {
            d.push(
                Diagnostic::new(codes::UNKNOWN_NODE, format!("no node named `{}`", l.node))
                    .at(l.node_span),
            );
            continue;
        };
        if seen.contains(&l.node.as_str()) {
            d.push(
                Diagnostic::new(
                    codes::DUPLICATE_NAME,
                    format!("a second [[lockdown]] for `{}`", l.node),
                )
                .at(l.node_span)
                .hint("list every VPN and address of the node in one [[lockdown]]"),
            );
        }
        seen.push(&l.node);
        if !node.firewall.enabled {
            d.push(
                Diagnostic::new(
                    codes::BAD_OPTION_VALUE,
                    format!("`{}` is locked down but its firewall is off", l.node),
                )
                .at(l.span)
                .hint("enable the firewall in cluster.fw and the node's host.fw: a lockdown needs a filtering host"),
            );
        }
        if l.vpn.is_none() && l.allow.is_empty() {
            d.push(
                Diagnostic::new(
                    codes::VPN_PORT_UNREACHABLE,
                    format!(
                        "the lockdown of `{}` names no VPN and no address: nobody could manage it",
                        l.node
                    ),
                )
                .at(l.span)
                .hint("add `vpn = \"NETWORK\"` or `allow = [\"ADDRESS\"]`"),
            );
        }
        if let Some((vpn, vspan)) = &l.vpn {
            let Some(net) = cx.wg_site.and_then(|s| s.network(vpn)) else {
                d.push(
                    Diagnostic::new(
                        codes::BAD_OPTION_VALUE,
                        format!("no [[wireguard]] network named `{vpn}`"),
                    )
                    .at(*vspan),
                );
                continue;
            };
            let Some(wg) = cx.wg else { continue };
            if wg.get(vpn, &l.node).is_some() {
                continue; // A member: clients reach its tunnel address.
            }
            let Some(addr) = management_address(l, node) else {
                d.push(
                    Diagnostic::new(
                        codes::VPN_PORT_UNREACHABLE,
                        format!("`{}` has no address the VPN could route to", l.node),
                    )
                    .at(l.span)
                    .hint("give the node an address (bridges) or the lockdown `address = \"...\"`"),
                );
                continue;
            };
            let clients: Vec<_> = wg
                .interfaces
                .iter()
                .filter(|i| i.network == *vpn && i.role == Role::Client)
                .collect();
            if clients.is_empty() {
                d.push(
                    Diagnostic::new(
                        codes::VPN_PORT_UNREACHABLE,
                        format!(
                            "the VPN `{vpn}` has no clients: nobody could manage `{}` through it",
                            l.node
                        ),
                    )
                    .at(*vspan)
                    .hint("add a [[client]] with `network = \"...\"` for the admin's machine"),
                );
            }
            for c in clients {
                let routed = c
                    .peers
                    .iter()
                    .any(|p| p.allowed_ips.iter().any(|n| n.contains(&addr)));
                if !routed {
                    let gw: Vec<&str> = net
                        .members
                        .iter()
                        .filter(|m| net.gateways.contains(&m.name) || net.gateways.is_empty())
                        .map(|m| m.name.as_str())
                        .collect();
                    let span = cx
                        .wg_site
                        .and_then(|s| {
                            s.clients
                                .iter()
                                .find(|x| x.network == *vpn && x.name == c.owner)
                        })
                        .map(|x| x.span)
                        .unwrap_or(*vspan);
                    d.push(
                        Diagnostic::new(
                            codes::VPN_PORT_UNREACHABLE,
                            format!(
                                "client `{}` of `{vpn}` does not send {addr} (the management address of `{}`) through the tunnel: the lockdown would lock it out",
                                c.owner, l.node
                            ),
                        )
                        .at(span)
                        .note(format!("locked down at {}", origin(l.span)))
                        .hint(format!(
                            "add \"{}\" to the `routes` of {} (its AllowedIPs on the client)",
                            IpNet::from(addr),
                            gw.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(" or ")
                        )),
                    );
                }
            }
        }
    }
    for e in &p.egress {
        egress_checks(e, cx, &mut d);
    }
    d
}

fn egress_checks(e: &Egress, cx: &Context, d: &mut Diagnostics) {
    let Some(node) = cx.site.node(&e.node) else {
        d.push(
            Diagnostic::new(codes::UNKNOWN_NODE, format!("no node named `{}`", e.node))
                .at(e.node_span),
        );
        return;
    };
    if !node.firewall.enabled {
        d.push(
            Diagnostic::new(
                codes::BAD_OPTION_VALUE,
                format!("`{}` sends guests through a tunnel but its firewall is off: nothing would keep the tunnel and the guests off the host", e.node),
            )
            .at(e.span),
        );
    }
    let Some(net) = cx.wg_site.and_then(|s| s.network(&e.network)) else {
        d.push(
            Diagnostic::new(
                codes::BAD_OPTION_VALUE,
                format!("no [[wireguard]] network named `{}`", e.network),
            )
            .at(e.network_span),
        );
        return;
    };
    let Some(me) = net.members.iter().find(|m| m.name == e.node) else {
        d.push(
            Diagnostic::new(
                codes::BAD_OPTION_VALUE,
                format!("`{}` is not a member of `{}`", e.node, e.network),
            )
            .at(e.network_span)
            .hint("add it as a [[wireguard.member]] of the network"),
        );
        return;
    };
    if !me.routes.iter().any(|(r, _)| r.contains(&e.subnet)) {
        d.push(
            Diagnostic::new(
                codes::BAD_OPTION_VALUE,
                format!(
                    "the gateway would drop the guests' packets: {} is not in the `routes` of member `{}` of `{}`",
                    e.subnet, e.node, e.network
                ),
            )
            .at(e.subnet_span)
            .hint(format!("add \"{}\" to its `routes` (the gateway's AllowedIPs for it)", e.subnet)),
        );
    }
    let default: IpNet = match e.subnet {
        IpNet::V4(_) => "0.0.0.0/0".parse().unwrap(),
        IpNet::V6(_) => "::/0".parse().unwrap(),
    };
    let gws: Vec<_> = net
        .members
        .iter()
        .filter(|m| m.name != e.node && (net.gateways.is_empty() || net.gateways.contains(&m.name)))
        .collect();
    if !gws
        .iter()
        .any(|m| m.routes.iter().any(|(r, _)| *r == default))
    {
        d.push(
            Diagnostic::new(
                codes::BAD_OPTION_VALUE,
                format!("no gateway of `{}` routes {default}: the guests' internet traffic has nowhere to go", e.network),
            )
            .at(e.network_span)
            .hint(format!("add \"{default}\" to the gateway member's `routes`")),
        );
    }
    if e.table.or(net.table).is_none() {
        d.push(
            Diagnostic::new(
                codes::BAD_OPTION_VALUE,
                "egress needs a routing table for the tunnel's default route",
            )
            .at(e.span)
            .hint("set `table = N` on the [[egress]] or the [[wireguard]] network"),
        );
    }
    if let (Some(t), Some(nt)) = (e.table, net.table) {
        if t != nt {
            d.push(
                Diagnostic::new(
                    codes::BAD_OPTION_VALUE,
                    format!("table {t} differs from the network's table {nt}"),
                )
                .at(e.span)
                .hint("drop one of them"),
            );
        }
    }
    if egress_bridge(e, node).is_none() {
        d.push(
            Diagnostic::new(
                codes::UNKNOWN_BRIDGE,
                format!(
                    "no bridge of `{}` holds {}; name it with `bridge = \"...\"`",
                    e.node, e.subnet
                ),
            )
            .at(e.subnet_span),
        );
    }
}

/// The address clients use to manage the node: `address`, or the node's
/// first IPv4 address, or its first.
pub fn management_address(l: &Lockdown, node: &ir::Node) -> Option<IpAddr> {
    if let Some((a, _)) = l.address {
        return Some(a);
    }
    let all: Vec<IpAddr> = node.addresses.iter().map(|a| a.addr()).collect();
    all.iter().find(|a| a.is_ipv4()).or(all.first()).copied()
}

fn egress_bridge(e: &Egress, node: &ir::Node) -> Option<ir::IfaceName> {
    if let Some((b, _)) = &e.bridge {
        return Some(b.clone());
    }
    node.bridges
        .iter()
        .find(|b| b.addresses.iter().any(|a| e.subnet.contains(&a.addr())))
        .map(|b| b.name.clone())
}

// ---------------------------------------------------------------- per node

/// The overlay's source ranges: the pool of the network.
fn pool_ranges(cx: &Context, net: &str) -> Vec<IpRange> {
    cx.wg_site
        .and_then(|s| s.network(net))
        .map(|n| n.pool.iter().map(|(p, _)| IpRange::from_net(p)).collect())
        .unwrap_or_default()
}

/// The paths a lockdown accepts on its node.
fn lockdown_paths(l: &Lockdown, cx: &Context) -> Vec<Path> {
    let mut out = vec![];
    if let Some((vpn, vspan)) = &l.vpn {
        let sources = pool_ranges(cx, vpn);
        let o = origin(*vspan);
        let iifs: Vec<Option<DevName>> = if let Some((i, _)) = &l.interface {
            vec![Some(i.clone().into())]
        } else if let Some(i) = cx.wg.and_then(|w| w.get(vpn, &l.node)) {
            vec![Some(i.interface.clone().into())]
        } else {
            // The VPN ends on a guest of this node: its traffic arrives on
            // the bridges of that guest's NICs.
            let mut v = vec![];
            if let Some(net) = cx.wg_site.and_then(|s| s.network(vpn)) {
                for m in &net.members {
                    let Some(id) = m.guest else { continue };
                    let Some(g) = cx.site.guest(id).filter(|g| g.node == l.node) else {
                        continue;
                    };
                    // Only bridges the node has an address on: the
                    // gateway reaches the host's management there.
                    let node = cx.site.node(&l.node);
                    for n in &g.nics {
                        let addressed = node.is_some_and(|x| {
                            x.bridges
                                .iter()
                                .any(|b| b.name == n.bridge && !b.addresses.is_empty())
                        });
                        let b: DevName = n.bridge.clone().into();
                        if addressed && !v.contains(&Some(b.clone())) {
                            v.push(Some(b));
                        }
                    }
                }
            }
            if v.is_empty() {
                v.push(None);
            }
            v
        };
        if !sources.is_empty() {
            for iif in iifs {
                out.push(Path {
                    iif,
                    sources: sources.clone(),
                    origin: o.clone(),
                });
            }
        }
    }
    if !l.allow.is_empty() {
        out.push(Path {
            iif: None,
            sources: l.allow.iter().map(|(n, _)| IpRange::from_net(n)).collect(),
            origin: origin(l.allow[0].1),
        });
    }
    out
}

/// When the VPN ends on a guest of the node (document 000's OPNsense), the
/// host answers the VPN's addresses through that guest: a route to the
/// pool via the guest's address on a bridge the host is addressed on.
fn vpn_return_routes(l: &Lockdown, cx: &Context, n: &ir::Node) -> Vec<Route> {
    let mut out = vec![];
    let Some((vpn, vspan)) = &l.vpn else {
        return out;
    };
    if cx.wg.and_then(|w| w.get(vpn, &l.node)).is_some() {
        return out; // A member: the pool is its interface's connected route.
    }
    let Some(net) = cx.wg_site.and_then(|s| s.network(vpn)) else {
        return out;
    };
    for m in &net.members {
        let Some(g) = m
            .guest
            .and_then(|id| cx.site.guest(id))
            .filter(|g| g.node == n.name)
        else {
            continue;
        };
        for nic in &g.nics {
            let Some(b) = n.bridges.iter().find(|b| b.name == nic.bridge) else {
                continue;
            };
            for (pool, _) in &net.pool {
                let fam = Family::of(&pool.addr());
                let via =
                    nic.addresses.iter().map(|a| a.addr()).find(|a| {
                        Family::of(a) == fam && b.addresses.iter().any(|h| h.contains(a))
                    });
                if let Some(via) = via {
                    if !out.iter().any(|r: &Route| r.dest == pool.to_string()) {
                        out.push(Route {
                            dest: pool.to_string(),
                            dev: b.name.clone().into(),
                            via: Some(via.to_string()),
                            table: None,
                            origin: origin(*vspan),
                        });
                    }
                }
            }
        }
    }
    out
}

fn forwarding_sysctl(fam: Family, why: &str) -> (String, String, String) {
    let key = match fam {
        Family::V4 => "net.ipv4.ip_forward",
        Family::V6 => "net.ipv6.conf.all.forwarding",
    };
    (key.to_string(), "1".to_string(), why.to_string())
}

/// The profiles' share of `node`: firewall additions, routes, policy rules,
/// sysctls. Profiles with errors (see [`check`]) contribute what they can.
pub fn for_node(p: &Profiles, cx: &Context, node: &str) -> NodeProfile {
    let mut out = NodeProfile::default();
    let Some(n) = cx.site.node(node) else {
        return out;
    };
    if let Some(l) = p.lockdowns.iter().find(|l| l.node == node) {
        out.routes.extend(vpn_return_routes(l, cx, n));
        out.firewall.lockdown = Some(LockdownRules {
            services: lockdown_services(l, n),
            paths: lockdown_paths(l, cx),
            refuse_rest: l.refuse_rest,
            origin: origin(l.span),
        });
    }
    for e in &p.egress {
        let Some(net) = cx.wg_site.and_then(|s| s.network(&e.network)) else {
            continue;
        };
        let fam = Family::of(&e.subnet.addr());
        let why = format!("egress {} ({})", e.subnet, origin(e.span));
        let subnet = vec![IpRange::from_net(&e.subnet)];
        if e.node == node {
            let Some(iface) = cx.wg.and_then(|w| w.get(&e.network, node)) else {
                continue;
            };
            let tun = iface.interface.clone();
            let Some(table) = e.table.or(net.table) else {
                continue;
            };
            out.rules.push(PolicyRule {
                priority: e.priority,
                from: e.subnet.to_string(),
                iif: None,
                table,
                origin: origin(e.span),
            });
            if net.table != Some(table)
                || !iface
                    .routes
                    .iter()
                    .any(|r| r.dest.prefix_len() == 0 && r.table == Some(table))
            {
                out.routes.push(Route {
                    dest: match fam {
                        Family::V4 => "0.0.0.0/0".into(),
                        Family::V6 => "::/0".into(),
                    },
                    dev: tun.clone().into(),
                    via: None,
                    table: Some(table),
                    origin: origin(e.span),
                });
            }
            out.sysctls.push(forwarding_sysctl(fam, &why));
            out.firewall.host_drop.push(HostDrop {
                iif: Some(tun.clone().into()),
                sources: vec![],
                origin: origin(e.span),
            });
            out.firewall.host_drop.push(HostDrop {
                iif: None,
                sources: subnet.clone(),
                origin: origin(e.subnet_span),
            });
            if let Some(br) = egress_bridge(e, n) {
                out.firewall.forward.push(ForwardAccept {
                    iif: br.clone().into(),
                    oif: tun.clone().into(),
                    sources: subnet.clone(),
                    dests: vec![],
                    origin: origin(e.span),
                });
                out.firewall.forward.push(ForwardAccept {
                    iif: tun.clone().into(),
                    oif: br.into(),
                    sources: vec![],
                    dests: subnet.clone(),
                    origin: origin(e.span),
                });
            }
        } else if let Some(gw) = gateway_of(e, cx, net).filter(|g| g.owner == node) {
            let Some(wan) = gateway_wan(e, cx, node) else {
                continue;
            };
            out.sysctls.push(forwarding_sysctl(fam, &why));
            out.firewall.forward.push(ForwardAccept {
                iif: gw.interface.clone().into(),
                oif: wan.clone(),
                sources: subnet.clone(),
                dests: vec![],
                origin: origin(e.span),
            });
            out.firewall.masquerade.push(Masquerade {
                oif: wan,
                sources: subnet.clone(),
                origin: origin(e.span),
            });
        }
    }
    out.sysctls.sort();
    out.sysctls.dedup_by(|a, b| a.0 == b.0);
    out
}

/// The interface (plan) of the gateway that routes the egress network's
/// default route (a node, not a guest: rampart compiles its firewall).
fn gateway_of<'a>(
    e: &Egress,
    cx: &Context<'a>,
    net: &rampart_wg::schema::Network,
) -> Option<&'a rampart_wg::InterfacePlan> {
    let wg = cx.wg?;
    let fam_default =
        |r: &IpNet| r.prefix_len() == 0 && Family::of(&r.addr()) == Family::of(&e.subnet.addr());
    net.members
        .iter()
        .filter(|m| m.name != e.node && m.guest.is_none())
        .filter(|m| net.gateways.is_empty() || net.gateways.contains(&m.name))
        .find(|m| m.routes.iter().any(|(r, _)| fam_default(r)))
        .and_then(|m| wg.get(&net.name, &m.name))
}

/// The gateway's internet interface: `gateway_wan`, or its bridge holding
/// its endpoint address, or its first bridge with an address.
fn gateway_wan(e: &Egress, cx: &Context, gw: &str) -> Option<DevName> {
    if let Some((w, _)) = &e.gateway_wan {
        return Some(w.clone().into());
    }
    let n = cx.site.node(gw)?;
    let ep: Option<IpAddr> = cx
        .wg_site
        .and_then(|s| s.node(gw))
        .and_then(|i| i.endpoint.as_ref())
        .and_then(|e| e.host.parse().ok());
    n.bridges
        .iter()
        .find(|b| ep.is_some_and(|a| b.addresses.iter().any(|x| x.addr() == a)))
        .or(n.bridges.iter().find(|b| !b.addresses.is_empty()))
        .map(|b| b.name.clone().into())
}

// ---------------------------------------------------------------- compiled

/// With the node's compiled plan: prove the locked-down node stays
/// reachable through its VPN (E0503): the WireGuard listen port admits the
/// peers (on the node, or on the gateway guest the node filters), and a new
/// connection from a VPN address through the VPN's interface reaches the
/// first management port.
pub fn check_compiled(
    p: &Profiles,
    cx: &Context,
    node: &str,
    plan: &rampart_nft::Plan,
) -> Diagnostics {
    let mut d = Diagnostics::new();
    let Some(l) = p.lockdowns.iter().find(|l| l.node == node) else {
        return d;
    };
    let Some(n) = cx.site.node(node) else {
        return d;
    };
    if !n.firewall.enabled {
        return d;
    }
    let Some((vpn, vspan)) = &l.vpn else { return d };
    let (Some(wg), Some(net)) = (cx.wg, cx.wg_site.and_then(|s| s.network(vpn))) else {
        return d;
    };
    let blame = |t: &rampart_sim::Trace, dg: Diagnostic| -> Diagnostic {
        match &t.decided_by {
            Some(hit) => dg.note(format!(
                "decided by {} ({} {} #{}): {}",
                hit.origin, hit.table, hit.chain, hit.index, hit.text
            )),
            None => dg,
        }
    };
    let verb = |a: Action| match a {
        Action::Accept => "accepted",
        Action::Drop => "dropped",
        Action::Reject => "rejected",
    };
    // 1. The listen port.
    let member = wg.get(vpn, node);
    let mut port_probe: Option<(Packet, String)> = None;
    if let Some(i) = member {
        if let Some(port) = i.listen_port {
            let src = rampart_nft_listen_source(i);
            let mut pk = Packet::udp("outside", "host", port);
            pk.source = Some(src);
            pk.family = Some(Family::of(&src));
            port_probe = Some((pk, format!("the WireGuard port udp/{port} of `{node}`")));
        }
    } else {
        for m in &net.members {
            let Some(id) = m.guest else { continue };
            let Some(g) = cx.site.guest(id).filter(|g| g.node == node) else {
                continue;
            };
            let port = m.listen_port.unwrap_or(net.listen_port);
            let zone = format!(
                "{}{id}",
                if g.kind == ir::GuestKind::Ct {
                    "ct"
                } else {
                    "vm"
                }
            );
            let mut pk = Packet::udp("outside", &zone, port);
            let dest: Option<IpAddr> = m.endpoint.as_ref().and_then(|e| e.host.parse().ok());
            pk.dest = dest;
            pk.source = Some("203.0.113.254".parse().unwrap());
            if let Some(a) = dest {
                if a.is_ipv6() {
                    pk.source = Some("2001:db8:ffff::fe".parse().unwrap());
                }
            }
            port_probe = Some((
                pk,
                format!("the WireGuard port udp/{port} of `{}` (guest {id})", m.name),
            ));
            break;
        }
    }
    if let Some((pk, what)) = port_probe {
        match simulate_plan(cx.site, plan, &pk) {
            Ok(t) if t.verdict == Action::Accept => {}
            Ok(t) => {
                let dg = Diagnostic::new(
                    codes::VPN_PORT_UNREACHABLE,
                    format!("{what} would be {}: the VPN that must carry `{node}`'s management cannot come up", verb(t.verdict)),
                )
                .at(*vspan)
                .note(format!("locked down at {}", origin(l.span)))
                .hint("accept the WireGuard port from the peers before the rule that blocks it");
                d.push(blame(&t, dg));
            }
            Err(e) => d.push(
                Diagnostic::new(
                    codes::VPN_PORT_UNREACHABLE,
                    format!("cannot prove {what} is reachable: {e}"),
                )
                .at(*vspan),
            ),
        }
    }
    // 2. A management connection through the VPN.
    let services = lockdown_services(l, n);
    let Some(port) = services.iter().find_map(|s| match s {
        Service::Tcp(p) => p.first().map(|r| r.lo),
        _ => None,
    }) else {
        return d;
    };
    let client_addr: Option<IpAddr> = wg
        .interfaces
        .iter()
        .find(|i| i.network == *vpn && i.role == Role::Client)
        .or_else(|| {
            wg.interfaces
                .iter()
                .find(|i| i.network == *vpn && i.owner != node)
        })
        .and_then(|i| i.addresses.first().map(|a| a.addr()));
    let Some(src) = client_addr else { return d };
    for path in lockdown_paths(l, cx)
        .iter()
        .filter(|p| p.origin == origin(*vspan))
    {
        let mut pk = Packet::new("outside", "host", Proto::Tcp);
        pk.dport = Some(port);
        pk.source = Some(src);
        pk.family = Some(Family::of(&src));
        pk.state = State::New;
        if let Some(i) = member {
            pk.dest = i
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| Family::of(a) == Family::of(&src));
            pk.iif = Some(i.interface.to_string());
        } else {
            pk.dest = management_address(l, n).filter(|a| Family::of(a) == Family::of(&src));
            match &path.iif {
                Some(i) if n.bridges.iter().any(|b| &b.name == i) => {
                    // Arrives from the gateway guest on that bridge.
                    if let Some((id, kind)) = net.members.iter().find_map(|m| {
                        let g = cx.site.guest(m.guest?)?;
                        (g.node == node && g.nics.iter().any(|x| &x.bridge == i))
                            .then_some((g.id, g.kind))
                    }) {
                        pk.from = Zone::parse(&format!(
                            "{}{id}",
                            if kind == ir::GuestKind::Ct {
                                "ct"
                            } else {
                                "vm"
                            }
                        ));
                    }
                }
                Some(i) => pk.iif = Some(i.to_string()),
                None => {}
            }
        }
        if pk.dest.is_none() {
            continue;
        }
        match simulate_plan(cx.site, plan, &pk) {
            Ok(t) if t.verdict == Action::Accept => {}
            Ok(t) => {
                let dg = Diagnostic::new(
                    codes::VPN_PORT_UNREACHABLE,
                    format!(
                        "a new connection from the VPN ({src}) to tcp/{port} of `{node}` would be {}: the lockdown locks the admin out",
                        verb(t.verdict)
                    ),
                )
                .at(l.span)
                .hint("accept the VPN before the rule that blocks it (a blacklist, a guest ipfilter, a host rule)");
                d.push(blame(&t, dg));
            }
            Err(_) => {}
        }
    }
    d
}

/// A source the listen port must admit: a peer's endpoint address, or (the
/// port is open to any source) a documentation address.
fn rampart_nft_listen_source(i: &rampart_wg::InterfacePlan) -> IpAddr {
    i.peers
        .iter()
        .filter_map(|p| p.endpoint.as_deref())
        .filter_map(|e| {
            e.parse::<std::net::SocketAddr>()
                .map(|s| s.ip())
                .or_else(|_| e.parse::<IpAddr>())
                .ok()
        })
        .next()
        .unwrap_or_else(|| "203.0.113.254".parse().unwrap())
}

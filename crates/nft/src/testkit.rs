//! Building IR sites by hand, for tests of the backends and the simulator
//! (independent of the parser). Defaults follow Proxmox's documented ones.

use ipnet::IpNet;
use rampart_resolve::ir::*;
use rampart_types::{
    Action, Direction, Family, FileId, IpRange, LogLevel, Origin, PortRange, Proto, SourceMap, Span,
};

pub fn cluster_options() -> ClusterOptions {
    ClusterOptions {
        enable: true,
        policy_in: Action::Drop,
        policy_out: Action::Accept,
        policy_forward: Action::Accept,
        log_ratelimit: LogRateLimit {
            enable: true,
            rate: 1,
            unit: "second".into(),
            burst: 5,
        },
        ebtables: true,
    }
}

pub fn host_options() -> HostOptions {
    HostOptions {
        enable: true,
        log_level_in: LogLevel::Nolog,
        log_level_out: LogLevel::Nolog,
        log_level_forward: LogLevel::Nolog,
        nosmurfs: true,
        smurf_log_level: LogLevel::Nolog,
        tcpflags: false,
        tcp_flags_log_level: LogLevel::Nolog,
        ndp: true,
        nf_conntrack_max: 262144,
        nf_conntrack_tcp_timeout_established: 432000,
        nf_conntrack_tcp_timeout_syn_recv: 60,
        nf_conntrack_allow_invalid: false,
        nf_conntrack_helpers: vec![],
        protection_synflood: false,
        protection_synflood_rate: 200,
        protection_synflood_burst: 1000,
        log_nf_conntrack: false,
    }
}

pub fn guest_options() -> GuestOptions {
    GuestOptions {
        enable: true,
        macfilter: true,
        dhcp: false,
        ndp: false,
        radv: false,
        ipfilter: false,
        policy_in: Action::Drop,
        policy_out: Action::Accept,
        log_level_in: LogLevel::Nolog,
        log_level_out: LogLevel::Nolog,
        ips: false,
        ips_queues: None,
        spans: Default::default(),
    }
}

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap_or_else(|_| {
        let a: std::net::IpAddr = s.parse().expect("address");
        IpNet::from(a)
    })
}

pub fn range(s: &str) -> IpRange {
    if let Some((a, b)) = s.split_once('-') {
        IpRange::new(a.parse().unwrap(), b.parse().unwrap())
    } else {
        IpRange::from_net(&net(s))
    }
}

pub fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    [v[0], v[1], v[2], v[3], v[4], v[5]]
}

/// A site under construction. Files get their text so origins render.
pub struct SiteBuilder {
    pub site: Site,
}

/// A name of a hand-built test site: validated like any other (a bad
/// literal in a test panics).
pub fn n<N: rampart_types::names::Name>(s: &str) -> N {
    N::parse_name(s).unwrap_or_else(|e| panic!("test name: {e}"))
}

impl Default for SiteBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SiteBuilder {
    pub fn new() -> Self {
        SiteBuilder {
            site: Site {
                sources: SourceMap::new(),
                name: n("test"),
                cluster: cluster_options(),
                nodes: vec![],
                guests: vec![],
                sets: vec![],
                index: Default::default(),
            },
        }
    }

    /// Add a file; its lines are what origins point at.
    pub fn file(&mut self, path: &str, text: &str) -> FileId {
        self.site.sources.add(path, text)
    }

    pub fn at(&self, file: FileId, line: u32) -> Origin {
        Origin::line(Span::new(file, line, 1, 1))
    }

    pub fn set(
        &mut self,
        name: &str,
        scope: SetScope,
        kernel_name: &str,
        entries: &[&str],
        origin: Origin,
    ) -> SetId {
        let mut es: Vec<SetEntry> = entries
            .iter()
            .map(|e| {
                let (nomatch, e) = match e.strip_prefix('!') {
                    Some(r) => (true, r),
                    None => (false, *e),
                };
                SetEntry {
                    range: range(e),
                    nomatch,
                    origin: origin.clone(),
                }
            })
            .collect();
        es.sort_by_key(|a| a.range);
        self.site.sets.push(IpSet {
            name: n(name),
            scope,
            kernel_name: n(kernel_name),
            entries: es,
            origin,
        });
        SetId(self.site.sets.len() as u32 - 1)
    }

    /// A node with bridges `(name, [addresses])`. Its management set holds
    /// `management` plus the bridge networks (local_network); cluster peers
    /// are the other nodes' addresses added later with [`Self::peer`].
    pub fn node(&mut self, name: &str, bridges: &[(&str, &[&str])], management: &[&str]) -> usize {
        let bridges: Vec<Bridge> = bridges
            .iter()
            .map(|(n, a)| Bridge {
                name: self::n(n),
                addresses: a.iter().map(|x| net(x)).collect(),
            })
            .collect();
        let addresses: Vec<IpNet> = bridges.iter().flat_map(|b| b.addresses.clone()).collect();
        let local: Vec<IpNet> = addresses.iter().map(|a| a.trunc()).collect();
        let mut mg: Vec<String> = management.iter().map(|s| s.to_string()).collect();
        mg.extend(local.iter().map(|n| n.to_string()));
        let mg_ref: Vec<&str> = mg.iter().map(|s| s.as_str()).collect();
        let m = self.set(
            "management",
            SetScope::Node(n(name)),
            &format!("{name}-management"),
            &mg_ref,
            Origin::auto("auto:management"),
        );
        let p = self.set(
            "cluster_peers",
            SetScope::Node(n(name)),
            &format!("{name}-peers"),
            &[],
            Origin::auto("auto:cluster"),
        );
        self.site.nodes.push(Node {
            name: n(name),
            backend: Backend::Nftables,
            platform: Platform::Proxmox,
            bridges,
            addresses,
            local_network: local,
            firewall: HostFirewall {
                enabled: true,
                options: host_options(),
                policy_in: self.site.cluster.policy_in,
                policy_out: self.site.cluster.policy_out,
                policy_forward: self.site.cluster.policy_forward,
                rules: vec![],
                management: m,
                blacklist: None,
                cluster_peers: p,
                corosync: vec![],
            },
            origin: Origin::auto("site.toml"),
            saved_files: Default::default(),
        });
        self.site.nodes.len() - 1
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.site
            .nodes
            .iter_mut()
            .find(|n| n.name == name)
            .expect("node")
    }

    /// Make every node a cluster peer of every other one.
    pub fn link_peers(&mut self) {
        let all: Vec<(NodeName, Vec<IpNet>)> = self
            .site
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.addresses.clone()))
            .collect();
        for n in self.site.nodes.clone() {
            let id = n.firewall.cluster_peers;
            let mut es = vec![];
            for (name, addrs) in &all {
                if *name != n.name {
                    for a in addrs {
                        es.push(SetEntry {
                            range: IpRange::host(a.addr()),
                            nomatch: false,
                            origin: Origin::auto("auto:cluster"),
                        });
                    }
                }
            }
            es.sort_by_key(|a| a.range);
            self.site.sets[id.0 as usize].entries = es;
            // Each address of the node is a corosync link to the peers.
            let node = self.node_mut(&n.name);
            node.firewall.corosync = n
                .addresses
                .iter()
                .enumerate()
                .map(|(k, a)| CorosyncLink {
                    ring: k as u32,
                    local: a.addr(),
                    peers: id,
                    origin: Origin::auto("auto:corosync"),
                })
                .collect();
        }
    }

    /// A guest with NICs `(bridge, mac, [addresses])`, all behind the firewall.
    pub fn guest(
        &mut self,
        id: u32,
        kind: GuestKind,
        node: &str,
        nics: &[(&str, &str, &[&str])],
        origin: Origin,
    ) -> usize {
        let nics = nics
            .iter()
            .enumerate()
            .map(|(i, (br, m, addrs))| Nic {
                index: i as u32,
                name: n(&format!("net{i}")),
                ifname: n(&match kind {
                    GuestKind::Vm => format!("tap{id}i{i}"),
                    GuestKind::Ct => format!("veth{id}i{i}"),
                }),
                bridge: n(br),
                mac: Some(mac(m)),
                addresses: addrs.iter().map(|a| net(a)).collect(),
                firewall: true,
                ipfilter: None,
                vlan: None,
            })
            .collect();
        self.site.guests.push(Guest {
            id,
            kind,
            name: None,
            node: n(node),
            nics,
            enabled: self.site.cluster.enable,
            options: guest_options(),
            rules: vec![],
            origin,
        });
        self.site.guests.len() - 1
    }

    pub fn guest_mut(&mut self, id: u32) -> &mut Guest {
        self.site
            .guests
            .iter_mut()
            .find(|g| g.id == id)
            .expect("guest")
    }

    pub fn build(self) -> Site {
        self.site
    }
}

/// An IR rule, built step by step.
pub fn rule(origin: Origin, dir: Direction, action: Action) -> Rule {
    Rule {
        origin,
        dir,
        action,
        family: None,
        iface: None,
        source: None,
        dest: None,
        proto: None,
        dport: vec![],
        sport: vec![],
        icmp_type: None,
        log: LogLevel::Nolog,
    }
}

pub trait RuleExt {
    fn tcp(self, dport: u16) -> Self;
    fn udp(self, dport: u16) -> Self;
    fn proto(self, p: Proto) -> Self;
    fn dports(self, p: &[(u16, u16)]) -> Self;
    fn source(self, a: AddrMatch) -> Self;
    fn dest(self, a: AddrMatch) -> Self;
    fn family(self, f: Family) -> Self;
    fn iface(self, i: &str) -> Self;
    fn icmp(self, v6: bool, name: &str, ty: u8) -> Self;
    fn log(self, l: LogLevel) -> Self;
}

impl RuleExt for Rule {
    fn tcp(mut self, dport: u16) -> Self {
        self.proto = Some(Proto::Tcp);
        self.dport = vec![PortRange::single(dport)];
        self
    }
    fn udp(mut self, dport: u16) -> Self {
        self.proto = Some(Proto::Udp);
        self.dport = vec![PortRange::single(dport)];
        self
    }
    fn proto(mut self, p: Proto) -> Self {
        self.proto = Some(p);
        self
    }
    fn dports(mut self, p: &[(u16, u16)]) -> Self {
        self.dport = p.iter().map(|(a, b)| PortRange::new(*a, *b)).collect();
        self
    }
    fn source(mut self, a: AddrMatch) -> Self {
        if let AddrMatch::List(l) = &a {
            self.family = l.first().map(|r| r.family());
        }
        self.source = Some(a);
        self
    }
    fn dest(mut self, a: AddrMatch) -> Self {
        if let AddrMatch::List(l) = &a {
            self.family = l.first().map(|r| r.family());
        }
        self.dest = Some(a);
        self
    }
    fn family(mut self, f: Family) -> Self {
        self.family = Some(f);
        self
    }
    fn iface(mut self, i: &str) -> Self {
        self.iface = Some(n(i));
        self
    }
    fn icmp(mut self, v6: bool, name: &str, ty: u8) -> Self {
        self.proto = Some(if v6 { Proto::Icmpv6 } else { Proto::Icmp });
        self.family = Some(if v6 { Family::V6 } else { Family::V4 });
        self.icmp_type = Some(IcmpType {
            name: name.into(),
            ty,
            code: None,
        });
        self
    }
    fn log(mut self, l: LogLevel) -> Self {
        self.log = l;
        self
    }
}

pub fn list(items: &[&str]) -> AddrMatch {
    AddrMatch::List(items.iter().map(|s| range(s)).collect())
}

/// The shared conformance cases (`shared/conformance/*`), as the resolver
/// is expected to resolve them, built by hand.
pub mod conformance {
    use super::*;

    pub const HOST_BASICS_CLUSTER: &str = "[OPTIONS]\nenable: 1\npolicy_in: DROP\npolicy_out: ACCEPT\n\n[ALIASES]\nmonitor 203.0.113.9 # uptime checker\n\n[IPSET management]\n198.51.100.5 # admin desk\n\n[RULES]\nIN HTTPS(ACCEPT) -source monitor\nIN Ping(ACCEPT)\nIN ACCEPT -p tcp -dport 8080 -source 203.0.113.0/24\n|IN ACCEPT -p tcp -dport 9000\nIN REJECT -p tcp -dport 25\n";
    pub const HOST_BASICS_HOST: &str =
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN DROP -p tcp -dport 8080 -source 203.0.113.66 # host rules come before cluster rules\n";

    /// `shared/conformance/host-basics`.
    pub fn host_basics() -> Site {
        let mut b = SiteBuilder::new();
        let c = b.file("firewall/cluster.fw", HOST_BASICS_CLUSTER);
        let h = b.file("nodes/hv1/host.fw", HOST_BASICS_HOST);
        b.node(
            "hv1",
            &[("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"])],
            &["198.51.100.5"],
        );
        let at = |f, l| Origin::line(Span::new(f, l, 1, 1));
        let rules = vec![
            rule(at(h, 5), Direction::In, Action::Drop)
                .tcp(8080)
                .source(list(&["203.0.113.66"])),
            rule(at(c, 13), Direction::In, Action::Accept)
                .tcp(443)
                .source(list(&["203.0.113.9"])),
            rule(at(c, 14), Direction::In, Action::Accept).icmp(false, "echo-request", 8),
            rule(at(c, 14), Direction::In, Action::Accept).icmp(true, "echo-request", 128),
            rule(at(c, 15), Direction::In, Action::Accept)
                .tcp(8080)
                .source(list(&["203.0.113.0/24"])),
            rule(at(c, 17), Direction::In, Action::Reject).tcp(25),
        ];
        b.node_mut("hv1").firewall.rules = rules;
        b.build()
    }

    pub const GUEST_BASICS_CLUSTER: &str =
        "[OPTIONS]\nenable: 1\n\n[IPSET trusted]\n192.0.2.101\n\n[group webserver]\nIN HTTP(ACCEPT)\nIN HTTPS(ACCEPT)\n";
    pub const GUEST_BASICS_100: &str = "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\nGROUP webserver\nIN SSH(ACCEPT) -source +trusted\n";
    pub const GUEST_BASICS_101: &str = "[OPTIONS]\nenable: 0\n";
    pub const GUEST_BASICS_200: &str =
        "[OPTIONS]\nenable: 1\npolicy_in: ACCEPT\npolicy_out: REJECT\n\n[RULES]\nOUT DNS(ACCEPT)\nIN DROP -p tcp -dport 23\n";

    /// `shared/conformance/guest-basics`.
    pub fn guest_basics() -> Site {
        let mut b = SiteBuilder::new();
        let c = b.file("firewall/cluster.fw", GUEST_BASICS_CLUSTER);
        let f100 = b.file("firewall/100.fw", GUEST_BASICS_100);
        let f101 = b.file("firewall/101.fw", GUEST_BASICS_101);
        let f200 = b.file("firewall/200.fw", GUEST_BASICS_200);
        let at = |f, l| Origin::line(Span::new(f, l, 1, 1));
        let via = |f, l, vf, vl| Origin::Source {
            span: Span::new(f, l, 1, 1),
            via: Some(Span::new(vf, vl, 1, 1)),
        };
        b.node("hv1", &[("vmbr0", &["192.0.2.10/24"])], &[]);
        let trusted = b.set(
            "trusted",
            SetScope::Cluster,
            "dc-trusted",
            &["192.0.2.101"],
            at(c, 4),
        );
        b.guest(
            100,
            GuestKind::Vm,
            "hv1",
            &[("vmbr0", "0e:00:00:00:64:00", &["192.0.2.100/24"])],
            at(f100, 1),
        );
        b.guest(
            101,
            GuestKind::Vm,
            "hv1",
            &[("vmbr0", "0e:00:00:00:65:00", &["192.0.2.101/24"])],
            at(f101, 1),
        );
        b.guest(
            200,
            GuestKind::Ct,
            "hv1",
            &[("vmbr0", "0e:00:00:00:c8:00", &["192.0.2.200/24"])],
            at(f200, 1),
        );
        let g = b.guest_mut(100);
        g.rules = vec![
            rule(via(c, 8, f100, 6), Direction::In, Action::Accept).tcp(80),
            rule(via(c, 9, f100, 6), Direction::In, Action::Accept).tcp(443),
            rule(at(f100, 7), Direction::In, Action::Accept)
                .tcp(22)
                .source(AddrMatch::Set(trusted)),
        ];
        let g = b.guest_mut(101);
        g.enabled = false;
        g.options.enable = false;
        let g = b.guest_mut(200);
        g.options.policy_in = Action::Accept;
        g.options.policy_out = Action::Reject;
        g.rules = vec![
            rule(at(f200, 7), Direction::Out, Action::Accept).udp(53),
            rule(at(f200, 7), Direction::Out, Action::Accept).tcp(53),
            rule(at(f200, 8), Direction::In, Action::Drop).tcp(23),
        ];
        b.build()
    }
}

/// A larger case exercising blacklist (with a `nomatch` hole), management
/// over IPv6, ipfilter, REJECT of UDP, host-to-guest rules, sets in guest
/// rules, guest-to-guest in both directions, IPv6 guests, logging, tcpflags
/// and the SYN-flood meter. Packets: `crates/sim/tests/data/features/`.
pub fn features() -> Site {
    use conformance::*;
    let _ = HOST_BASICS_HOST;
    let mut b = SiteBuilder::new();
    let c = b.file("firewall/cluster.fw", &"#\n".repeat(40));
    let h = b.file("nodes/hv1/host.fw", &"#\n".repeat(20));
    let g1 = b.file("firewall/100.fw", &"#\n".repeat(20));
    let g2 = b.file("firewall/200.fw", &"#\n".repeat(20));
    b.node(
        "hv1",
        &[("vmbr0", &["192.0.2.10/24", "2001:db8:1::10/64"])],
        &["198.51.100.5"],
    );
    let bl = b.set(
        "blacklist",
        SetScope::Cluster,
        "dc-blacklist",
        &["203.0.113.0/24", "!203.0.113.7", "2001:db8:bad::/48"],
        b.at(c, 2),
    );
    let office = b.set(
        "office",
        SetScope::Cluster,
        "dc-office",
        &["192.0.2.100"],
        b.at(c, 6),
    );
    b.guest(
        100,
        GuestKind::Vm,
        "hv1",
        &[(
            "vmbr0",
            "0e:00:00:00:64:00",
            &["192.0.2.100/24", "2001:db8:1::100/64"],
        )],
        b.at(g1, 1),
    );
    let ipf = b.set(
        "ipfilter-net0",
        SetScope::Guest(100),
        "g100-ipfilter-net0",
        &["192.0.2.100", "2001:db8:1::100"],
        b.at(g1, 3),
    );
    b.guest(
        200,
        GuestKind::Ct,
        "hv1",
        &[(
            "vmbr0",
            "0e:00:00:00:c8:00",
            &["192.0.2.200/24", "2001:db8:1::200/64"],
        )],
        b.at(g2, 1),
    );
    {
        let n = b.node_mut("hv1");
        n.firewall.blacklist = Some(bl);
        n.firewall.options.tcpflags = true;
        n.firewall.options.protection_synflood = true;
        n.firewall.options.log_level_in = LogLevel::Info;
    }
    let hr = vec![
        rule(b.at(h, 3), Direction::In, Action::Accept)
            .tcp(8080)
            .log(LogLevel::Info),
        rule(b.at(c, 10), Direction::In, Action::Reject).udp(5353),
    ];
    b.node_mut("hv1").firewall.rules = hr;
    let r100 = vec![
        rule(b.at(g1, 8), Direction::In, Action::Accept)
            .tcp(22)
            .source(list(&["192.0.2.10"])),
        rule(b.at(g1, 9), Direction::In, Action::Accept).tcp(80),
        rule(b.at(g1, 10), Direction::In, Action::Reject).udp(161),
        rule(b.at(g1, 11), Direction::In, Action::Accept).icmp(true, "echo-request", 128),
        rule(b.at(g1, 12), Direction::Out, Action::Drop)
            .tcp(25)
            .log(LogLevel::Warning),
    ];
    {
        let g = b.guest_mut(100);
        g.rules = r100;
        g.nics[0].ipfilter = Some(ipf);
        g.options.ipfilter = true;
        g.options.ndp = true;
    }
    let r200 = vec![rule(b.at(g2, 8), Direction::In, Action::Drop)
        .tcp(80)
        .source(AddrMatch::Set(office))];
    {
        let g = b.guest_mut(200);
        g.rules = r200;
        g.options.ndp = true;
        g.options.policy_in = Action::Accept;
    }
    b.build()
}

//! Deterministic synthetic sites for benchmarks and tests.
//!
//! [`generate`] turns a [`GenParams`] (nodes, guests, rules per guest, seed)
//! into a [`SiteFiles`] map: `site.toml`, `firewall/cluster.fw`,
//! `nodes/<node>/host.fw` and one `firewall/<vmid>.fw` per guest, all in the
//! Proxmox VE firewall format. [`generate_pve_tree`] gives the same site as a
//! bare `/etc/pve` tree (`corosync.conf` and guest `.conf` files instead of
//! `site.toml`). The same parameters always give the same bytes; nothing here
//! reads a clock, the environment or the file system.
//!
//! Everything generated is meant to be *valid*: only real macros (as spelled
//! in the macro table), ports 1-65535, CIDRs without host bits, one address
//! family per rule, every alias/ipset/group defined before anyone needs it,
//! `-i netN` only for NICs the guest has, guests only on bridges their node
//! has. The mix is what a real cluster looks like: security groups, the
//! `management` and `blacklist` sets (the blacklist scales with the site and
//! has `!nomatch` holes), per-guest `ipfilter-netN` sets, aliases, IPv6,
//! ICMP types, port ranges and lists, address ranges and lists, logging,
//! disabled rules and comments.
//!
//! Address plan (documentation and private ranges only):
//! - node `pveN` (N = 1..) bridge `vmbr0`: a block of `10.0.0.0/9` (a /24
//!   unless more guests per node need more room) and `2001:db8:N::/64`
//!   (N in hex); the node is `.2` / `::2`; guests from `.10` / `::100`.
//! - bridge `vmbr1` (internal, no node address): the same block in
//!   `10.128.0.0/9`, used by guests that have a second NIC.
//! - node public endpoints in `198.18.0.0/15`; admin networks in
//!   `192.168.100.0/23` and `fd00:ad::/32`; offices in `198.51.100.0/24` and
//!   `2001:db8:ffff::/48`; tenants in `100.64.0.0/10`.

mod rng;

use rampart_types::SiteFiles;
use rng::Rng;
use std::collections::HashSet;
use std::fmt::{self, Write as _};
use std::net::{Ipv4Addr, Ipv6Addr};

/// What to generate. The same value always produces the same site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenParams {
    /// Number of nodes (`pve1`, `pve2`, ...), at least 1.
    pub nodes: u32,
    /// Number of guests (VM ids from 100), spread round-robin over the nodes.
    pub guests: u32,
    /// Exact number of rule lines in each guest's `[RULES]` section
    /// (`GROUP` lines and disabled `|` rules count; comments do not).
    pub rules_per_guest: u32,
    pub seed: u64,
}

impl Default for GenParams {
    fn default() -> Self {
        GenParams {
            nodes: 3,
            guests: 12,
            rules_per_guest: 10,
            seed: 1,
        }
    }
}

/// Largest accepted values (the address plan runs out beyond them).
pub const MAX_NODES: u32 = 32_768;
pub const MAX_GUESTS: u32 = 4_000_000;
pub const MAX_RULES_PER_GUEST: u32 = 2_000;

/// Parameters the generator cannot honour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GenError {
    NoNodes,
    TooManyNodes(u32),
    TooManyGuests(u32),
    TooManyRules(u32),
    /// The nodes' address blocks do not fit in 10.0.0.0/9.
    AddressSpace {
        nodes: u32,
        guests_per_node: u32,
    },
}

impl fmt::Display for GenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GenError::NoNodes => write!(f, "a site needs at least one node"),
            GenError::TooManyNodes(n) => write!(f, "{n} nodes: at most {MAX_NODES} are supported"),
            GenError::TooManyGuests(n) => {
                write!(f, "{n} guests: at most {MAX_GUESTS} are supported")
            }
            GenError::TooManyRules(n) => write!(
                f,
                "{n} rules per guest: at most {MAX_RULES_PER_GUEST} are supported"
            ),
            GenError::AddressSpace {
                nodes,
                guests_per_node,
            } => write!(
                f,
                "{nodes} nodes with {guests_per_node} guests each do not fit in 10.0.0.0/9"
            ),
        }
    }
}

impl std::error::Error for GenError {}

/// Generate a whole site. See the crate documentation for what it contains.
pub fn generate(p: &GenParams) -> Result<SiteFiles, GenError> {
    generate_as(p, Layout::SiteToml)
}

/// The same site as [`generate`] (identical `.fw` files), laid out as a bare
/// Proxmox VE `/etc/pve` tree: no `site.toml`, but `corosync.conf` (nodes and
/// their `ring0_addr`) and `nodes/<node>/qemu-server/<vmid>.conf` /
/// `nodes/<node>/lxc/<vmid>.conf` for every guest. VM `.conf` files carry no
/// addresses (as in Proxmox); container ones carry `ip=`/`ip6=`.
pub fn generate_pve_tree(p: &GenParams) -> Result<SiteFiles, GenError> {
    generate_as(p, Layout::PveTree)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    SiteToml,
    PveTree,
}

fn generate_as(p: &GenParams, layout: Layout) -> Result<SiteFiles, GenError> {
    let plan = Plan::new(p)?;
    let mut rng = Rng::new(p.seed);
    let guests = plan_guests(p, &plan, &mut rng);
    let cluster = Cluster::new(p, &guests);

    let mut files = SiteFiles::new();
    match layout {
        Layout::SiteToml => files.insert("site.toml", site_toml(p, &plan, &guests)),
        Layout::PveTree => {
            files.insert("corosync.conf", corosync_conf(p, &plan));
            for g in &guests {
                let (dir, text) = match g.kind {
                    Kind::Vm => ("qemu-server", vm_conf(g)),
                    Kind::Ct => ("lxc", ct_conf(g, &plan)),
                };
                files.insert(
                    format!("nodes/{}/{dir}/{}.conf", node_name(g.node), g.id),
                    text,
                );
            }
        }
    }
    files.insert("firewall/cluster.fw", cluster.render(p, &plan, &mut rng));
    for n in 0..p.nodes {
        files.insert(
            format!("nodes/{}/host.fw", node_name(n)),
            host_fw(n, p, &plan, &mut rng),
        );
    }
    for g in &guests {
        files.insert(
            format!("firewall/{}.fw", g.id),
            guest_fw(g, p, &plan, &cluster, &guests, &mut rng),
        );
    }
    Ok(files)
}

// ---------------------------------------------------------------------------
// Address plan

struct Plan {
    /// Addresses per node block (a power of two, at least 256).
    block: u32,
    prefix: u8,
}

const V4_PUBLIC_BASE: u32 = 0x0A00_0000; // 10.0.0.0/9
const V4_INTERNAL_BASE: u32 = 0x0A80_0000; // 10.128.0.0/9
const GUEST_HOST_OFFSET: u32 = 10;

impl Plan {
    fn new(p: &GenParams) -> Result<Plan, GenError> {
        if p.nodes == 0 {
            return Err(GenError::NoNodes);
        }
        if p.nodes > MAX_NODES {
            return Err(GenError::TooManyNodes(p.nodes));
        }
        if p.guests > MAX_GUESTS {
            return Err(GenError::TooManyGuests(p.guests));
        }
        if p.rules_per_guest > MAX_RULES_PER_GUEST {
            return Err(GenError::TooManyRules(p.rules_per_guest));
        }
        let per_node = p.guests.div_ceil(p.nodes);
        let need = per_node + GUEST_HOST_OFFSET + 2;
        let block = need.next_power_of_two().max(256);
        if (p.nodes as u64) * (block as u64) > (1u64 << 23) {
            return Err(GenError::AddressSpace {
                nodes: p.nodes,
                guests_per_node: per_node,
            });
        }
        Ok(Plan {
            block,
            prefix: 32 - block.trailing_zeros() as u8,
        })
    }

    fn net4(&self, node: u32) -> Ipv4Addr {
        Ipv4Addr::from(V4_PUBLIC_BASE + node * self.block)
    }
    fn node4(&self, node: u32) -> Ipv4Addr {
        Ipv4Addr::from(V4_PUBLIC_BASE + node * self.block + 2)
    }
    fn guest4(&self, node: u32, local: u32) -> Ipv4Addr {
        Ipv4Addr::from(V4_PUBLIC_BASE + node * self.block + GUEST_HOST_OFFSET + local)
    }
    fn internal_net4(&self, node: u32) -> Ipv4Addr {
        Ipv4Addr::from(V4_INTERNAL_BASE + node * self.block)
    }
    fn internal4(&self, node: u32, local: u32) -> Ipv4Addr {
        Ipv4Addr::from(V4_INTERNAL_BASE + node * self.block + GUEST_HOST_OFFSET + local)
    }
    fn net6(&self, node: u32) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, (node + 1) as u16, 0, 0, 0, 0, 0)
    }
    fn node6(&self, node: u32) -> Ipv6Addr {
        Ipv6Addr::new(0x2001, 0xdb8, (node + 1) as u16, 0, 0, 0, 0, 2)
    }
    fn guest6(&self, node: u32, local: u32) -> Ipv6Addr {
        let host = 0x100 + local;
        Ipv6Addr::new(
            0x2001,
            0xdb8,
            (node + 1) as u16,
            0,
            0,
            0,
            (host >> 16) as u16,
            host as u16,
        )
    }
    fn endpoint(&self, node: u32) -> Ipv4Addr {
        Ipv4Addr::from(0xC612_0000 + node + 1) // 198.18.0.0/15
    }
}

fn node_name(n: u32) -> String {
    format!("pve{}", n + 1)
}

// ---------------------------------------------------------------------------
// Guests

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Vm,
    Ct,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Web,
    Db,
    Mail,
    Dns,
    App(u32),
    Plain,
}

struct Nic {
    n: u32,
    bridge: &'static str,
    mac: [u8; 6],
    v4: Ipv4Addr,
    prefix: u8,
    v6: Option<Ipv6Addr>,
    firewall: bool,
}

struct Guest {
    id: u32,
    kind: Kind,
    node: u32,
    nics: Vec<Nic>,
    role: Role,
    enabled: bool,
    monitored: bool,
}

fn app_groups(p: &GenParams) -> u32 {
    (p.guests / 200).max(1)
}

fn app_aliases(p: &GenParams) -> u32 {
    (p.guests / 20).max(1)
}

fn plan_guests(p: &GenParams, plan: &Plan, rng: &mut Rng) -> Vec<Guest> {
    let mut out = Vec::with_capacity(p.guests as usize);
    for idx in 0..p.guests {
        let node = idx % p.nodes;
        let local = idx / p.nodes;
        let kind = if rng.chance(30) { Kind::Ct } else { Kind::Vm };
        let mac = |nic: u32| {
            let v = idx * 2 + nic;
            [0xBC, 0x24, 0x11, (v >> 16) as u8, (v >> 8) as u8, v as u8]
        };
        let mut nics = vec![Nic {
            n: 0,
            bridge: "vmbr0",
            mac: mac(0),
            v4: plan.guest4(node, local),
            prefix: plan.prefix,
            v6: Some(plan.guest6(node, local)),
            firewall: !rng.chance(2),
        }];
        if rng.chance(25) {
            nics.push(Nic {
                n: 1,
                bridge: "vmbr1",
                mac: mac(1),
                v4: plan.internal4(node, local),
                prefix: plan.prefix,
                v6: None,
                firewall: true,
            });
        }
        let role = match rng.below(100) {
            0..=29 => Role::Web,
            30..=44 => Role::Db,
            45..=49 => Role::Mail,
            50..=54 => Role::Dns,
            55..=79 => Role::App(idx % app_groups(p)),
            _ => Role::Plain,
        };
        out.push(Guest {
            id: 100 + idx,
            kind,
            node,
            nics,
            role,
            enabled: !rng.chance(3),
            monitored: rng.chance(50),
        });
    }
    out
}

fn mac_str(m: &[u8; 6]) -> String {
    format!(
        "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

// ---------------------------------------------------------------------------
// site.toml

fn site_toml(p: &GenParams, plan: &Plan, guests: &[Guest]) -> String {
    let mut s = String::with_capacity(200 * (p.nodes + p.guests) as usize);
    let _ = writeln!(
        s,
        "# Generated by rampart-gen: nodes={} guests={} rules_per_guest={} seed={}\n",
        p.nodes, p.guests, p.rules_per_guest, p.seed
    );
    for n in 0..p.nodes {
        let _ = writeln!(
            s,
            "[[node]]\nname = \"{}\"\nendpoint = \"{}\"\nbridges = {{ vmbr0 = [\"{}/{}\", \"{}/64\"], vmbr1 = [] }}\n",
            node_name(n),
            plan.endpoint(n),
            plan.node4(n),
            plan.prefix,
            plan.node6(n)
        );
    }
    for g in guests {
        let _ = writeln!(
            s,
            "[[guest]]\nid = {}\nkind = \"{}\"\nnode = \"{}\"\nnics = [",
            g.id,
            match g.kind {
                Kind::Vm => "vm",
                Kind::Ct => "ct",
            },
            node_name(g.node)
        );
        for nic in &g.nics {
            let mut addrs = format!("\"{}/{}\"", nic.v4, nic.prefix);
            if let Some(v6) = nic.v6 {
                let _ = write!(addrs, ", \"{v6}/64\"");
            }
            let _ = writeln!(
                s,
                "  {{ name = \"net{}\", bridge = \"{}\", mac = \"{}\", addresses = [{}], firewall = {} }},",
                nic.n,
                nic.bridge,
                mac_str(&nic.mac),
                addrs,
                nic.firewall
            );
        }
        s.push_str("]\n\n");
    }
    s
}

// ---------------------------------------------------------------------------
// /etc/pve files: corosync.conf, qemu-server/*.conf, lxc/*.conf

fn corosync_conf(p: &GenParams, plan: &Plan) -> String {
    let mut s = String::with_capacity(128 * p.nodes as usize + 512);
    s.push_str("logging {\n  debug: off\n  to_syslog: yes\n}\n\nnodelist {\n");
    for n in 0..p.nodes {
        let _ = writeln!(
            s,
            "  node {{\n    name: {}\n    nodeid: {}\n    quorum_votes: 1\n    ring0_addr: {}\n  }}",
            node_name(n),
            n + 1,
            plan.node4(n)
        );
    }
    s.push_str(
        "}\n\nquorum {\n  provider: corosync_votequorum\n}\n\n\
         totem {\n  cluster_name: rampart-gen\n  config_version: 1\n  interface {\n    linknumber: 0\n  }\n  \
         ip_version: ipv4-6\n  link_mode: passive\n  secauth: on\n  version: 2\n}\n",
    );
    s
}

fn vm_conf(g: &Guest) -> String {
    let mut s = format!(
        "boot: order=scsi0;net0\ncores: 2\nmemory: 2048\nname: vm{}\n",
        g.id
    );
    for nic in &g.nics {
        let _ = writeln!(
            s,
            "net{}: virtio={},bridge={},firewall={}",
            nic.n,
            mac_str(&nic.mac),
            nic.bridge,
            u8::from(nic.firewall)
        );
    }
    let _ = write!(
        s,
        "ostype: l26\nscsi0: local-lvm:vm-{}-disk-0,iothread=1,size=32G\nscsihw: virtio-scsi-single\nsockets: 1\n",
        g.id
    );
    s
}

fn ct_conf(g: &Guest, plan: &Plan) -> String {
    let mut s = format!("arch: amd64\ncores: 1\nhostname: ct{}\nmemory: 512\n", g.id);
    for nic in &g.nics {
        let _ = write!(
            s,
            "net{}: name=eth{},bridge={},firewall={}",
            nic.n,
            nic.n,
            nic.bridge,
            u8::from(nic.firewall)
        );
        if nic.n == 0 {
            let gw = Ipv4Addr::from(u32::from(plan.net4(g.node)) + 1);
            let gw6 = Ipv6Addr::from(u128::from(plan.net6(g.node)) + 1);
            let _ = write!(s, ",gw={gw},gw6={gw6}");
        }
        let _ = write!(
            s,
            ",hwaddr={},ip={}/{}",
            mac_str(&nic.mac),
            nic.v4,
            nic.prefix
        );
        if let Some(v6) = nic.v6 {
            let _ = write!(s, ",ip6={v6}/64");
        }
        s.push_str(",type=veth\n");
    }
    let _ = write!(
        s,
        "ostype: debian\nrootfs: local-lvm:vm-{}-disk-0,size=8G\nswap: 512\nunprivileged: 1\n",
        g.id
    );
    s
}

// ---------------------------------------------------------------------------
// cluster.fw

/// Cluster-wide aliases: (name, address, comment).
const CLUSTER_ALIASES: &[(&str, &str, &str)] = &[
    ("jumphost", "192.168.101.10", "bastion for the admins"),
    ("jumphost6", "fd00:ad::10", "bastion, IPv6"),
    ("monitor", "192.168.101.20", "prometheus + alertmanager"),
    ("monitor6", "fd00:ad::20", "prometheus, IPv6"),
    ("log_host", "192.168.101.14", "central syslog"),
    ("mail_relay", "192.168.101.25", "outbound smarthost"),
    ("backup_server", "192.168.101.30", "Proxmox Backup Server"),
    ("ldap_server", "192.168.101.38", "directory"),
    ("dns_resolver", "192.168.101.53", "recursive resolver"),
    ("dns_resolver6", "fd00:ad::53", "recursive resolver, IPv6"),
    ("ntp_server", "192.168.101.123", "stratum 2"),
    ("office_net", "198.51.100.0/24", "head office"),
    ("office_net6", "2001:db8:ffff::/48", "head office, IPv6"),
    ("site_net", "10.0.0.0/9", "every vmbr0 network of the site"),
];

struct Cluster {
    /// `app<k>` alias -> guest address.
    app_alias: Vec<Ipv4Addr>,
    tenants: u32,
}

impl Cluster {
    fn new(p: &GenParams, guests: &[Guest]) -> Cluster {
        let app_alias = (0..app_aliases(p))
            .map(|k| {
                guests
                    .get((k * 20) as usize)
                    .map(|g| g.nics[0].v4)
                    .unwrap_or(Ipv4Addr::new(192, 168, 101, 200))
            })
            .collect();
        Cluster {
            app_alias,
            tenants: (p.nodes / 10).max(1),
        }
    }

    fn render(&self, p: &GenParams, plan: &Plan, rng: &mut Rng) -> String {
        let mut s = String::with_capacity(64 * 1024);
        let _ = writeln!(
            s,
            "# Datacenter firewall, generated by rampart-gen (seed {}).\n",
            p.seed
        );
        s.push_str(
            "[OPTIONS]\n\
             # the cluster is firewalled; hosts and guests opt in with their own enable\n\
             enable: 1\n\
             policy_in: DROP\n\
             policy_out: ACCEPT\n\
             log_ratelimit: enable=1,rate=10/second,burst=20\n\
             ebtables: 1\n\n",
        );

        s.push_str("[ALIASES]\n");
        for (name, addr, comment) in CLUSTER_ALIASES {
            let _ = writeln!(s, "{name} {addr} # {comment}");
        }
        for (k, a) in self.app_alias.iter().enumerate() {
            let _ = writeln!(s, "app{k} {a}");
        }
        s.push('\n');

        s.push_str(
            "[IPSET management] # admins may reach the GUI, SSH, VNC and SPICE\n\
             192.168.100.0/25 # admin LAN\n\
             !192.168.100.66 # kiosk PC in the admin LAN\n\
             fd00:ad:0:100::/64 # admin LAN, IPv6\n\
             jumphost\n\n",
        );

        s.push_str("[IPSET monitoring]\nmonitor\nmonitor6\n\n");

        s.push_str("[IPSET pve_nodes] # every node's address on vmbr0\n");
        for n in 0..p.nodes {
            let _ = writeln!(s, "{}\n{}", plan.node4(n), plan.node6(n));
        }
        s.push('\n');

        for t in 0..self.tenants {
            let _ = writeln!(s, "[IPSET tenant{t}] # customer networks (CGNAT)");
            let mut seen = HashSet::new();
            for _ in 0..rng.range(4, 12) {
                let plen = rng.range(24, 29) as u32;
                let raw = 0x6440_0000 | (rng.next_u64() as u32 & 0x003f_ffff); // 100.64.0.0/10
                let net = raw & (u32::MAX << (32 - plen));
                if seen.insert(net) {
                    let _ = writeln!(s, "{}/{}", Ipv4Addr::from(net), plen);
                    if plen <= 26 && rng.chance(30) {
                        let hole = net | (rng.range(1, 30) as u32);
                        let _ = writeln!(s, "!{} # not this one", Ipv4Addr::from(hole));
                    }
                }
            }
            s.push('\n');
        }

        blacklist(&mut s, p, rng);

        render_groups(&mut s, p, self);

        s.push_str(
            "[RULES]\n\
             # management access to every node\n\
             IN SSH(ACCEPT) -source +management\n\
             IN ACCEPT -source +management -p tcp -dport 8006 # web GUI and API\n\
             IN ACCEPT -source +management -p tcp -dport 5900:5999 # VNC consoles\n\
             IN SPICEproxy(ACCEPT) -source +management\n\
             IN SSH(ACCEPT) -source jumphost6 -log info\n\
             # cluster traffic\n\
             IN ACCEPT -source +pve_nodes -p udp -dport 5404:5405 # corosync\n\
             IN ACCEPT -source +pve_nodes -p tcp -dport 60000:60050 # live migration\n\
             IN Ceph(ACCEPT) -source site_net\n\
             # diagnostics\n\
             IN Ping(ACCEPT) -source office_net\n\
             IN ACCEPT -p icmp -icmp-type echo-request -source site_net\n\
             IN ACCEPT -p icmpv6 -icmp-type echo-request -source office_net6\n\
             IN ACCEPT -p icmpv6 -icmp-type packet-too-big\n\
             IN NeighborDiscovery(ACCEPT)\n\
             IN ACCEPT -source 192.168.101.20-192.168.101.29 -p tcp -dport 9100 # node exporter\n\
             IN ACCEPT -source 198.51.100.7,198.51.100.8,198.51.100.9 -p tcp -dport 8007,8443 # vendor support\n\
             |IN ACCEPT -p tcp -dport 3128 # old proxy, kept for reference\n\
             IN REJECT -p tcp -dport 25 -log info # nodes never receive mail\n\
             # what the nodes may reach\n\
             OUT DNS(ACCEPT) -dest dns_resolver\n\
             OUT DNS(ACCEPT) -dest dns_resolver6\n\
             OUT NTP(ACCEPT) -dest ntp_server\n\
             OUT Syslog(ACCEPT) -dest log_host -log nolog\n\
             OUT ACCEPT -p tcp -dport 8007 -dest backup_server # PBS\n\
             OUT ACCEPT -p udp -sport 1024:65535 -dport 161:162 -dest monitor # SNMP traps\n",
        );
        s
    }
}

/// First octets that are ordinary public unicast space (no 0, 10, 100,
/// 127, 169, 172, 192, 198, 203, multicast or reserved).
const PUBLIC_FIRST_OCTETS: &[u8] = &[
    2, 5, 23, 31, 37, 41, 45, 46, 62, 77, 78, 80, 81, 85, 89, 91, 93, 94, 95, 103, 109, 116, 118,
    121, 122, 141, 146, 151, 176, 178, 185, 188, 193, 194, 195, 200, 201, 212, 213, 217, 220, 222,
];

fn blacklist(s: &mut String, p: &GenParams, rng: &mut Rng) {
    let target = (p.nodes * 4 + p.guests / 5).max(20) as usize;
    let _ = writeln!(
        s,
        "[IPSET blacklist] # dropped everywhere: scanners, abuse reports ({target} entries)"
    );
    let mut seen: HashSet<String> = HashSet::with_capacity(target * 2);
    let mut written = 0usize;
    while written < target {
        let roll = rng.below(100);
        let a = *rng.pick(PUBLIC_FIRST_OCTETS) as u32;
        let rest = rng.next_u64() as u32 & 0x00ff_ffff;
        if roll < 70 {
            let ip = Ipv4Addr::from(a << 24 | rest | 1);
            let key = ip.to_string();
            if seen.insert(key.clone()) {
                s.push_str(&key);
                s.push('\n');
                written += 1;
            }
        } else if roll < 90 {
            let net = (a << 24 | rest) & 0xffff_ff00;
            let key = format!("{}/24", Ipv4Addr::from(net));
            if seen.insert(key.clone()) {
                s.push_str(&key);
                if rng.chance(20) {
                    s.push_str(" # abuse report");
                }
                s.push('\n');
                written += 1;
                if rng.chance(25) {
                    // a customer inside the blocked network
                    let hole = Ipv4Addr::from(net | rng.range(1, 254) as u32);
                    let hkey = hole.to_string();
                    if seen.insert(hkey.clone()) {
                        let _ = writeln!(s, "!{hkey} # customer, not blocked");
                        written += 1;
                    }
                }
            }
        } else {
            let v = rng.next_u64();
            let net = Ipv6Addr::new(
                0x2a02 + (v & 0xf) as u16,
                (v >> 8) as u16,
                (v >> 24) as u16,
                0,
                0,
                0,
                0,
                0,
            );
            let key = format!("{net}/48");
            if seen.insert(key.clone()) {
                s.push_str(&key);
                s.push('\n');
                written += 1;
            }
        }
    }
    s.push('\n');
}

/// Security groups: (name, comment, rules, service keys the group takes).
struct Group {
    name: String,
    lines: Vec<String>,
    keys: Vec<String>,
}

fn fixed_groups() -> Vec<Group> {
    let g = |name: &str, lines: &[&str], keys: &[&str]| Group {
        name: name.to_string(),
        lines: lines.iter().map(|l| l.to_string()).collect(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
    };
    vec![
        g(
            "webserver",
            &[
                "IN HTTP(ACCEPT)",
                "IN HTTPS(ACCEPT)",
                "IN HTTP/3(ACCEPT) # QUIC",
            ],
            &["in/tcp/80", "in/tcp/443", "in/udp/443"],
        ),
        g(
            "dbserver",
            &[
                "IN PostgreSQL(ACCEPT) -source site_net",
                "IN MySQL(ACCEPT) -source site_net -log nolog",
            ],
            &["in/tcp/5432", "in/tcp/3306"],
        ),
        g(
            "mailserver",
            &[
                "IN SMTP(ACCEPT)",
                "IN Submission(ACCEPT)",
                "IN IMAPS(ACCEPT)",
                "IN POP3S(ACCEPT)",
                "OUT SMTP(ACCEPT) # delivers directly",
            ],
            &[
                "in/tcp/25",
                "in/tcp/587",
                "in/tcp/993",
                "in/tcp/995",
                "out/tcp/25",
            ],
        ),
        g(
            "dnsserver",
            &[
                "IN DNS(ACCEPT) -source site_net",
                "IN DNS(ACCEPT) -source office_net6",
                "OUT DNS(ACCEPT)",
            ],
            &["in/udp/53", "in/tcp/53", "out/udp/53", "out/tcp/53"],
        ),
        g(
            "monitoring",
            &[
                "IN ACCEPT -p tcp -dport 9100 -source +monitoring # node exporter",
                "IN SNMP(ACCEPT) -source monitor",
                "IN Ping(ACCEPT) -source +monitoring",
            ],
            &[
                "in/tcp/9100",
                "in/udp/161",
                "in/tcp/161",
                "in/icmp/echo-request",
                "in/icmpv6/echo-request",
            ],
        ),
        g(
            "ssh_admin",
            &[
                "IN SSH(ACCEPT) -source +management -log info",
                "IN SSH(ACCEPT) -source jumphost6",
            ],
            &["in/tcp/22"],
        ),
    ]
}

fn app_group(k: u32, c: &Cluster) -> Group {
    let port = 33000 + (k % 900) * 10;
    let peer = k % c.app_alias.len() as u32;
    Group {
        name: format!("app{k}"),
        lines: vec![
            format!("IN ACCEPT -p tcp -dport {port} -source site_net # app{k} API"),
            format!(
                "IN ACCEPT -p tcp -dport {}:{} -source office_net # app{k} admin",
                port + 1,
                port + 5
            ),
            format!("OUT ACCEPT -p tcp -dport 5432 -dest app{peer} # app{k} database"),
        ],
        keys: vec![
            format!("in/tcp/{port}"),
            format!("in/tcp/{}", port + 1),
            "out/tcp/5432".to_string(),
        ],
    }
}

fn render_groups(s: &mut String, p: &GenParams, c: &Cluster) {
    for g in fixed_groups()
        .into_iter()
        .chain((0..app_groups(p)).map(|k| app_group(k, c)))
    {
        let _ = writeln!(s, "[group {}]", g.name);
        for l in &g.lines {
            s.push_str(l);
            s.push('\n');
        }
        s.push('\n');
    }
}

// ---------------------------------------------------------------------------
// host.fw

fn host_fw(n: u32, p: &GenParams, plan: &Plan, rng: &mut Rng) -> String {
    let mut s = String::with_capacity(1024);
    let _ = writeln!(s, "# Host firewall of {}\n", node_name(n));
    s.push_str("[OPTIONS]\nenable: 1\n");
    let _ = writeln!(
        s,
        "log_level_in: {}",
        rng.pick(&["nolog", "info", "warning"])
    );
    s.push_str("log_level_out: nolog\nnosmurfs: 1\n");
    let _ = writeln!(s, "tcpflags: {}", u8::from(rng.chance(70)));
    s.push_str("ndp: 1\nnf_conntrack_max: 262144\nnf_conntrack_tcp_timeout_established: 432000\n");
    if rng.chance(50) {
        s.push_str(
            "protection_synflood: 1\nprotection_synflood_rate: 200\nprotection_synflood_burst: 1000\n",
        );
    }
    if rng.chance(30) {
        s.push_str("nf_conntrack_helpers: ftp,tftp\n");
    }
    s.push('\n');

    s.push_str("[RULES]\n");
    let peer = (n + 1) % p.nodes;
    let _ = writeln!(
        s,
        "IN ACCEPT -source {}/{} -p tcp -dport 3260 # iSCSI from the local segment",
        plan.net4(n),
        plan.prefix
    );
    if peer != n {
        let _ = writeln!(
            s,
            "IN ACCEPT -source {} -p tcp -dport 873 # rsync replication from {}",
            plan.node4(peer),
            node_name(peer)
        );
    }
    let _ = writeln!(
        s,
        "IN ACCEPT -i vmbr0 -source {}/64 -p tcp -dport 8006 # GUI from the local IPv6 segment",
        plan.net6(n)
    );
    s.push_str("OUT PBS(ACCEPT) -dest backup_server\n");
    s.push_str("IN REJECT -p tcp -dport 111 -log info # rpcbind is not for anyone\n");
    s.push_str("|IN ACCEPT -p tcp -dport 8006 # open the GUI to the world (never)\n");
    s
}

// ---------------------------------------------------------------------------
// <vmid>.fw

/// Macros guests accept inbound: (name, service keys it takes).
const IN_MACROS: &[(&str, &[&str])] = &[
    ("SSH", &["in/tcp/22"]),
    ("HTTP", &["in/tcp/80"]),
    ("HTTPS", &["in/tcp/443"]),
    ("MySQL", &["in/tcp/3306"]),
    ("PostgreSQL", &["in/tcp/5432"]),
    ("Rsync", &["in/tcp/873"]),
    ("Munin", &["in/tcp/4949"]),
    ("Webmin", &["in/tcp/10000"]),
    ("RDP", &["in/tcp/3389"]),
    ("VNC", &["in/tcp/5900"]),
    ("Git", &["in/tcp/9418"]),
    ("LDAP", &["in/tcp/389"]),
    ("LDAPS", &["in/tcp/636"]),
    ("IMAPS", &["in/tcp/993"]),
    ("Submission", &["in/tcp/587"]),
    ("Mail", &["in/tcp/25", "in/tcp/465", "in/tcp/587"]),
    ("NTP", &["in/udp/123"]),
    ("Syslog", &["in/udp/514", "in/tcp/514"]),
    ("Squid", &["in/tcp/3128"]),
    ("Webcache", &["in/tcp/8080"]),
    ("BGP", &["in/tcp/179"]),
    ("OpenVPN", &["in/udp/1194"]),
    ("MDNS", &["in/udp/5353"]),
    ("Jetdirect", &["in/tcp/9100"]),
    ("SNMP", &["in/udp/161", "in/tcp/161"]),
    ("DNS", &["in/udp/53", "in/tcp/53"]),
];

/// An outbound macro: (name, service keys, usual IPv4 peer alias, usual IPv6 peer alias).
type OutMacro = (
    &'static str,
    &'static [&'static str],
    Option<&'static str>,
    Option<&'static str>,
);

/// Outbound macros with the alias each usually talks to (v4, v6).
const OUT_MACROS: &[OutMacro] = &[
    (
        "DNS",
        &["out/udp/53", "out/tcp/53"],
        Some("dns_resolver"),
        Some("dns_resolver6"),
    ),
    ("NTP", &["out/udp/123"], Some("ntp_server"), None),
    ("HTTP", &["out/tcp/80"], None, None),
    ("HTTPS", &["out/tcp/443"], None, None),
    ("SMTP", &["out/tcp/25"], Some("mail_relay"), None),
    (
        "Syslog",
        &["out/udp/514", "out/tcp/514"],
        Some("log_host"),
        None,
    ),
    ("PBS", &["out/tcp/8007"], Some("backup_server"), None),
    ("LDAPS", &["out/tcp/636"], Some("ldap_server"), None),
];

const COMMENTS: &[&str] = &[
    "ticket OPS-1142",
    "requested by the app team",
    "temporary, review in Q3",
    "see wiki: firewall conventions",
    "keep in sync with the load balancer",
    "vendor access",
    "monitoring",
];

const LOG_LEVELS: &[&str] = &["info", "notice", "warning", "err", "debug", "nolog"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fam {
    Any,
    V4,
    V6,
}

struct GuestCtx<'a> {
    g: &'a Guest,
    plan: &'a Plan,
    cluster: &'a Cluster,
    has_peer_alias: bool,
    has_clients_set: bool,
}

impl GuestCtx<'_> {
    /// A source (or destination) address expression and its family.
    fn address(&self, rng: &mut Rng, want: Fam) -> (String, Fam) {
        loop {
            let (text, fam) = match rng.below(17) {
                0 => ("+management".to_string(), Fam::Any),
                1 => ("+dc/management".to_string(), Fam::Any),
                2 => ("jumphost".to_string(), Fam::V4),
                3 => ("dc/monitor".to_string(), Fam::V4),
                4 => ("office_net".to_string(), Fam::V4),
                5 => (
                    format!("{}/{}", self.plan.net4(self.g.node), self.plan.prefix),
                    Fam::V4,
                ),
                6 => (
                    format!("app{}", rng.below(self.cluster.app_alias.len() as u64)),
                    Fam::V4,
                ),
                7 if self.has_peer_alias => ("peer_db".to_string(), Fam::V4),
                8 if self.has_clients_set => ("+allowed_clients".to_string(), Fam::Any),
                9 if self.has_clients_set => ("+guest/allowed_clients".to_string(), Fam::Any),
                10 => {
                    let a = rng.range(10, 100);
                    (
                        format!("198.51.100.{a}-198.51.100.{}", a + rng.range(1, 50)),
                        Fam::V4,
                    )
                }
                11 => {
                    let a = rng.range(1, 200);
                    (
                        format!("198.51.100.{a},198.51.100.{},198.51.100.{}", a + 1, a + 7),
                        Fam::V4,
                    )
                }
                12 => (
                    format!("+tenant{}", rng.below(self.cluster.tenants as u64)),
                    Fam::Any,
                ),
                13 => ("office_net6".to_string(), Fam::V6),
                14 => (format!("{}/64", self.plan.net6(self.g.node)), Fam::V6),
                15 => {
                    let a = rng.range(0x10, 0xff);
                    (
                        format!("2001:db8:ffff::{a:x},2001:db8:ffff::{:x}", a + 0x100),
                        Fam::V6,
                    )
                }
                16 => {
                    let a = rng.range(0x100, 0x1ff);
                    (
                        format!("2001:db8:ffff::{a:x}-2001:db8:ffff::{:x}", a + 0x20),
                        Fam::V6,
                    )
                }
                _ => continue,
            };
            let ok = match want {
                Fam::Any => true,
                Fam::V4 => fam == Fam::V4,
                Fam::V6 => fam == Fam::V6,
            };
            if ok {
                return (text, fam);
            }
        }
    }

    fn iface(&self, rng: &mut Rng) -> String {
        let nic = rng.pick(&self.g.nics);
        format!(" -i net{}", nic.n)
    }
}

/// An address from public space that no accept rule of the site uses.
fn scanner_source(rng: &mut Rng) -> String {
    let a = *rng.pick(PUBLIC_FIRST_OCTETS) as u32;
    let rest = rng.next_u64() as u32 & 0x00ff_ffff;
    match rng.below(4) {
        0 => format!("{}/24", Ipv4Addr::from((a << 24 | rest) & 0xffff_ff00)),
        1 => {
            let base = (a << 24 | rest) & 0xffff_ff00;
            format!(
                "{}-{}",
                Ipv4Addr::from(base | 10),
                Ipv4Addr::from(base | 40)
            )
        }
        2 => {
            let v = rng.next_u64();
            format!("2a02:{:x}:{:x}::/48", (v >> 8) as u16, (v >> 24) as u16)
        }
        _ => Ipv4Addr::from(a << 24 | rest | 1).to_string(),
    }
}

fn fresh_port(rng: &mut Rng, used: &HashSet<String>, dir: &str, proto: &str) -> u32 {
    loop {
        let p = rng.range(20000, 32000) as u32;
        if !used.contains(&format!("{dir}/{proto}/{p}")) {
            return p;
        }
    }
}

fn take(used: &mut HashSet<String>, keys: &[String]) -> bool {
    if keys.iter().any(|k| used.contains(k)) {
        return false;
    }
    for k in keys {
        used.insert(k.clone());
    }
    true
}

fn guest_rule(
    rng: &mut Rng,
    cx: &GuestCtx,
    used: &mut HashSet<String>,
    groups_left: &mut Vec<Group>,
) -> Option<String> {
    let mut line = match rng.below(100) {
        // a security group
        0..=9 => {
            if groups_left.is_empty() {
                return None;
            }
            let g = groups_left.remove(rng.below(groups_left.len() as u64) as usize);
            if !take(used, &g.keys) {
                return None;
            }
            let mut l = format!("GROUP {}", g.name);
            if rng.chance(20) {
                l.push_str(" -i net0");
            }
            l
        }
        // an inbound macro
        10..=34 => {
            let (m, keys) = *rng.pick(IN_MACROS);
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            if !take(used, &keys) {
                return None;
            }
            let mut l = format!("IN {m}(ACCEPT)");
            if rng.chance(30) {
                l.push_str(&cx.iface(rng));
            }
            if rng.chance(85) {
                let (a, _) = cx.address(rng, Fam::Any);
                let _ = write!(l, " -source {a}");
            }
            if rng.chance(15) {
                let _ = write!(l, " -log {}", rng.pick(LOG_LEVELS));
            }
            l
        }
        // a plain port, sometimes a list or a range
        35..=54 => {
            let proto = if rng.chance(75) { "tcp" } else { "udp" };
            let p1 = fresh_port(rng, used, "in", proto);
            let mut keys = vec![format!("in/{proto}/{p1}")];
            let ports = match rng.below(10) {
                0..=5 => p1.to_string(),
                6 | 7 => {
                    let p2 = fresh_port(rng, used, "in", proto);
                    if p2 == p1 {
                        return None;
                    }
                    keys.push(format!("in/{proto}/{p2}"));
                    format!("{p1},{p2}")
                }
                _ => {
                    let a = 40000 + rng.below(900) as u32 * 10;
                    keys = vec![format!("in/{proto}/r{a}")];
                    format!("{a}:{}", a + 9)
                }
            };
            if !take(used, &keys) {
                return None;
            }
            let mut l = String::from("IN ACCEPT");
            if rng.chance(20) {
                l.push_str(&cx.iface(rng));
            }
            let _ = write!(l, " -p {proto} -dport {ports}");
            if rng.chance(80) {
                let (a, _) = cx.address(rng, Fam::Any);
                let _ = write!(l, " -source {a}");
            }
            if rng.chance(10) {
                l.push_str(" -sport 1024:65535");
            }
            if rng.chance(15) {
                let _ = write!(l, " -log {}", rng.pick(LOG_LEVELS));
            }
            l
        }
        // ICMP by type, per family
        55..=60 => {
            let v6 = rng.chance(40);
            let ty = if v6 {
                *rng.pick(&["echo-request", "packet-too-big", "time-exceeded"])
            } else {
                *rng.pick(&["echo-request", "destination-unreachable", "time-exceeded"])
            };
            let proto = if v6 { "icmpv6" } else { "icmp" };
            if !take(used, &[format!("in/{proto}/{ty}")]) {
                return None;
            }
            let mut l = format!("IN ACCEPT -p {proto} -icmp-type {ty}");
            if rng.chance(60) {
                let (a, _) = cx.address(rng, if v6 { Fam::V6 } else { Fam::V4 });
                let _ = write!(l, " -source {a}");
            }
            l
        }
        61..=63 => {
            if !take(
                used,
                &[
                    "in/icmp/echo-request".to_string(),
                    "in/icmpv6/echo-request".to_string(),
                ],
            ) {
                return None;
            }
            "IN Ping(ACCEPT)".to_string()
        }
        // drop or reject a source
        64..=70 => {
            // sources nobody accepts elsewhere, so the drop shadows no later rule
            let a = scanner_source(rng);
            if !take(used, &[format!("in/drop/{a}")]) {
                return None;
            }
            let act = if rng.chance(70) { "DROP" } else { "REJECT" };
            format!("IN {act} -source {a} -log warning")
        }
        71..=73 => {
            let p = fresh_port(rng, used, "in", "tcp");
            if !take(used, &[format!("in/tcp/{p}")]) {
                return None;
            }
            format!("IN REJECT -p tcp -dport {p} -log info")
        }
        // the internal NIC
        74..=78 => {
            let nic = cx.g.nics.iter().find(|n| n.n == 1)?;
            let p = fresh_port(rng, used, "in", "tcp");
            if !take(used, &[format!("in/tcp/{p}")]) {
                return None;
            }
            format!(
                "IN ACCEPT -i net1 -p tcp -dport {p} -source {}/{}",
                cx.plan.internal_net4(cx.g.node),
                nic.prefix
            )
        }
        // outbound macros
        79..=87 => {
            let (m, keys, d4, d6) = *rng.pick(OUT_MACROS);
            let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
            if !take(used, &keys) {
                return None;
            }
            let mut l = format!("OUT {m}(ACCEPT)");
            let dest = match (d4, d6) {
                (Some(a), Some(b)) => Some(if rng.chance(50) { a } else { b }),
                (Some(a), None) => Some(a),
                _ => None,
            };
            if let Some(d) = dest {
                let _ = write!(l, " -dest {d}");
            }
            l
        }
        // outbound plain ports
        88..=91 => {
            let k = rng.below(cx.cluster.app_alias.len() as u64);
            let p = fresh_port(rng, used, "out", "tcp");
            if !take(used, &[format!("out/tcp/{p}")]) {
                return None;
            }
            format!("OUT ACCEPT -p tcp -dport {p} -dest app{k}")
        }
        92 | 93 => {
            if !take(used, &["out/tcp/25".to_string()]) {
                return None;
            }
            "OUT REJECT -p tcp -dport 25 -log info # no direct mail, use mail_relay".to_string()
        }
        // service names
        94 | 95 => {
            let (name, port) = *rng.pick(&[("ssh", 22u32), ("http", 80), ("https", 443)]);
            if !take(used, &[format!("in/tcp/{port}")]) {
                return None;
            }
            let (a, _) = cx.address(rng, Fam::Any);
            format!("IN ACCEPT -p tcp -dport {name} -source {a}")
        }
        // a disabled rule
        _ => {
            let p = fresh_port(rng, used, "in", "tcp");
            used.insert(format!("in/tcp/{p}"));
            format!("|IN ACCEPT -p tcp -dport {p} # disabled while debugging")
        }
    };
    if !line.contains('#') && rng.chance(15) {
        let _ = write!(line, " # {}", rng.pick(COMMENTS));
    }
    Some(line)
}

fn role_group(g: &Guest) -> Option<String> {
    match g.role {
        Role::Web => Some("webserver".into()),
        Role::Db => Some("dbserver".into()),
        Role::Mail => Some("mailserver".into()),
        Role::Dns => Some("dnsserver".into()),
        Role::App(k) => Some(format!("app{k}")),
        Role::Plain => None,
    }
}

fn guest_fw(
    g: &Guest,
    p: &GenParams,
    plan: &Plan,
    cluster: &Cluster,
    guests: &[Guest],
    rng: &mut Rng,
) -> String {
    let mut s = String::with_capacity(512 + 80 * p.rules_per_guest as usize);
    let _ = writeln!(
        s,
        "# {} {} on {}\n",
        match g.kind {
            Kind::Vm => "VM",
            Kind::Ct => "CT",
        },
        g.id,
        node_name(g.node)
    );

    // options
    s.push_str("[OPTIONS]\n");
    if !g.enabled {
        s.push_str("# firewall switched off while the app team debugs\n");
    }
    let _ = writeln!(s, "enable: {}", u8::from(g.enabled));
    let _ = writeln!(
        s,
        "policy_in: {}",
        match rng.below(100) {
            0..=79 => "DROP",
            80..=94 => "REJECT",
            _ => "ACCEPT",
        }
    );
    let _ = writeln!(
        s,
        "policy_out: {}",
        if rng.chance(90) { "ACCEPT" } else { "REJECT" }
    );
    let ipfilter = rng.chance(60);
    let _ = writeln!(s, "ipfilter: {}", u8::from(ipfilter));
    let _ = writeln!(s, "macfilter: {}", u8::from(!rng.chance(10)));
    let _ = writeln!(s, "dhcp: {}", u8::from(rng.chance(40)));
    s.push_str("ndp: 1\n");
    if rng.chance(5) {
        s.push_str("radv: 1\n");
    }
    let _ = writeln!(
        s,
        "log_level_in: {}",
        rng.pick(&["nolog", "nolog", "info", "warning"])
    );
    s.push_str("log_level_out: nolog\n");
    // No `ips: 1` here: the nftables backend refuses it (fails closed) on
    // kernels without nft `queue`, such as the CI machine's, and a benchmark
    // site must compile everywhere. examples/homelab shows the option.
    s.push('\n');

    // aliases and sets of this guest
    let has_peer_alias = rng.chance(20) && !guests.is_empty();
    if has_peer_alias {
        let peer = rng.pick(guests);
        let _ = writeln!(
            s,
            "[ALIASES]\npeer_db {} # the database this guest talks to (vm {})\n",
            peer.nics[0].v4, peer.id
        );
    }
    if ipfilter {
        for nic in &g.nics {
            let _ = writeln!(
                s,
                "[IPSET ipfilter-net{}] # only these addresses may leave net{}",
                nic.n, nic.n
            );
            let _ = writeln!(s, "{}", nic.v4);
            if let Some(v6) = nic.v6 {
                let _ = writeln!(s, "{v6}");
            }
            s.push('\n');
        }
    }
    let has_clients_set = rng.chance(15);
    if has_clients_set {
        s.push_str("[IPSET allowed_clients] # partners that may use the service\n");
        let j0 = rng.range(0, 10) as u32;
        for j in j0..j0 + rng.range(2, 5) as u32 {
            let _ = writeln!(s, "203.0.113.{}/28", j * 16);
        }
        s.push_str("jumphost\n");
        let _ = writeln!(s, "2001:db8:ffff:{:x}::/64", rng.range(1, 0xfff));
        s.push('\n');
    }

    // rules
    let cx = GuestCtx {
        g,
        plan,
        cluster,
        has_peer_alias,
        has_clients_set,
    };
    let mut used: HashSet<String> = HashSet::new();
    let mut lines: Vec<String> = Vec::with_capacity(p.rules_per_guest as usize);
    let mut groups_left: Vec<Group> = Vec::new();
    // the role's group comes first, as admins usually write it
    if let Some(name) = role_group(g) {
        if p.rules_per_guest > 0 {
            let grp = match g.role {
                Role::App(k) => app_group(k, cluster),
                _ => fixed_groups().into_iter().find(|x| x.name == name).unwrap(),
            };
            take(&mut used, &grp.keys);
            lines.push(format!("GROUP {name}"));
        }
    }
    if g.monitored && (lines.len() as u32) < p.rules_per_guest {
        let grp = fixed_groups()
            .into_iter()
            .find(|x| x.name == "monitoring")
            .unwrap();
        take(&mut used, &grp.keys);
        lines.push("GROUP monitoring".into());
    }
    groups_left.extend(
        fixed_groups()
            .into_iter()
            .filter(|x| x.name == "ssh_admin" || x.name == "dnsserver"),
    );
    let mut attempts = 0u32;
    let mut count = lines.len() as u32;
    while count < p.rules_per_guest {
        attempts += 1;
        let line = if attempts > p.rules_per_guest * 20 + 100 {
            // always possible: a disabled rule on a fresh port
            let port = fresh_port(rng, &used, "in", "tcp");
            used.insert(format!("in/tcp/{port}"));
            Some(format!("|IN ACCEPT -p tcp -dport {port} # parked"))
        } else {
            guest_rule(rng, &cx, &mut used, &mut groups_left)
        };
        if let Some(l) = line {
            if rng.chance(8) {
                lines.push(format!("# {}", rng.pick(COMMENTS)));
                // comments do not count: keep going until enough rules
            }
            lines.push(l);
            count += 1;
        }
    }
    s.push_str("[RULES]\n");
    for l in lines {
        s.push_str(&l);
        s.push('\n');
    }
    s
}

//! iptables backend: compiles one node of a resolved [`ir::Site`] into
//!
//! - an `iptables-restore` file (IPv4) and an `ip6tables-restore` file (IPv6),
//!   in the format hosts like XCP-ng keep in `/etc/sysconfig/iptables`;
//! - an `ipset restore` script holding every set the rules match against;
//! - the sysctls the plan needs.
//!
//! Pure: no I/O. See `docs/iptables-backend.md` for the chain layout.
//!
//! Two modes ([`Mode`]):
//! - [`Mode::Noflush`] (default, coexistence): the files only declare
//!   rampart's own chains (`RAMPART-*`), meant for `iptables-restore
//!   --noflush`; declaring a chain flushes it, so the chains are replaced
//!   atomically per table while the chains of other tools (Docker, libvirt,
//!   fail2ban) survive. The single jump from each built-in chain is in
//!   [`IptPlan::hooks`]: the applier checks it with `-C` and inserts it at
//!   the top with `-I` when missing.
//! - [`Mode::Full`]: the files replace the `filter` and `raw` tables
//!   wholesale (built-in chains with an ACCEPT policy plus the jumps), as a
//!   file written to `/etc/sysconfig/iptables` and loaded by plain
//!   `iptables-restore`.

use rampart_resolve::ir::{self, AddrMatch, Platform};
use rampart_types::{
    codes, Action, Diagnostic, Diagnostics, Direction, Family, IpRange, LogLevel, Proto,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;

mod extras;
pub use extras::{Extras, WgPort};
mod profile;
pub use profile::add_profile;

/// NFLOG group every log rule sends to.
pub const NFLOG_GROUP: u16 = 0;
/// Prefix of every chain rampart owns.
pub const PREFIX: &str = "RAMPART-";
/// iptables chain names are at most 28 characters.
const MAX_CHAIN: usize = 28;
/// ipset names are at most 31 characters; rampart keeps 2 for the `-T`
/// suffix of the temporary set it swaps in.
const MAX_SET: usize = 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    /// Only rampart's chains; load with `iptables-restore --noflush`.
    #[default]
    Noflush,
    /// Whole `filter` and `raw` tables, `/etc/sysconfig/iptables` style.
    Full,
}

/// A jump from a built-in chain into rampart's chain (noflush mode).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub table: &'static str,
    pub chain: &'static str,
    pub target: String,
}

impl Hook {
    /// `-t TABLE -C CHAIN -j TARGET`: succeeds when the jump is present.
    pub fn check_args(&self) -> Vec<String> {
        self.args("-C", None)
    }
    /// `-t TABLE -I CHAIN 1 -j TARGET`.
    pub fn insert_args(&self) -> Vec<String> {
        self.args("-I", Some("1"))
    }
    fn args(&self, op: &str, pos: Option<&str>) -> Vec<String> {
        let mut v = vec!["-t".into(), self.table.into(), op.into(), self.chain.into()];
        if let Some(p) = pos {
            v.push(p.into());
        }
        v.extend(["-j".into(), self.target.clone()]);
        v
    }
}

/// Everything one node needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IptPlan {
    pub node: String,
    pub mode: Mode,
    /// `iptables-restore` input.
    pub v4: String,
    /// `ip6tables-restore` input.
    pub v6: String,
    /// `ipset restore` input; load it before the rules.
    pub ipsets: String,
    /// `(key, value)` for `sysctl -w key=value`, sorted by key.
    pub sysctls: Vec<(String, String)>,
    /// Jumps to ensure in both families (noflush mode; empty in full mode).
    pub hooks: Vec<Hook>,
    /// Kernel modules to load before the rules (`modprobe`), sorted:
    /// `br_netfilter`, `nfnetlink_queue` with IPS guests, the conntrack
    /// helpers' modules.
    pub modules: Vec<String>,
}

/// The guest (0 for the node) and Proxmox's name of one of rampart's
/// chains, for the log prefix: `RAMPART-HOST-IN` -> `PVEFW-HOST-IN`,
/// `RAMPART-tap100i0-IN` -> (100, `tap100i0-IN`).
fn pve_log_chain(chain: &str) -> (u32, String) {
    use rampart_types::fwlog;
    let c = chain.strip_prefix(PREFIX).unwrap_or(chain);
    match c {
        "HOST-IN" => return (0, fwlog::HOST_IN.into()),
        "HOST-OUT" => return (0, fwlog::HOST_OUT.into()),
        "HOST-FWD" => return (0, fwlog::HOST_FORWARD.into()),
        _ => {}
    }
    let vmid = ["tap", "veth"]
        .iter()
        .find_map(|k| c.strip_prefix(k))
        .and_then(|r| r.split('i').next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    (vmid, c.to_string())
}

/// Compile in [`Mode::Noflush`].
pub fn compile(site: &ir::Site, node: &str) -> Result<IptPlan, Diagnostics> {
    compile_with(site, node, Mode::Noflush)
}

pub fn compile_with(site: &ir::Site, node: &str, mode: Mode) -> Result<IptPlan, Diagnostics> {
    compile_with_extras(site, node, mode, &Extras::default())
}

/// [`compile_with`], plus the rules of `extras` (WireGuard listen ports and
/// forwarding; see the `extras` module).
pub fn compile_with_extras(
    site: &ir::Site,
    node: &str,
    mode: Mode,
    extras: &Extras,
) -> Result<IptPlan, Diagnostics> {
    let Some(n) = site.node(node) else {
        let mut d = Diagnostics::new();
        d.push(Diagnostic::new(
            codes::UNKNOWN_NODE,
            format!("no node named `{node}` in the site"),
        ));
        return Err(d);
    };
    let mut sets = SetTable::default();
    let mut diags = Diagnostics::new();
    let mut out = [String::new(), String::new()];
    let mut hooks = Vec::new();
    for (i, fam) in Family::both().into_iter().enumerate() {
        let mut c = Compiler {
            site,
            node: n,
            fam,
            sets: &mut sets,
            diags: &mut diags,
            chains: Vec::new(),
            raw: Vec::new(),
            extras,
        };
        c.build();
        let (text, h) = c.render(mode);
        out[i] = text;
        if i == 0 {
            hooks = h;
        }
    }
    if diags.has_errors() {
        diags.sort();
        return Err(diags);
    }
    let o = &n.firewall.options;
    let mut sysctls = vec![
        (
            "net.bridge.bridge-nf-call-ip6tables".to_string(),
            "1".to_string(),
        ),
        (
            "net.bridge.bridge-nf-call-iptables".to_string(),
            "1".to_string(),
        ),
        (
            "net.netfilter.nf_conntrack_max".to_string(),
            o.nf_conntrack_max.to_string(),
        ),
        (
            "net.netfilter.nf_conntrack_tcp_timeout_established".to_string(),
            o.nf_conntrack_tcp_timeout_established.to_string(),
        ),
        (
            "net.netfilter.nf_conntrack_tcp_timeout_syn_recv".to_string(),
            o.nf_conntrack_tcp_timeout_syn_recv.to_string(),
        ),
    ];
    sysctls.sort();
    let mut modules = vec!["br_netfilter".to_string()];
    if site.guests_on(node).any(|g| g.enabled && g.options.ips) {
        modules.push("nfnetlink_queue".into());
    }
    if n.firewall.enabled || site.guests_on(node).any(|g| g.enabled) {
        for h in &o.nf_conntrack_helpers {
            modules.push(format!("nf_conntrack_{h}"));
        }
    }
    modules.sort();
    modules.dedup();
    let [v4, v6] = out;
    Ok(IptPlan {
        node: node.to_string(),
        mode,
        v4,
        v6,
        ipsets: sets.render(),
        sysctls,
        hooks,
        modules,
    })
}

// ---------------------------------------------------------------- ipsets

#[derive(Default)]
struct SetTable {
    /// name -> (family, entries)
    sets: BTreeMap<String, (Family, Vec<(IpRange, bool)>)>,
    by_id: BTreeMap<(u32, Family), Option<String>>,
    lists: BTreeMap<(Family, Vec<IpRange>), String>,
    /// The Proxmox name of a set whose kernel name does not show it (long
    /// names are hashed), by kernel name: written as a comment line.
    proxmox_names: BTreeMap<String, String>,
}

fn fnv(s: &str) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in s.bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

fn fam_suffix(f: Family) -> &'static str {
    match f {
        Family::V4 => "4",
        Family::V6 => "6",
    }
}

impl SetTable {
    /// The ipset holding `id`'s entries of family `f`; `None` when it has none.
    fn for_set(&mut self, site: &ir::Site, id: ir::SetId, f: Family) -> Option<String> {
        if let Some(n) = self.by_id.get(&(id.0, f)) {
            return n.clone();
        }
        let set = site.set(id);
        let entries: Vec<(IpRange, bool)> =
            set.entries_of(f).map(|e| (e.range, e.nomatch)).collect();
        let name = if entries.iter().any(|(_, nomatch)| !nomatch) {
            let kn = &set.kernel_name;
            let base = if kn.len() + 2 <= MAX_SET {
                kn.to_string()
            } else {
                format!("{}-{:06x}", &kn[..MAX_SET - 9], fnv(kn) & 0xffffff)
            };
            let name = format!("{base}-{}", fam_suffix(f));
            if !name.contains(set.name.as_str()) && !matches!(set.scope, ir::SetScope::Node(_)) {
                self.proxmox_names
                    .insert(name.clone(), set.name.to_string());
            }
            self.sets.insert(name.clone(), (f, entries));
            Some(name)
        } else {
            None
        };
        self.by_id.insert((id.0, f), name.clone());
        name
    }

    fn for_list(&mut self, f: Family, ranges: &[IpRange]) -> String {
        let key = (f, ranges.to_vec());
        if let Some(n) = self.lists.get(&key) {
            return n.clone();
        }
        let name = format!("rampart-l{}-{}", self.lists.len(), fam_suffix(f));
        self.sets.insert(
            name.clone(),
            (f, ranges.iter().map(|r| (*r, false)).collect()),
        );
        self.lists.insert(key, name.clone());
        name
    }

    fn render(&self) -> String {
        let mut s = String::from(
            "# rampart ipsets: each set is filled under a temporary name and swapped in.\n",
        );
        for (name, (f, entries)) in &self.sets {
            let family = match f {
                Family::V4 => "inet",
                Family::V6 => "inet6",
            };
            if let Some(p) = self.proxmox_names.get(name) {
                let _ = writeln!(s, "# {name}: ipset {p}");
            }
            let maxelem = (entries.len() * 2).max(65536);
            let tmp = format!("{name}-T");
            for n in [name, &tmp] {
                let _ = writeln!(
                    s,
                    "create {n} hash:net family {family} hashsize 1024 maxelem {maxelem} -exist"
                );
            }
            let _ = writeln!(s, "flush {tmp}");
            for (r, nomatch) in entries {
                for part in set_entry_parts(r) {
                    let _ = writeln!(
                        s,
                        "add {tmp} {part}{}",
                        if *nomatch { " nomatch" } else { "" }
                    );
                }
            }
            let _ = writeln!(s, "swap {tmp} {name}");
            let _ = writeln!(s, "destroy {tmp}");
        }
        s
    }
}

/// hash:net takes CIDRs with a prefix of at least 1 and plain ranges; a /0
/// becomes its two halves.
fn set_entry_parts(r: &IpRange) -> Vec<String> {
    match r.as_net() {
        Some(n) if n.prefix_len() == 0 => match n {
            ipnet::IpNet::V4(_) => vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()],
            ipnet::IpNet::V6(_) => vec!["::/1".into(), "8000::/1".into()],
        },
        Some(n) => vec![if n.prefix_len() == n.max_prefix_len() {
            n.addr().to_string()
        } else {
            n.to_string()
        }],
        None => vec![format!("{}-{}", r.start, r.end)],
    }
}

// ---------------------------------------------------------------- rules

struct Compiler<'a> {
    site: &'a ir::Site,
    node: &'a ir::Node,
    fam: Family,
    sets: &'a mut SetTable,
    diags: &'a mut Diagnostics,
    /// filter table chains in declaration order.
    chains: Vec<(String, Vec<String>)>,
    /// raw table rules of RAMPART-PREROUTING / RAMPART-OUTPUT.
    raw: Vec<String>,
    /// Rules from outside the firewall files (WireGuard).
    extras: &'a Extras,
}

/// A filtered guest NIC.
struct FNic<'a> {
    guest: &'a ir::Guest,
    nic: &'a ir::Nic,
}

impl FNic<'_> {
    fn chain(&self, side: &str) -> String {
        format!("{PREFIX}{}-{side}", self.nic.ifname)
    }
}

/// What an ACCEPT means in a chain.
#[derive(Clone)]
enum Accept {
    /// Terminal accept (or the IPS queue).
    Target(String),
    /// The caller continues with the next stage.
    Return,
}

impl Accept {
    fn target(&self) -> &str {
        match self {
            Accept::Target(t) => t,
            Accept::Return => "RETURN",
        }
    }
}

fn quote(s: &str) -> String {
    // One token iptables-restore cannot end early: no `"`, `\`, control
    // or non-ASCII characters (rampart_types::escape::ipt_quoted).
    rampart_types::escape::ipt_quoted(s, 250)
}

fn ports_arg(ps: &[rampart_types::PortRange]) -> String {
    ps.iter()
        .map(|p| {
            if p.lo == p.hi {
                p.lo.to_string()
            } else {
                format!("{}:{}", p.lo, p.hi)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Split a port list in groups multiport accepts (15 slots, a range takes 2).
fn port_groups(ps: &[rampart_types::PortRange]) -> Vec<Vec<rampart_types::PortRange>> {
    let mut out: Vec<Vec<rampart_types::PortRange>> = Vec::new();
    let mut cur = Vec::new();
    let mut used = 0;
    for p in ps {
        let w = if p.lo == p.hi { 1 } else { 2 };
        if used + w > 15 {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(*p);
        used += w;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl<'a> Compiler<'a> {
    fn v6(&self) -> bool {
        self.fam == Family::V6
    }

    fn comment(&self, origin: &rampart_types::Origin) -> String {
        format!(
            "-m comment --comment {}",
            quote(&origin.render(&self.site.sources))
        )
    }

    fn chain(&mut self, name: &str) {
        if !self.chains.iter().any(|(n, _)| n == name) {
            self.chains.push((name.to_string(), Vec::new()));
        }
    }

    fn push(&mut self, chain: &str, matches: &str, origin: &rampart_types::Origin, target: &str) {
        let c = self.comment(origin);
        let line = if matches.is_empty() {
            format!("-A {chain} {c} -j {target}")
        } else {
            format!("-A {chain} {matches} {c} -j {target}")
        };
        self.chain(chain);
        self.chains
            .iter_mut()
            .find(|(n, _)| n == chain)
            .unwrap()
            .1
            .push(line);
    }

    fn auto(&mut self, chain: &str, matches: &str, what: &str, target: &str) {
        self.push(chain, matches, &rampart_types::Origin::auto(what), target);
    }

    fn icmp6(&self, ty: &str) -> String {
        format!("-p ipv6-icmp -m icmp6 --icmpv6-type {ty}")
    }

    fn reject_chain(&self) -> String {
        format!("{PREFIX}REJECT")
    }

    fn limit(&self) -> String {
        let l = &self.site.cluster.log_ratelimit;
        if l.enable {
            format!(
                " -m limit --limit {}/{} --limit-burst {}",
                l.rate,
                l.unit,
                l.burst.max(1)
            )
        } else {
            String::new()
        }
    }

    /// An NFLOG target with pve-firewall's prefix (`:VMID:LEVEL:CHAIN:
    /// VERDICT: ORIGIN `, see `rampart_types::fwlog`) for a rule of
    /// rampart's `chain`, named by Proxmox's chain.
    fn log_target(&self, chain: &str, verdict: &str, origin: &str, level: LogLevel) -> String {
        let (vmid, pve) = pve_log_chain(chain);
        let p = rampart_types::fwlog::prefix(
            vmid,
            level.syslog().unwrap_or(6),
            &pve,
            verdict,
            origin,
            rampart_types::escape::IPT_LOG_PREFIX_MAX,
        );
        format!(
            "NFLOG --nflog-group {NFLOG_GROUP} --nflog-prefix {}",
            rampart_types::escape::ipt_quoted(&p, rampart_types::escape::IPT_LOG_PREFIX_MAX)
        )
    }

    fn filtered_nics(&self) -> Vec<FNic<'a>> {
        let site: &'a ir::Site = self.site;
        let mut guests: Vec<&ir::Guest> = site
            .guests_on(&self.node.name)
            .filter(|g| g.enabled)
            .collect();
        guests.sort_by_key(|g| g.id);
        let mut v = Vec::new();
        for g in guests {
            let mut nics: Vec<&ir::Nic> = g.nics.iter().filter(|n| n.firewall).collect();
            nics.sort_by_key(|n| n.index);
            for nic in nics {
                v.push(FNic { guest: g, nic });
            }
        }
        v
    }

    fn not_expressible(&mut self, origin: &rampart_types::Origin, what: String) {
        let mut d = Diagnostic::new(
            codes::NOT_EXPRESSIBLE,
            format!("the iptables backend cannot express this: {what}"),
        )
        .label(format!("rule at {}", origin.render(&self.site.sources)));
        if let Some(span) = origin.span() {
            d = d.at(span);
        }
        self.diags.push(d);
    }

    fn queue_target(&mut self, g: &ir::Guest) -> Option<String> {
        if !g.options.ips {
            return None;
        }
        let t = match g.options.ips_queues {
            None => "NFQUEUE --queue-num 0 --queue-bypass".to_string(),
            Some((a, b)) if a == b => format!("NFQUEUE --queue-num {a} --queue-bypass"),
            Some((a, b)) if a < b => format!("NFQUEUE --queue-balance {a}:{b} --queue-bypass"),
            Some((a, b)) => {
                if self.fam == Family::V4 {
                    self.not_expressible(
                        &g.origin,
                        format!("ips_queues {a}:{b} is a backwards range"),
                    );
                }
                return None;
            }
        };
        Some(t)
    }

    /// Address match for one side; `Err(())` when the rule cannot match in
    /// this family (a set without entries of the family).
    fn addr(&mut self, m: &AddrMatch, dir: &str) -> Result<String, ()> {
        let opt = if dir == "src" { "-s" } else { "-d" };
        match m {
            AddrMatch::Set(id) => match self.sets.for_set(self.site, *id, self.fam) {
                Some(name) => Ok(format!("-m set --match-set {name} {dir}")),
                None => Err(()),
            },
            AddrMatch::List(ranges) => {
                let ranges: Vec<IpRange> = ranges
                    .iter()
                    .filter(|r| r.family() == self.fam)
                    .copied()
                    .collect();
                match ranges.as_slice() {
                    [] => Err(()),
                    [r] => match r.as_net() {
                        Some(n) => Ok(format!("{opt} {n}")),
                        None => {
                            let o = if dir == "src" {
                                "--src-range"
                            } else {
                                "--dst-range"
                            };
                            Ok(format!("-m iprange {o} {}-{}", r.start, r.end))
                        }
                    },
                    _ => {
                        let name = self.sets.for_list(self.fam, &ranges);
                        Ok(format!("-m set --match-set {name} {dir}"))
                    }
                }
            }
        }
    }

    /// The match parts of a rule (one string per emitted rule: port lists
    /// longer than multiport takes give several). Empty: cannot match here.
    fn rule_matches(&mut self, r: &ir::Rule, iface_opt: Option<&str>) -> Vec<String> {
        if let Some(f) = r.family {
            if f != self.fam {
                return Vec::new();
            }
        }
        let mut base = Vec::new();
        if let (Some(i), Some(opt)) = (&r.iface, iface_opt) {
            base.push(format!("{opt} {i}"));
        }
        for (m, dir) in [(&r.source, "src"), (&r.dest, "dst")] {
            if let Some(m) = m {
                match self.addr(m, dir) {
                    Ok(s) => base.push(s),
                    Err(()) => return Vec::new(),
                }
            }
        }
        let mut multi = false;
        if let Some(p) = &r.proto {
            match p {
                Proto::Tcp => base.push("-p tcp".into()),
                Proto::Udp => base.push("-p udp".into()),
                Proto::Icmp => base.push("-p icmp".into()),
                Proto::Icmpv6 => base.push("-p ipv6-icmp".into()),
                Proto::Other { number, .. } => {
                    base.push(format!("-p {number}"));
                    multi = true;
                }
            }
            if let Some(t) = &r.icmp_type {
                let code = t.code.map(|c| format!("/{c}")).unwrap_or_default();
                if *p == Proto::Icmp {
                    base.push(format!("-m icmp --icmp-type {}{code}", t.ty));
                } else {
                    base.push(format!("-m icmp6 --icmpv6-type {}{code}", t.ty));
                }
            }
        }
        let base = base.join(" ");
        if r.dport.is_empty() && r.sport.is_empty() {
            return vec![base];
        }
        let port_part = |ps: &[rampart_types::PortRange], which: &str| -> Vec<String> {
            if ps.is_empty() {
                return vec![String::new()];
            }
            if ps.len() == 1 && !multi {
                return vec![format!("--{which}port {}", ports_arg(ps))];
            }
            port_groups(ps)
                .iter()
                .map(|g| format!("-m multiport --{which}ports {}", ports_arg(g)))
                .collect()
        };
        let mut v = Vec::new();
        for s in port_part(&r.sport, "s") {
            for d in port_part(&r.dport, "d") {
                let parts: Vec<&str> = [base.as_str(), s.as_str(), d.as_str()]
                    .into_iter()
                    .filter(|x| !x.is_empty())
                    .collect();
                v.push(parts.join(" "));
            }
        }
        v
    }

    /// Emit a user rule into `chain`.
    fn user_rule(&mut self, chain: &str, r: &ir::Rule, iface_opt: Option<&str>, accept: &Accept) {
        let target = match r.action {
            Action::Accept => accept.target().to_string(),
            Action::Drop => "DROP".into(),
            Action::Reject => self.reject_chain(),
        };
        for m in self.rule_matches(r, iface_opt) {
            if r.log != LogLevel::Nolog {
                let lim = self.limit();
                let origin = r.origin.render(&self.site.sources);
                let t = self.log_target(chain, &r.action.to_string(), &origin, r.log);
                self.push(chain, format!("{m}{lim}").trim(), &r.origin, &t);
            }
            self.push(chain, &m, &r.origin, &target);
        }
    }

    fn policy(&mut self, chain: &str, action: Action, log: LogLevel, what: &str, accept: &Accept) {
        if log != LogLevel::Nolog {
            let lim = self.limit();
            let t = self.log_target(chain, &format!("policy {action}"), what, log);
            self.auto(chain, lim.trim(), what, &t);
        }
        match action {
            Action::Accept => {
                if let Accept::Target(t) = accept {
                    let t = t.clone();
                    self.auto(chain, "", what, &t);
                }
            }
            Action::Drop => self.auto(chain, "", what, "DROP"),
            Action::Reject => {
                let rc = self.reject_chain();
                self.auto(chain, "", what, &rc)
            }
        }
    }

    fn build(&mut self) {
        let node = self.node;
        let host_on = node.firewall.enabled;
        let nics = self.filtered_nics();
        let active = host_on || !nics.is_empty();
        let opts = &node.firewall.options;
        let input = format!("{PREFIX}INPUT");
        let output = format!("{PREFIX}OUTPUT");
        let forward = format!("{PREFIX}FORWARD");
        let bridged = format!("{PREFIX}BRIDGED");
        for c in [&input, &output, &forward] {
            self.chain(c);
        }
        if !active {
            return;
        }
        let rc = self.reject_chain();
        self.chain(&rc);
        self.auto(
            &rc,
            "-p tcp",
            "auto:reject",
            "REJECT --reject-with tcp-reset",
        );
        let unreach = if self.v6() {
            "icmp6-port-unreachable"
        } else {
            "icmp-port-unreachable"
        };
        self.auto(
            &rc,
            "",
            "auto:reject",
            &format!("REJECT --reject-with {unreach}"),
        );

        // Conntrack helpers (raw table).
        for h in &opts.nf_conntrack_helpers {
            let ports: &[(&str, &str, &str)] = match h.as_str() {
                "ftp" => &[("tcp", "21", "ftp")],
                "tftp" => &[("udp", "69", "tftp")],
                "sip" => &[("udp", "5060", "sip"), ("tcp", "5060", "sip")],
                "irc" => &[("tcp", "6667", "irc")],
                "amanda" => &[("udp", "10080", "amanda")],
                "pptp" => &[("tcp", "1723", "pptp")],
                "sane" => &[("tcp", "6566", "sane")],
                "h323" => &[("udp", "1719", "RAS"), ("tcp", "1720", "Q.931")],
                _ => {
                    if !self.v6() {
                        let o = node.origin.clone();
                        self.not_expressible(&o, format!("unknown conntrack helper `{h}`"));
                    }
                    &[]
                }
            };
            if self.v6() && h == "pptp" {
                continue; // PPTP is IPv4 only.
            }
            for (p, port, helper) in ports {
                let c = self.comment(&rampart_types::Origin::auto(format!("auto:helper-{h}")));
                for chain in ["PREROUTING", "OUTPUT"] {
                    self.raw.push(format!("-A {PREFIX}{chain} -p {p} -m {p} --dport {port} {c} -j CT --helper {helper}"));
                }
            }
        }

        let nd_types = [
            "router-solicitation",
            "router-advertisement",
            "neighbour-solicitation",
            "neighbour-advertisement",
        ];

        // ---------------------------------------------------- INPUT
        self.auto(&input, "-i lo", "auto:loopback", "ACCEPT");
        if self.v6() {
            for t in nd_types
                .iter()
                .filter(|t| t.starts_with("neigh") || !host_on || opts.ndp)
            {
                let m = self.icmp6(t);
                self.auto(&input, &m, "auto:ndp", "ACCEPT");
            }
        }
        self.conntrack(&input, opts.nf_conntrack_allow_invalid);
        for n in &nics {
            let m = format!("-m physdev --physdev-in {}", n.nic.ifname);
            self.auto(
                &input,
                &m,
                &format!("auto:{}-out", n.guest.zone()),
                &n.chain("OUT"),
            );
        }
        if host_on {
            let hin = format!("{PREFIX}HOST-IN");
            self.auto(&input, "", "auto:host-in", &hin);
            self.host_in(&hin);
        }

        // ---------------------------------------------------- OUTPUT
        self.auto(&output, "-o lo", "auto:loopback", "ACCEPT");
        if self.v6() {
            for t in nd_types
                .iter()
                .filter(|t| t.starts_with("neigh") || !host_on || opts.ndp)
            {
                let m = self.icmp6(t);
                self.auto(&output, &m, "auto:ndp", "ACCEPT");
            }
        }
        self.conntrack(&output, opts.nf_conntrack_allow_invalid);
        if host_on {
            let hout = format!("{PREFIX}HOST-OUT");
            self.auto(&output, "", "auto:host-out", &hout);
            self.host_out(&hout);
        }
        self.guest_in_by_dest(&output, &nics);
        if host_on {
            self.auto(&output, "", "auto:host-out", "ACCEPT");
        }

        // ---------------------------------------------------- FORWARD
        if self.v6() {
            // Neighbour discovery is not tracked by conntrack: decide it
            // before the INVALID check.
            let ndp = format!("{PREFIX}NDP");
            self.chain(&ndp);
            for t in nd_types {
                let m = format!("-m physdev --physdev-is-bridged {}", self.icmp6(t));
                self.auto(&forward, &m, "auto:ndp", &ndp);
            }
            for n in &nics {
                let (g, i) = (n.guest, &n.nic.ifname);
                if !g.options.radv {
                    let m = format!(
                        "-m physdev --physdev-in {i} {}",
                        self.icmp6("router-advertisement")
                    );
                    self.auto(&ndp, &m, &format!("auto:{}-radv", g.zone()), "DROP");
                }
                if !g.options.ndp {
                    // Neighbour solicitations and adverts always pass (no
                    // IPv6 without them); `ndp` gates router discovery.
                    for side in ["in", "out"] {
                        for t in ["router-solicitation", "router-advertisement"] {
                            let m = format!("-m physdev --physdev-{side} {i} {}", self.icmp6(t));
                            self.auto(&ndp, &m, &format!("auto:{}-ndp", g.zone()), "DROP");
                        }
                    }
                }
            }
            self.auto(&ndp, "", "auto:ndp", "ACCEPT");
        }
        if !opts.nf_conntrack_allow_invalid {
            self.auto(
                &forward,
                "-m conntrack --ctstate INVALID",
                "auto:conntrack",
                "DROP",
            );
        }
        for n in &nics {
            if let Some(q) = self.queue_target(n.guest) {
                for side in ["in", "out"] {
                    let m = format!("-m physdev --physdev-{side} {} --physdev-is-bridged -m conntrack --ctstate RELATED,ESTABLISHED", n.nic.ifname);
                    self.auto(&forward, &m, &format!("auto:{}-ips", n.guest.zone()), &q);
                }
            }
        }
        self.auto(
            &forward,
            "-m conntrack --ctstate RELATED,ESTABLISHED",
            "auto:conntrack",
            "ACCEPT",
        );
        self.chain(&bridged);
        self.auto(
            &forward,
            "-m physdev --physdev-is-bridged",
            "auto:bridged",
            &bridged,
        );
        for n in &nics {
            let m = format!("-m physdev --physdev-in {}", n.nic.ifname);
            self.auto(
                &forward,
                &m,
                &format!("auto:{}-out", n.guest.zone()),
                &n.chain("OUT"),
            );
        }
        if host_on {
            let hf = format!("{PREFIX}HOST-FWD");
            self.auto(&forward, "", "auto:host-forward", &hf);
            self.chain(&hf);
            let rules: Vec<&ir::Rule> = node
                .firewall
                .rules
                .iter()
                .filter(|r| r.dir == Direction::Forward)
                .collect();
            for r in rules {
                self.user_rule(&hf, r, Some("-i"), &Accept::Return);
            }
            self.wg_forward(&hf, &Accept::Return);
            let (p, l) = (node.firewall.policy_forward, opts.log_level_forward);
            self.policy(&hf, p, l, "auto:policy-forward", &Accept::Return);
        }
        self.guest_in_by_dest(&forward, &nics);
        if host_on {
            self.auto(&forward, "", "auto:host-forward", "ACCEPT");
        }

        // Bridged guest traffic: the sender's OUT chain (returns when the
        // packet may go on), then the receiver's IN chain (decides).
        for n in &nics {
            let m = format!("-m physdev --physdev-in {}", n.nic.ifname);
            self.auto(
                &bridged,
                &m,
                &format!("auto:{}-out", n.guest.zone()),
                &n.chain("OUT"),
            );
        }
        for n in &nics {
            let m = format!("-m physdev --physdev-out {}", n.nic.ifname);
            self.auto(
                &bridged,
                &m,
                &format!("auto:{}-in", n.guest.zone()),
                &n.chain("IN"),
            );
        }
        for n in &nics {
            if let Some(q) = self.queue_target(n.guest) {
                let m = format!("-m physdev --physdev-in {}", n.nic.ifname);
                self.auto(&bridged, &m, &format!("auto:{}-ips", n.guest.zone()), &q);
            }
        }
        self.auto(&bridged, "", "auto:bridged", "ACCEPT");

        for n in &nics {
            self.guest_chains(n);
        }
    }

    fn conntrack(&mut self, chain: &str, allow_invalid: bool) {
        if !allow_invalid {
            self.auto(
                chain,
                "-m conntrack --ctstate INVALID",
                "auto:conntrack",
                "DROP",
            );
        }
        self.auto(
            chain,
            "-m conntrack --ctstate RELATED,ESTABLISHED",
            "auto:conntrack",
            "ACCEPT",
        );
    }

    /// The node's own traffic to a guest (OUTPUT) and routed traffic to a
    /// guest (FORWARD) meet the guest's IN chain: the bridge port is not
    /// known to the IP layer there, so the guest is found by address.
    fn guest_in_by_dest(&mut self, chain: &str, nics: &[FNic<'a>]) {
        for n in nics {
            for a in &n.nic.addresses {
                if Family::of(&a.addr()) != self.fam {
                    continue;
                }
                let host = ipnet::IpNet::new(a.addr(), a.max_prefix_len()).unwrap();
                let m = format!("-o {} -d {host}", n.nic.bridge);
                self.auto(
                    chain,
                    &m,
                    &format!("auto:{}-in", n.guest.zone()),
                    &n.chain("IN"),
                );
            }
        }
    }

    fn host_in(&mut self, chain: &str) {
        let node = self.node;
        let opts = &node.firewall.options;
        self.chain(chain);
        if let Some(bl) = node.firewall.blacklist {
            if let Ok(m) = self.addr(&AddrMatch::Set(bl), "src") {
                self.auto(chain, &m, "auto:blacklist", "DROP");
            }
        }
        if opts.nosmurfs {
            let sm = format!("{PREFIX}SMURFS");
            self.chain(&sm);
            self.auto(chain, "-m conntrack --ctstate NEW", "auto:nosmurfs", &sm);
            if self.v6() {
                self.auto(&sm, "-s ff00::/8", "auto:nosmurfs", "DROP");
            } else {
                self.auto(&sm, "-s 0.0.0.0/32", "auto:nosmurfs", "RETURN");
                self.auto(
                    &sm,
                    "-m addrtype --src-type BROADCAST",
                    "auto:nosmurfs",
                    "DROP",
                );
                self.auto(&sm, "-s 224.0.0.0/4", "auto:nosmurfs", "DROP");
            }
        }
        if opts.tcpflags {
            let tf = format!("{PREFIX}TCPFLAGS");
            self.chain(&tf);
            self.auto(chain, "-p tcp", "auto:tcpflags", &tf);
            for (mask, set) in [
                ("FIN,SYN,RST,PSH,ACK,URG", "FIN,PSH,URG"),
                ("FIN,SYN,RST,PSH,ACK,URG", "NONE"),
                ("SYN,FIN", "SYN,FIN"),
                ("SYN,RST", "SYN,RST"),
                ("FIN,RST", "FIN,RST"),
                ("FIN,ACK", "FIN"),
                ("PSH,ACK", "PSH"),
                ("ACK,URG", "URG"),
            ] {
                let m = format!("-p tcp -m tcp --tcp-flags {mask} {set}");
                self.auto(&tf, &m, "auto:tcpflags", "DROP");
            }
        }
        if opts.protection_synflood {
            let m = format!(
                "-p tcp -m tcp --syn -m hashlimit --hashlimit-above {}/sec --hashlimit-burst {} --hashlimit-mode srcip --hashlimit-name rampart-syn",
                opts.protection_synflood_rate.max(1),
                opts.protection_synflood_burst.max(1)
            );
            self.auto(chain, &m, "auto:synflood", "DROP");
        }
        // Management services from the management set.
        let (tcp, udp): (&str, &str) = match node.platform {
            Platform::Proxmox => ("22,8006,5900:5999,3128,60000:60050", ""),
            Platform::Xcpng => ("22,443,6653,6640,5404:5405,21064", "5404:5405"),
            Platform::Linux => ("22", ""),
        };
        if let Ok(src) = self.addr(&AddrMatch::Set(node.firewall.management), "src") {
            for (p, ports) in [("tcp", tcp), ("udp", udp)] {
                if !ports.is_empty() {
                    let m = format!("-p {p} {src} -m multiport --dports {ports}");
                    self.auto(chain, &m, "auto:management", "ACCEPT");
                }
            }
        }
        let coro = self.corosync();
        if let Ok(src) = self.addr(&AddrMatch::Set(node.firewall.cluster_peers), "src") {
            for (p, ports) in coro {
                let m = format!("-p {p} {src} -m multiport --dports {ports}");
                self.auto(chain, &m, "auto:cluster", "ACCEPT");
            }
        }
        let accept = Accept::Target("ACCEPT".into());
        for r in node
            .firewall
            .rules
            .iter()
            .filter(|r| r.dir == Direction::In)
        {
            self.user_rule(chain, r, Some("-i"), &accept);
        }
        self.corosync_links(chain, true);
        self.wg_listen(chain, &accept);
        let (p, l) = (node.firewall.policy_in, opts.log_level_in);
        self.policy(chain, p, l, "auto:policy-in", &accept);
    }

    fn corosync(&self) -> Vec<(&'static str, &'static str)> {
        match self.node.platform {
            // Corosync is opened link by link (`corosync_links`).
            Platform::Proxmox => vec![],
            Platform::Xcpng => vec![("udp", "5404:5405"), ("tcp", "5404:5405,21064")],
            Platform::Linux => vec![],
        }
    }

    /// Corosync, ring by ring as pve-firewall opens it: udp 5404-5405 between
    /// this node's ring address and the peers' addresses on the same ring.
    fn corosync_links(&mut self, chain: &str, inbound: bool) {
        let node = self.node;
        if node.platform != Platform::Proxmox {
            return;
        }
        for link in &node.firewall.corosync {
            if link.local.is_ipv4() != (self.fam == Family::V4) {
                continue;
            }
            let (peer_dir, me) = if inbound {
                ("src", format!("-d {}", link.local))
            } else {
                ("dst", format!("-s {}", link.local))
            };
            if let Ok(peers) = self.addr(&AddrMatch::Set(link.peers), peer_dir) {
                let m = format!("-p udp {me} {peers} -m udp --dport 5404:5405");
                let target = if inbound { "ACCEPT" } else { "RETURN" };
                self.auto(chain, &m, "auto:corosync", target);
            }
        }
    }

    fn host_out(&mut self, chain: &str) {
        let node = self.node;
        let opts = &node.firewall.options;
        self.chain(chain);
        let coro = self.corosync();
        if let Ok(dst) = self.addr(&AddrMatch::Set(node.firewall.cluster_peers), "dst") {
            for (p, ports) in coro {
                let m = format!("-p {p} {dst} -m multiport --dports {ports}");
                self.auto(chain, &m, "auto:cluster", "RETURN");
            }
        }
        for r in node
            .firewall
            .rules
            .iter()
            .filter(|r| r.dir == Direction::Out)
        {
            self.user_rule(chain, r, Some("-o"), &Accept::Return);
        }
        self.corosync_links(chain, false);
        // pve-firewall's PVEFW-HOST-OUT: the node may reach the local
        // network's API, SSH, VNC consoles and SPICE proxy.
        if node.platform == Platform::Proxmox {
            let nets: Vec<IpRange> = node.local_network.iter().map(IpRange::from_net).collect();
            if let Ok(dst) = self.addr(&AddrMatch::List(nets), "dst") {
                let m = format!("-p tcp {dst} -m multiport --dports 22,3128,5900:5999,8006");
                self.auto(chain, &m, "auto:local_network", "RETURN");
            }
        }
        let (p, l) = (node.firewall.policy_out, opts.log_level_out);
        self.policy(chain, p, l, "auto:policy-out", &Accept::Return);
    }

    fn guest_chains(&mut self, n: &FNic<'a>) {
        let (g, nic) = (n.guest, n.nic);
        let zone = g.zone();
        let (cin, cout) = (n.chain("IN"), n.chain("OUT"));
        if cout.len() > MAX_CHAIN {
            if self.fam == Family::V4 {
                self.not_expressible(
                    &g.origin,
                    format!(
                        "interface name `{}` is too long for an iptables chain name",
                        nic.ifname
                    ),
                );
            }
            return;
        }
        self.chain(&cin);
        self.chain(&cout);
        for r in &g.rules {
            if r.dir == Direction::Forward && self.fam == Family::V4 {
                self.not_expressible(&r.origin, "a FORWARD rule on a guest".into());
            }
        }
        let accept_in = match self.queue_target(g) {
            Some(q) => Accept::Target(q),
            None => Accept::Target("ACCEPT".into()),
        };

        // IN: blacklist, DHCP answers, rules, policy.
        if let Some(bl) = self.node.firewall.blacklist {
            if let Ok(m) = self.addr(&AddrMatch::Set(bl), "src") {
                self.auto(&cin, &m, "auto:blacklist", "DROP");
            }
        }
        if g.options.dhcp {
            let m = if self.v6() {
                "-p udp -m udp --sport 547 --dport 546"
            } else {
                "-p udp -m udp --sport 67 --dport 68"
            };
            self.auto(&cin, m, &format!("auto:{zone}-dhcp"), accept_in.target());
        }
        for r in g.rules.iter().filter(|r| r.dir == Direction::In) {
            if r.iface.as_deref().is_some_and(|i| i != nic.name) {
                continue;
            }
            let mut r = r.clone();
            r.iface = None;
            self.user_rule(&cin, &r, None, &accept_in);
        }
        self.policy(
            &cin,
            g.options.policy_in,
            g.options.log_level_in,
            &format!("auto:{zone}-policy-in"),
            &accept_in,
        );

        // OUT: MAC filter, DHCP requests, IP filter, rules, policy.
        if g.options.macfilter {
            if let Some(mac) = nic.mac {
                let mac = mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":");
                let m = format!("-m mac ! --mac-source {mac}");
                self.auto(&cout, &m, &format!("auto:{zone}-macfilter"), "DROP");
            }
        }
        if g.options.dhcp {
            let m = if self.v6() {
                "-p udp -m udp --sport 546 --dport 547"
            } else {
                "-p udp -m udp --sport 68 --dport 67"
            };
            self.auto(&cout, m, &format!("auto:{zone}-dhcp"), "RETURN");
        }
        if let Some(ipf) = nic.ipfilter {
            // Sources allowed: the set, and IPv6 link-local (neighbour
            // discovery); anything else is dropped.
            let what = format!("auto:{zone}-ipfilter-{}", nic.name);
            let ipfc = n.chain("IPF");
            self.chain(&ipfc);
            self.auto(&cout, "", &what, &ipfc);
            if self.v6() {
                self.auto(&ipfc, "-s fe80::/10", &what, "RETURN");
            }
            if let Ok(m) = self.addr(&AddrMatch::Set(ipf), "src") {
                self.auto(&ipfc, &m, &what, "RETURN");
            }
            self.auto(&ipfc, "", &what, "DROP");
        }
        for r in g.rules.iter().filter(|r| r.dir == Direction::Out) {
            if r.iface.as_deref().is_some_and(|i| i != nic.name) {
                continue;
            }
            let mut r = r.clone();
            r.iface = None;
            self.user_rule(&cout, &r, None, &Accept::Return);
        }
        self.policy(
            &cout,
            g.options.policy_out,
            g.options.log_level_out,
            &format!("auto:{zone}-policy-out"),
            &Accept::Return,
        );
    }

    fn render(&self, mode: Mode) -> (String, Vec<Hook>) {
        let mut s = String::new();
        let fam = if self.v6() { "ip6tables" } else { "iptables" };
        let _ = writeln!(
            s,
            "# rampart plan for node {} ({fam}-restore{})",
            self.node.name,
            if mode == Mode::Noflush {
                " --noflush"
            } else {
                ""
            }
        );
        let mut hooks = Vec::new();
        let hook_comment = "-m comment --comment \"auto:hook\"";
        // raw
        if !self.raw.is_empty() || mode == Mode::Full {
            s.push_str("*raw\n");
            if mode == Mode::Full {
                s.push_str(":PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
            }
            for c in ["PREROUTING", "OUTPUT"] {
                let _ = writeln!(s, ":{PREFIX}{c} - [0:0]");
            }
            for c in ["PREROUTING", "OUTPUT"] {
                let target = format!("{PREFIX}{c}");
                if mode == Mode::Full {
                    let _ = writeln!(s, "-A {c} {hook_comment} -j {target}");
                } else if !self.raw.is_empty() {
                    hooks.push(Hook {
                        table: "raw",
                        chain: c,
                        target,
                    });
                }
            }
            for l in &self.raw {
                s.push_str(l);
                s.push('\n');
            }
            s.push_str("COMMIT\n");
        }
        s.push_str("*filter\n");
        if mode == Mode::Full {
            s.push_str(":INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
        }
        for (n, _) in &self.chains {
            let _ = writeln!(s, ":{n} - [0:0]");
        }
        for c in ["INPUT", "FORWARD", "OUTPUT"] {
            let target = format!("{PREFIX}{c}");
            if mode == Mode::Full {
                let _ = writeln!(s, "-A {c} {hook_comment} -j {target}");
            } else {
                hooks.push(Hook {
                    table: "filter",
                    chain: c,
                    target,
                });
            }
        }
        for (_, lines) in &self.chains {
            for l in lines {
                s.push_str(l);
                s.push('\n');
            }
        }
        s.push_str("COMMIT\n");
        (s, hooks)
    }
}

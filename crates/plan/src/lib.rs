//! One path from a site to a node plan.
//!
//! [`build`] (or [`load`] once and [`Site::build`] per node) resolves the
//! site, plans its WireGuard networks, compiles the node's ruleset for its
//! backend (nftables unless the node — or `[site] backend` — says
//! `iptables`, or [`PlanOpts::backend`] overrides it) with the WireGuard
//! listen-port and forwarding rules, adds the profiles' additions
//! ([`profile::profile_additions`]), runs the lock-out guard, and returns
//!
//! - the complete [`rampart_apply::Plan`]: ruleset (and ruleset6/ipsets for
//!   iptables), sysctls, WireGuard interfaces (key store file paths under
//!   [`PlanOpts::key_dir`], never key material), routes and policy rules;
//! - the files `rampart compile` prints or writes.
//!
//! `rampart compile`, `rampart apply`, the agent and the lab all go through
//! here, so what is applied is exactly what compile shows. Pure: no I/O.

pub mod profile;
pub mod wg;

pub use profile::{profile_additions, ProfileAdditions, ProfileInput};
pub use rampart_apply::Backend;
pub use wg::Wg;

use rampart_apply::{Plan, PolicyRule, Route, WgIface, WgPeer};
use rampart_resolve::ir;
use rampart_types::{Diagnostics, SiteFiles};
use rampart_wg::InterfacePlan;
use std::collections::BTreeMap;

/// How to build.
#[derive(Clone, Debug)]
pub struct PlanOpts {
    /// The node's WireGuard key store (default `/etc/rampart/wg`): the plan
    /// names files in it, it never holds the keys.
    pub key_dir: String,
    /// Compile for this backend instead of the node's own.
    pub backend: Option<Backend>,
    /// Turn a lock-out guard refusal into warnings (`--force`; `compile`
    /// too, which only shows the plan).
    pub force: bool,
    /// Recorded in the plan's metadata (not in its hash).
    pub origin_revision: String,
}

impl Default for PlanOpts {
    fn default() -> Self {
        PlanOpts {
            key_dir: rampart_wg::plan::DEFAULT_KEY_DIR.to_owned(),
            backend: None,
            force: false,
            origin_revision: String::new(),
        }
    }
}

/// Why a site was not turned into a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The site has errors (parse/resolve, WireGuard networks).
    Invalid,
    /// No such node, or several nodes and none named.
    NoNode,
    /// The node does not compile (or a profile refuses it).
    Compile,
    /// The lock-out guard refused the plan.
    Guard,
}

/// A site or node that must not be applied, with its diagnostics rendered.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub node: Option<String>,
    pub diagnostics: Diagnostics,
    /// `diagnostics` rendered against the site's sources (rustc-like).
    pub rendered: String,
    /// One line for logs and status.
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One node's plan, and what `rampart compile` shows of it.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub node: rampart_resolve::ir::NodeName,
    pub plan: Plan,
    /// `(file name, contents)`: the ruleset (`ruleset.nft`, or
    /// `iptables.rules` + `ip6tables.rules` + `ipset.conf`), `sysctl.conf`,
    /// per WireGuard interface `IF.conf` (wg-quick, `Table = off`, no
    /// private key) and `IF.routes`, and the profiles' files.
    pub files: Vec<(String, String)>,
    /// Warnings of this node (and, with `force`, the guard's errors).
    pub diagnostics: Diagnostics,
    /// `diagnostics` rendered.
    pub rendered: String,
    /// The guard refused and `force` overrode it.
    pub forced: bool,
    /// The nftables model of the node with every extra (WireGuard,
    /// profiles): what the lock-out guard judged and what `simulate` walks.
    /// For an iptables node it is the same policy in nftables form. Its
    /// `script` is empty for an nftables node: the text is `plan.ruleset`
    /// (and `ruleset.nft` in `files`).
    pub model: rampart_nft::Plan,
}

/// A loaded site: resolved, WireGuard planned; build nodes from it.
pub struct Site<'f> {
    pub files: &'f SiteFiles,
    pub ir: ir::Site,
    pub wg: Wg,
    pub opts: PlanOpts,
    /// Site-wide diagnostics (resolve warnings, WireGuard warnings and
    /// errors), rendered.
    pub warnings: String,
    /// What every node's [`Site::build`] shares, made on first use: the
    /// compiled sets (by set, each compiled once for the whole site) and
    /// the site's profiles. Without it, planning N nodes indexed the
    /// guests and loaded the profiles N times (`compile --all` was
    /// quadratic in the site's size).
    shared: Shared,
}

#[derive(Default)]
struct Shared {
    nft: std::sync::OnceLock<rampart_nft::SiteCache>,
    profiles: std::sync::OnceLock<std::sync::Arc<rampart_profile::SiteProfiles>>,
}

/// [`load`] then [`Site::build`].
pub fn build(files: &SiteFiles, node: &str, opts: &PlanOpts) -> Result<NodePlan, Refusal> {
    load(files, opts)?.build(node)
}

/// What planning one revision of a site keeps for the next, so that a
/// revision that changes one file redoes only what depends on it: parsed
/// files, resolved ipsets, lint findings, compiled set elements and their
/// `nft` text. Each is reused only where its inputs are equal to the
/// previous revision's, so a plan made with a cache is the same, byte for
/// byte, as one made without. Holds the last revision's values, nothing
/// older. Owned by whoever plans revision after revision (the agent).
#[derive(Default)]
pub struct PlanCache {
    resolve: rampart_resolve::Cache,
    nft_sets: rampart_nft::SetMemo,
    /// `site.toml` (its bytes, the key dir) and its WireGuard plan.
    wg: Option<(Option<Vec<u8>>, String, Wg)>,
    /// `site.toml` (its bytes, its file id) and its profiles, when it
    /// has none (then nothing else of the site goes into them).
    profiles: Option<(
        Vec<u8>,
        rampart_types::FileId,
        std::sync::Arc<rampart_profile::SiteProfiles>,
    )>,
    /// The node whose last [`Site::build_cached`] gave a model exactly as
    /// compiled (no WireGuard or profile additions), so its chains can be
    /// given back.
    recyclable: Option<String>,
}

impl PlanCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Give back, when done with them, the site of the last
    /// [`load_cached`] and the nftables model of the node's last
    /// [`Site::build_cached`] (`NodePlan::model`), both unchanged: the
    /// cache takes back what it lent them (ipset entries, merged chains)
    /// instead of keeping copies. Optional: what is not given back is
    /// recomputed next time.
    pub fn recycle(&mut self, site: Site<'_>, node: &str, model: Option<rampart_nft::Plan>) {
        self.resolve.recycle(site.ir);
        if let Some(m) = model {
            if self.recyclable.as_deref() == Some(node) {
                self.nft_sets.recycle(node, m);
            }
        }
        self.recyclable = None;
    }
}

/// [`load`] then [`Site::build_cached`], through `cache`.
pub fn build_cached(
    files: &SiteFiles,
    node: &str,
    opts: &PlanOpts,
    cache: &mut PlanCache,
) -> Result<NodePlan, Refusal> {
    load_cached(files, opts, cache)?.build_cached(node, cache)
}

/// Resolve the site and plan its WireGuard networks. Resolve errors refuse
/// the site; WireGuard errors refuse every node in [`Site::build`] (an
/// error anywhere leaves the overlay undefined).
pub fn load<'f>(files: &'f SiteFiles, opts: &PlanOpts) -> Result<Site<'f>, Refusal> {
    load_with(files, opts, None)
}

/// [`load`], reusing what `cache` kept of the previous revision (the
/// result is the same).
pub fn load_cached<'f>(
    files: &'f SiteFiles,
    opts: &PlanOpts,
    cache: &mut PlanCache,
) -> Result<Site<'f>, Refusal> {
    load_with(files, opts, Some(cache))
}

fn load_with<'f>(
    files: &'f SiteFiles,
    opts: &PlanOpts,
    mut cache: Option<&mut PlanCache>,
) -> Result<Site<'f>, Refusal> {
    let (site, diags) = match cache.as_deref_mut() {
        Some(c) => rampart_resolve::load_cached(files, &mut c.resolve),
        None => rampart_resolve::load(files),
    };
    if diags.has_errors() {
        return Err(Refusal {
            kind: RefusalKind::Invalid,
            node: None,
            rendered: diags.render(&site.sources),
            message: format!(
                "the site has {} error(s); nothing was compiled",
                diags.errors()
            ),
            diagnostics: diags,
        });
    }
    let wg = match cache {
        Some(c) => {
            let toml = files.get("site.toml");
            match &c.wg {
                Some((b, k, wg)) if b.as_deref() == toml && *k == opts.key_dir => wg.clone(),
                _ => {
                    let wg = Wg::with_key_dir(files, &opts.key_dir);
                    c.wg = Some((toml.map(<[u8]>::to_vec), opts.key_dir.clone(), wg.clone()));
                    wg
                }
            }
        }
        None => Wg::with_key_dir(files, &opts.key_dir),
    };
    let mut warnings = diags.render(&site.sources);
    if !wg.diags.is_empty() {
        push_rendered(&mut warnings, &wg.diags.render(&wg.sources));
    }
    Ok(Site {
        files,
        ir: site,
        wg,
        opts: opts.clone(),
        warnings,
        shared: Shared::default(),
    })
}

fn push_rendered(out: &mut String, more: &str) {
    if more.is_empty() {
        return;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(more);
    if !out.ends_with('\n') {
        out.push('\n');
    }
}

impl Site<'_> {
    /// The node named, or the only one.
    pub fn pick(&self, node: Option<&str>) -> Result<String, Refusal> {
        let names: Vec<&str> = self.ir.nodes.iter().map(|n| n.name.as_str()).collect();
        let picked = match (node, names.as_slice()) {
            (Some(n), _) if self.ir.node(n).is_some() => Ok(n.to_owned()),
            (Some(n), _) => Err(format!(
                "no node `{n}` in the site (nodes: {})",
                names.join(", ")
            )),
            (None, [only]) => Ok((*only).to_owned()),
            (None, []) => Err("the site has no nodes".to_owned()),
            (None, _) => Err("the site has several nodes: say which with --node".to_owned()),
        };
        picked.map_err(|message| Refusal {
            kind: RefusalKind::NoNode,
            node: node.map(str::to_owned),
            rendered: String::new(),
            message,
            diagnostics: Diagnostics::new(),
        })
    }

    /// The backend `node` is compiled for.
    pub fn backend_of(&self, node: &ir::Node) -> Backend {
        self.opts.backend.unwrap_or(match node.backend {
            ir::Backend::Nftables => Backend::Nftables,
            ir::Backend::Iptables => Backend::Iptables,
        })
    }

    /// The whole plan of `node`.
    ///
    /// Planning several nodes of one loaded site shares the compiled sets
    /// and the profiles between them (the plans are the same as one node
    /// planned alone: both are pure functions of the site).
    pub fn build(&self, node: &str) -> Result<NodePlan, Refusal> {
        let profiles = self.shared_profiles();
        let sets = self
            .shared
            .nft
            .get_or_init(|| rampart_nft::SiteCache::new(&self.ir));
        self.build_with(node, sets, profiles)
    }

    fn shared_profiles(&self) -> &std::sync::Arc<rampart_profile::SiteProfiles> {
        self.shared
            .profiles
            .get_or_init(|| std::sync::Arc::new(rampart_profile::load(self.files, &self.ir)))
    }

    /// The site's profiles, from `cache` when `site.toml` is unchanged and
    /// has none.
    fn profiles_cached(
        &self,
        cache: &mut PlanCache,
    ) -> std::sync::Arc<rampart_profile::SiteProfiles> {
        let toml = self.files.get("site.toml");
        let id = rampart_profile::site_toml_id(&self.ir).unwrap_or_default();
        if let (Some(t), Some((b, i, sp))) = (toml, &cache.profiles) {
            if t == b.as_slice() && id == *i {
                return sp.clone();
            }
        }
        let sp = self.shared_profiles().clone();
        cache.profiles = match toml {
            Some(t) if sp.profiles.is_empty() => Some((t.to_vec(), id, sp.clone())),
            _ => None,
        };
        sp
    }

    /// [`Site::build`], reusing the compiled sets `cache` kept of the
    /// previous revision, and keeping this one's (the plan is the same).
    pub fn build_cached(&self, node: &str, cache: &mut PlanCache) -> Result<NodePlan, Refusal> {
        let profiles = self.profiles_cached(cache);
        let sets = rampart_nft::SiteCache::with_memo(&self.ir, std::mem::take(&mut cache.nft_sets));
        let out = self.build_with(node, &sets, &profiles);
        cache.nft_sets = sets.into_memo();
        // Without profiles and WireGuard, the model is the compiler's own.
        let as_compiled = profiles.profiles.is_empty() && self.wg.extras(node).wireguard.is_empty();
        cache.recyclable = (out.is_ok() && as_compiled).then(|| node.to_owned());
        out
    }

    fn build_with(
        &self,
        node: &str,
        nft_sets: &rampart_nft::SiteCache,
        profiles: &rampart_profile::SiteProfiles,
    ) -> Result<NodePlan, Refusal> {
        let site = &self.ir;
        let Some(n) = site.node(node) else {
            return Err(self.pick(Some(node)).expect_err("not in the site"));
        };
        if self.wg.diags.has_errors() {
            return Err(Refusal {
                kind: RefusalKind::Invalid,
                node: Some(node.to_owned()),
                message: format!(
                    "the WireGuard networks of site.toml have {} error(s); nothing was compiled",
                    self.wg.diags.errors()
                ),
                rendered: self.warnings.clone(),
                diagnostics: self.wg.diags.clone(),
            });
        }
        let backend = self.backend_of(n);
        let refuse = |kind: RefusalKind, d: Diagnostics, message: String| Refusal {
            kind,
            node: Some(node.to_owned()),
            rendered: d.render(&site.sources),
            message,
            diagnostics: d,
        };

        // Profiles first: their errors refuse the node before compiling.
        let input = ProfileInput {
            files: self.files,
            site,
            wg: &self.wg,
            node,
            backend,
        };
        let prof = profile::profile_additions_of(&input, profiles);
        let mut diags = Diagnostics::new();
        if prof.diagnostics.has_errors() {
            return Err(refuse(
                RefusalKind::Compile,
                prof.diagnostics,
                format!("node `{node}` does not compile (profiles); nothing was applied"),
            ));
        }
        diags.extend(prof.diagnostics.clone());

        // The nftables plan always: it is the simulator's model, so the guard
        // judges it (the iptables text has the same semantics).
        let mut nft_extras = self.wg.extras(node);
        profile::merge_nft(&mut nft_extras, prof.nft);
        // For an iptables node this model is never loaded (only simulated
        // and judged): xt NFQUEUE carries its IPS guests, so the model may
        // queue where this kernel's nftables could not.
        let caps = match backend {
            Backend::Nftables => rampart_nft::Caps::default(),
            Backend::Iptables => rampart_nft::Caps {
                nft_queue: true,
                ..rampart_nft::Caps::default()
            },
        };
        let mut nft =
            rampart_nft::compile_with_extras_cached(site, node, &caps, &nft_extras, nft_sets)
                .map_err(|d| {
                    refuse(
                        RefusalKind::Compile,
                        d,
                        format!("node `{node}` does not compile; nothing was applied"),
                    )
                })?;
        diags.extend(nft.warnings.clone());
        rampart_nft::add_profile(&mut nft, &prof.firewall);
        let vpn = profile::check_compiled_of(&input, profiles, &nft);
        if vpn.has_errors() {
            return Err(refuse(
                RefusalKind::Compile,
                vpn,
                format!(
                    "node `{node}` is locked down but its VPN cannot reach it; nothing was applied"
                ),
            ));
        }
        diags.extend(vpn);

        let mut guard = rampart_sim::guard::lockout_check(site, &nft, node);
        if prof.lockdown {
            // A locked-down node is managed through its VPN (proven above),
            // not from the management set.
            guard
                .items
                .retain(|d| d.code != rampart_types::codes::LOCKOUT.code);
        }
        let forced = guard.has_errors();
        if forced && !self.opts.force {
            return Err(refuse(
                RefusalKind::Guard,
                guard,
                "refusing to apply: the plan would lock out management or the cluster".to_owned(),
            ));
        }
        diags.extend(guard);

        // Sysctls with the reason each is there.
        let mut sysctls: Vec<(String, String, String)> = Vec::new();
        let mut plan;
        let mut files: Vec<(String, String)> = Vec::new();
        match backend {
            Backend::Nftables => {
                // The script moves into the plan (the model's copy is not
                // kept: one 2.7 MB copy fewer per revision on a big node).
                let script = std::mem::take(&mut nft.script);
                files.push(("ruleset.nft".into(), script.clone()));
                plan = Plan::nftables(n.name.clone(), script);
                sysctls.extend(
                    nft.sysctls
                        .iter()
                        .map(|s| (s.key.clone(), s.value.clone(), s.why.clone())),
                );
            }
            Backend::Iptables => {
                let mut ipt_extras = self.wg.ipt_extras(node);
                profile::merge_ipt(&mut ipt_extras, prof.ipt);
                // Full mode: the files replace the filter and raw tables,
                // as `iptables-restore` loads them and as
                // `/etc/sysconfig/iptables` keeps them.
                let mut ipt = rampart_ipt::compile_with_extras(
                    site,
                    node,
                    rampart_ipt::Mode::Full,
                    &ipt_extras,
                )
                .map_err(|d| {
                    refuse(
                        RefusalKind::Compile,
                        d,
                        format!("node `{node}` does not compile for iptables; nothing was applied"),
                    )
                })?;
                rampart_ipt::add_profile(&mut ipt, &prof.firewall);
                plan = Plan::nftables(n.name.clone(), ipt.v4.clone());
                plan.backend = Backend::Iptables;
                plan.ruleset6 = Some(ipt.v6.clone());
                plan.ipsets = Some(ipt.ipsets.clone());
                // The boot files the site names (XCP-ng's /etc/sysconfig/...).
                plan.saved_files = rampart_apply::SavedFiles {
                    iptables: n.saved_files.iptables.clone(),
                    ip6tables: n.saved_files.ip6tables.clone(),
                    ipset: n.saved_files.ipset.clone(),
                };
                sysctls.extend(
                    ipt.sysctls
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone(), "iptables backend".to_owned())),
                );
                files.push(("iptables.rules".into(), ipt.v4));
                files.push(("ip6tables.rules".into(), ipt.v6));
                files.push(("ipset.conf".into(), ipt.ipsets));
            }
        }

        // WireGuard: interfaces, routes, forwarding.
        let ifaces = self.wg.interfaces(node);
        let fwd: Vec<&&InterfacePlan> = ifaces.iter().filter(|i| self.wg.forwards(i)).collect();
        if !fwd.is_empty() {
            let names: Vec<&str> = fwd.iter().map(|i| i.interface.as_str()).collect();
            let why = format!(
                "WireGuard: forwarding between the peers of {}",
                names.join(", ")
            );
            sysctls.push(("net.ipv4.ip_forward".into(), "1".into(), why.clone()));
            if fwd
                .iter()
                .any(|i| i.addresses.iter().any(|a| a.addr().is_ipv6()))
            {
                sysctls.push(("net.ipv6.conf.all.forwarding".into(), "1".into(), why));
            }
        }
        sysctls.extend(prof.sysctls);
        // One value per key: the last word wins (profiles after the compiler).
        let mut by_key: BTreeMap<String, (String, String)> = BTreeMap::new();
        for (k, v, w) in sysctls {
            by_key.insert(k, (v, w));
        }
        plan.sysctls = by_key
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        files.push((
            "sysctl.conf".into(),
            sysctl_conf(
                by_key
                    .iter()
                    .map(|(k, (v, w))| (k.as_str(), v.as_str(), w.as_str())),
            ),
        ));

        for i in &ifaces {
            plan.wireguard.push(wg_iface(i));
            for r in &i.routes {
                plan.routes.push(Route {
                    dest: r.dest.to_string(),
                    dev: r.dev.clone().into(),
                    via: None,
                    table: r.table,
                    origin: format!("auto:wireguard {}", i.interface),
                });
            }
            files.push((
                format!("{}.conf", i.interface),
                rampart_wg::wg_quick_conf(i),
            ));
            files.push((format!("{}.routes", i.interface), wg::routes_text(i)));
        }
        plan.routes.extend(prof.routes);
        plan.rules.extend(prof.rules);
        files.extend(prof.files);
        plan.meta.origin_revision = self.opts.origin_revision.clone();

        Ok(NodePlan {
            node: n.name.clone(),
            rendered: diags.render(&site.sources),
            diagnostics: diags,
            plan,
            files,
            forced,
            model: nft,
        })
    }
}

/// The plan's view of one WireGuard interface: key store paths, no keys.
fn wg_iface(i: &InterfacePlan) -> WgIface {
    WgIface {
        name: i.interface.clone(),
        network: i.network.clone(),
        private_key_file: i.private_key_file.clone(),
        listen_port: i.listen_port,
        addresses: i.addresses.iter().map(|a| a.to_string()).collect(),
        mtu: i.mtu,
        peers: i
            .peers
            .iter()
            .map(|p| WgPeer {
                name: p.name.clone(),
                public_key: p.public_key.to_string(),
                preshared_key_file: p.preshared_key_file.clone(),
                endpoint: p.endpoint.clone(),
                allowed_ips: p.allowed_ips.iter().map(|a| a.to_string()).collect(),
                persistent_keepalive: p.persistent_keepalive,
            })
            .collect(),
    }
}

/// `sysctl.conf` text: each key with the reason it is set.
pub fn sysctl_conf<'a>(items: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let mut out = String::from("# sysctls rampart sets for this plan (sysctl -p FILE)\n");
    for (k, v, why) in items {
        // `why` may quote the site (a comment line, one line whatever it holds).
        let why = rampart_types::escape::ini_comment(why);
        out.push_str(&format!("# {why}\n{k} = {v}\n"));
    }
    out
}

/// The routes and policy rules of a plan as `ip` commands (what apply
/// installs), for display.
pub fn network_text(plan: &Plan) -> String {
    let mut out = String::new();
    for r in &plan.routes {
        out.push_str(&route_line(r));
        out.push('\n');
    }
    for r in &plan.rules {
        out.push_str(&rule_line(r));
        out.push('\n');
    }
    out
}

fn route_line(r: &Route) -> String {
    let mut s = format!("ip route replace {} dev {}", r.dest, r.dev);
    if let Some(v) = &r.via {
        s.push_str(&format!(" via {v}"));
    }
    if let Some(t) = r.table {
        s.push_str(&format!(" table {t}"));
    }
    s.push_str(&format!("  # {}", r.origin));
    s
}

fn rule_line(r: &PolicyRule) -> String {
    let mut s = format!("ip rule add priority {} from {}", r.priority, r.from);
    if let Some(i) = &r.iif {
        s.push_str(&format!(" iif {i}"));
    }
    s.push_str(&format!(" lookup {}  # {}", r.table, r.origin));
    s
}

//! `rampart compile SITE (--node N | --all) [--backend B] [--out DIR]`:
//! print or write each node's complete plan (ruleset and sysctls), and
//! for every WireGuard interface of the node its wg-quick `.conf` and route
//! list, with the firewall rules that go with them (the listen port open to
//! the peers' endpoints, forwarding on gateways).

use crate::load::{pick_node, resolved_site_files};
use anyhow::{Context, Result};
use rampart_resolve::ir;
use rampart_types::{Diagnostics, SiteFiles, SourceMap};
use rampart_wg::plan::Role;
use rampart_wg::{InterfacePlan, Plan as WgPlan, WgSite};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    /// The node to compile.
    #[arg(long, conflicts_with = "all")]
    pub node: Option<String>,
    /// Compile every node.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = BackendArg::Nftables)]
    pub backend: BackendArg,
    /// Write one file set per node under DIR/<node>/ instead of printing.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum BackendArg {
    Nftables,
}

/// One node's compiled output, as files: (file name, contents).
pub struct Output {
    pub node: String,
    pub files: Vec<(String, String)>,
}

/// The WireGuard side of a site: the plan of its `site.toml` networks, with
/// the diagnostics and the source map that renders them.
pub struct Wg {
    pub plan: Option<WgPlan>,
    site: Option<WgSite>,
    pub diags: Diagnostics,
    pub sources: SourceMap,
}

impl Wg {
    /// No WireGuard networks (a site without `site.toml`).
    pub fn none() -> Wg {
        Wg {
            plan: None,
            site: None,
            diags: Diagnostics::new(),
            sources: SourceMap::new(),
        }
    }

    /// Check the `site.toml` of `files` and plan its networks.
    pub fn of(files: &SiteFiles) -> Wg {
        let Some(bytes) = files.get("site.toml") else {
            return Wg::none();
        };
        let text = String::from_utf8_lossy(bytes).into_owned();
        let mut map = SourceMap::new();
        let id = map.add("site.toml", text.as_str());
        let (plan, diags) = rampart_wg::check(id, &text);
        let (site, _) = rampart_wg::parse_site_toml(id, &text);
        let sources = crate::wg::redacted(&map, &diags).unwrap_or(map);
        Wg {
            plan,
            site,
            diags,
            sources,
        }
    }

    /// The interfaces `node` owns.
    pub fn interfaces<'a>(&'a self, node: &'a str) -> Vec<&'a InterfacePlan> {
        match &self.plan {
            Some(p) => p.for_owner(node).collect(),
            None => vec![],
        }
    }

    /// Whether `i`'s owner forwards between the peers of `i`: a gateway,
    /// or a member some road warrior dials (`via`) while it has other peers.
    pub fn forwards(&self, i: &InterfacePlan) -> bool {
        if i.role == Role::Gateway {
            return true;
        }
        let Some(plan) = &self.plan else { return false };
        i.role == Role::Member
            && i.peers.len() > 1
            && i.peers.iter().any(|p| {
                plan.get(&i.network, &p.name)
                    .is_some_and(|c| c.role == Role::Client)
            })
    }

    /// `site.toml:LINE` of the listen port of `i` (the member's own, or
    /// the network's), or `auto:wireguard IFACE`.
    fn origin(&self, i: &InterfacePlan) -> String {
        let span = self.site.as_ref().and_then(|s| {
            let n = s.network(&i.network)?;
            let own = n
                .members
                .iter()
                .find(|m| m.name == i.owner)
                .and_then(|m| m.listen_port_span);
            Some(own.unwrap_or(n.listen_port_span))
        });
        match span {
            Some(sp) => format!("site.toml:{}", sp.line),
            None => format!("auto:wireguard {}", i.interface),
        }
    }

    /// The firewall inputs of `node`'s interfaces.
    pub fn extras(&self, node: &str) -> rampart_nft::Extras {
        let wireguard = self
            .interfaces(node)
            .into_iter()
            .map(|i| rampart_nft::WgPort {
                iface: i.interface.clone(),
                port: i.listen_port,
                sources: listen_addresses(i),
                forward: self.forwards(i),
                origin: self.origin(i),
            })
            .collect();
        rampart_nft::Extras { wireguard }
    }
}

/// The addresses the listen port admits: the peers' endpoints; `None` (any
/// source) when a peer roams or an endpoint is a DNS name (the address it
/// resolves to is not known when compiling).
pub fn listen_addresses(i: &InterfacePlan) -> Option<Vec<IpAddr>> {
    let eps = i.listen_sources()?;
    eps.iter()
        .map(|e| {
            e.parse::<SocketAddr>()
                .map(|s| s.ip())
                .or_else(|_| e.parse::<IpAddr>())
                .ok()
        })
        .collect()
}

/// `ip route` lines for the interface's explicit routes (the pool is the
/// connected route of its address).
pub fn routes_text(i: &InterfacePlan) -> String {
    let mut out = format!(
        "# routes of {} (network {}); Table = off, so these are all of them\n",
        i.interface, i.network
    );
    for r in &i.routes {
        match r.table {
            None => out.push_str(&format!("ip route replace {} dev {}\n", r.dest, r.dev)),
            Some(t) => out.push_str(&format!(
                "ip route replace {} dev {} table {t}\n",
                r.dest, r.dev
            )),
        }
    }
    out
}

pub fn compile_node(
    site: &ir::Site,
    node: &str,
    backend: BackendArg,
    wg: &Wg,
) -> Result<Output, Diagnostics> {
    match backend {
        BackendArg::Nftables => {
            let plan = rampart_nft::compile_with_extras(
                site,
                node,
                &rampart_nft::Caps::default(),
                &wg.extras(node),
            )?;
            if !plan.warnings.is_empty() {
                eprint!("{}", plan.warnings.render(&site.sources));
            }
            let ifaces = wg.interfaces(node);
            let mut sysctls: Vec<(String, String, String)> = plan
                .sysctls
                .iter()
                .map(|s| (s.key.clone(), s.value.clone(), s.why.clone()))
                .collect();
            let fwd: Vec<&&InterfacePlan> = ifaces.iter().filter(|i| wg.forwards(i)).collect();
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
            let mut files = vec![
                ("ruleset.nft".into(), plan.script.clone()),
                (
                    "sysctl.conf".into(),
                    sysctl_conf(
                        sysctls
                            .iter()
                            .map(|(k, v, w)| (k.as_str(), v.as_str(), w.as_str())),
                    ),
                ),
            ];
            for i in ifaces {
                files.push((
                    format!("{}.conf", i.interface),
                    rampart_wg::wg_quick_conf(i),
                ));
                files.push((format!("{}.routes", i.interface), routes_text(i)));
            }
            Ok(Output {
                node: node.to_string(),
                files,
            })
        }
    }
}

pub fn sysctl_conf<'a>(items: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let mut out = String::from("# sysctls rampart sets for this plan (sysctl -p FILE)\n");
    for (k, v, why) in items {
        out.push_str(&format!("# {why}\n{k} = {v}\n"));
    }
    out
}

pub fn run(a: Args) -> Result<ExitCode> {
    let (files, site) = match resolved_site_files(&a.site) {
        Ok(s) => s,
        Err(e) => return e.exit(),
    };
    let wg = Wg::of(&files);
    if !wg.diags.is_empty() {
        eprint!("{}", wg.diags.render(&wg.sources));
    }
    let nodes: Vec<String> = if a.all {
        site.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        vec![pick_node(&site, a.node.as_deref())?.name.clone()]
    };
    if a.all && a.out.is_none() && nodes.len() > 1 {
        eprintln!(
            "note: printing {} nodes one after the other; use --out DIR for one file set per node",
            nodes.len()
        );
    }
    let mut failed = 0;
    for node in &nodes {
        if wg.diags.has_errors() {
            eprintln!(
                "error: node `{node}` does not compile: the WireGuard networks of site.toml have {} error(s); nothing was written for it",
                wg.diags.errors()
            );
            failed += 1;
            continue;
        }
        match compile_node(&site, node, a.backend, &wg) {
            Ok(out) => match &a.out {
                Some(dir) => {
                    let d = dir.join(&out.node);
                    std::fs::create_dir_all(&d)
                        .with_context(|| format!("creating {}", d.display()))?;
                    for (name, text) in &out.files {
                        let p = d.join(name);
                        std::fs::write(&p, text)
                            .with_context(|| format!("writing {}", p.display()))?;
                    }
                    println!(
                        "{}: wrote {}",
                        out.node,
                        out.files
                            .iter()
                            .map(|(n, _)| d.join(n).display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                None => {
                    for (name, text) in &out.files {
                        println!("# ==== {} / {} ====", out.node, name);
                        print!("{text}");
                        if !text.ends_with('\n') {
                            println!();
                        }
                    }
                }
            },
            Err(diags) => {
                eprint!("{}", diags.render(&site.sources));
                eprintln!("error: node `{node}` does not compile ({} error(s)); nothing was written for it", diags.errors());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

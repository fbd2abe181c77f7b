//! The WireGuard side of a site: the plan of its `site.toml` networks, with
//! the diagnostics and the source map that renders them (private keys found
//! in the site are redacted from it), and the firewall inputs it implies.

use rampart_types::{codes, Diagnostics, SiteFiles, SourceMap, Span};
use rampart_wg::plan::Role;
use rampart_wg::{InterfacePlan, Plan as WgPlan, WgSite};
use std::net::{IpAddr, SocketAddr};

#[derive(Clone)]
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

    /// Check the `site.toml` of `files` and plan its networks, with the key
    /// store at the default place.
    pub fn of(files: &SiteFiles) -> Wg {
        Wg::with_key_dir(files, rampart_wg::plan::DEFAULT_KEY_DIR)
    }

    /// Check the `site.toml` of `files` and plan its networks; key store
    /// file names point into `key_dir`.
    pub fn with_key_dir(files: &SiteFiles, key_dir: &str) -> Wg {
        let Some(bytes) = files.get("site.toml") else {
            return Wg::none();
        };
        let text = String::from_utf8_lossy(bytes).into_owned();
        let mut map = SourceMap::new();
        let id = map.add("site.toml", text.as_str());
        let mut diags = rampart_wg::scan_private_keys(id, &text);
        let (site, d) = rampart_wg::parse_site_toml(id, &text);
        diags.extend(d);
        let plan = site.as_ref().map(|s| {
            let (p, d) = rampart_wg::plan::compile_with(s, key_dir);
            diags.extend(d);
            p
        });
        diags.sort();
        diags.items.dedup();
        let sources = redacted(&map, &diags).unwrap_or(map);
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
    pub fn origin(&self, i: &InterfacePlan) -> String {
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

    /// The nftables firewall inputs of `node`'s interfaces.
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

    /// The iptables firewall inputs of `node`'s interfaces (the same rules).
    pub fn ipt_extras(&self, node: &str) -> rampart_ipt::Extras {
        let wireguard = self
            .extras(node)
            .wireguard
            .into_iter()
            .map(|w| rampart_ipt::WgPort {
                iface: w.iface,
                port: w.port,
                sources: w.sources,
                forward: w.forward,
                origin: w.origin,
            })
            .collect();
        rampart_ipt::Extras { wireguard }
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

/// A copy of `map` where every private key a diagnostic points at is
/// replaced by `<redacted>`, so rendering the diagnostics never prints the
/// key; `None` when there is nothing to redact.
pub fn redacted(map: &SourceMap, diags: &Diagnostics) -> Option<SourceMap> {
    let code = codes::PRIVATE_KEY_IN_SITE.code;
    let hits: Vec<Span> = diags
        .items
        .iter()
        .filter(|d| d.code == code)
        .filter_map(|d| d.span)
        .collect();
    if hits.is_empty() {
        return None;
    }
    let mut out = SourceMap::new();
    for (id, f) in map.files() {
        let mine: Vec<_> = hits.iter().filter(|s| s.file == id).collect();
        if mine.is_empty() {
            out.add(f.path.clone(), f.text.clone());
            continue;
        }
        let lines: Vec<String> = f
            .text
            .split('\n')
            .enumerate()
            .map(
                |(i, line)| match mine.iter().find(|s| s.line as usize == i + 1) {
                    None => line.to_string(),
                    Some(s) => {
                        // Keep the key (under the caret) and its separator.
                        let keep = (s.col as usize - 1) + s.len as usize;
                        let head: String = line.chars().take(keep).collect();
                        let rest: String = line.chars().skip(keep).collect();
                        let sep = rest.find(['=', ':']).map(|p| &rest[..=p]).unwrap_or("");
                        format!("{head}{sep} <redacted>")
                    }
                },
            )
            .collect();
        out.add(f.path.clone(), lines.join("\n"));
    }
    Some(out)
}

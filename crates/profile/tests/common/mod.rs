//! Load a site directory and compile a node the way the plan builder does:
//! the nftables plan with the WireGuard extras, plus the profiles.
#![allow(dead_code)]

use rampart_profile::{NodeProfile, SiteProfiles};
use rampart_resolve::ir;
use rampart_types::SiteFiles;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

pub fn read_dir(root: &Path) -> SiteFiles {
    fn walk(root: &Path, dir: &Path, files: &mut SiteFiles) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, files);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut f = SiteFiles::new();
    walk(root, root, &mut f);
    f
}

pub fn lab(name: &str) -> SiteFiles {
    read_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../labs")
            .join(name),
    )
}

pub struct Site {
    pub files: SiteFiles,
    pub site: ir::Site,
    pub profiles: SiteProfiles,
}

pub fn load(files: SiteFiles) -> Site {
    let (site, d) = rampart_resolve::load(&files);
    assert!(!d.has_errors(), "{}", d.render(&site.sources));
    let profiles = rampart_profile::load(&files, &site);
    Site {
        files,
        site,
        profiles,
    }
}

impl Site {
    pub fn node(&self, node: &str) -> NodeProfile {
        self.profiles.for_node(&self.site, node)
    }

    /// WireGuard listen ports and forwarding, as `rampart compile` adds them.
    pub fn wg_extras(&self, node: &str) -> rampart_nft::Extras {
        let Some(plan) = &self.profiles.wg else {
            return rampart_nft::Extras::default();
        };
        let wireguard = plan
            .for_owner(node)
            .map(|i| {
                let sources: Option<Vec<IpAddr>> = i.listen_sources().and_then(|eps| {
                    eps.iter()
                        .map(|e| {
                            e.parse::<SocketAddr>()
                                .map(|s| s.ip())
                                .or_else(|_| e.parse::<IpAddr>())
                                .ok()
                        })
                        .collect()
                });
                rampart_nft::WgPort {
                    iface: i.interface.clone(),
                    port: i.listen_port,
                    sources,
                    forward: i.role == rampart_wg::plan::Role::Gateway,
                    origin: format!("auto:wireguard {}", i.interface),
                }
            })
            .collect();
        rampart_nft::Extras { wireguard }
    }

    /// The node's nftables plan with WireGuard and the profiles.
    pub fn nft(&self, node: &str) -> rampart_nft::Plan {
        let mut plan = rampart_nft::compile_with_extras(
            &self.site,
            node,
            &rampart_nft::Caps::default(),
            &self.wg_extras(node),
        )
        .unwrap_or_else(|d| panic!("{}", d.render(&self.site.sources)));
        rampart_nft::add_profile(&mut plan, &self.node(node).firewall);
        plan
    }

    pub fn ipt(&self, node: &str, mode: rampart_ipt::Mode) -> rampart_ipt::IptPlan {
        let mut plan = rampart_ipt::compile_with(&self.site, node, mode)
            .unwrap_or_else(|d| panic!("{}", d.render(&self.site.sources)));
        rampart_ipt::add_profile(&mut plan, &self.node(node).firewall);
        plan
    }
}

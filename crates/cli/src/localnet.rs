//! `rampart localnet SITE [--node N]`: what `pve-firewall localnet` prints —
//! the node, its address, the detected local network and the one in use —
//! plus the corosync links rampart opens.

use crate::load::{pick_node, resolved_site_files};
use anyhow::Result;
use rampart_types::escape::printable;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    #[arg(long)]
    pub node: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let site = match resolved_site_files(&a.site) {
        Ok((_, s)) => s,
        Err(e) => return e.exit(),
    };
    let node = pick_node(&site, a.node.as_deref())?;
    print!("{}", render(&site, node));
    Ok(ExitCode::SUCCESS)
}

/// The text, as `pve-firewall localnet` lays it out.
pub fn render(site: &rampart_resolve::ir::Site, node: &rampart_resolve::ir::Node) -> String {
    let mut out = String::new();
    out.push_str(&format!("local hostname: {}\n", printable(&node.name)));
    // The node's address: its first corosync link (Proxmox: the address the
    // cluster knows the node by), else its first address.
    let ip = node
        .firewall
        .corosync
        .iter()
        .min_by_key(|l| l.ring)
        .map(|l| l.local)
        .or_else(|| node.addresses.first().map(|a| a.addr()));
    let Some(ip) = ip else {
        out.push_str("local IP address: (none: the site gives this node no address)\n");
        out.push_str("network auto detect: (none)\n");
        return out;
    };
    out.push_str(&format!("local IP address: {ip}\n"));
    let detected_one = node
        .addresses
        .iter()
        .find(|a| a.addr() == ip)
        .or_else(|| node.addresses.iter().find(|a| a.contains(&ip)))
        .map(|a| a.trunc())
        .unwrap_or_else(|| ipnet::IpNet::from(ip));
    out.push_str(&format!("network auto detect: {detected_one}\n"));
    let detected = vec![detected_one];
    let list = |v: &[ipnet::IpNet]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if node.local_network == detected {
        out.push_str(&format!(
            "using detected local_network: {}\n",
            list(&node.local_network)
        ));
    } else {
        out.push_str(&format!(
            "using user defined local_network: {}\n",
            list(&node.local_network)
        ));
    }
    let mut links = String::new();
    {
        let out = &mut links;
        for link in &node.firewall.corosync {
            let fam = rampart_types::Family::of(&link.local);
            for e in site.set(link.peers).entries_of(fam) {
                let peer = site
                    .nodes
                    .iter()
                    .find(|n| {
                        n.name != node.name && n.addresses.iter().any(|a| a.addr() == e.range.start)
                    })
                    .map(|n| printable(&n.name).to_string())
                    .unwrap_or_else(|| "peer".into());
                out.push_str(&format!(
                    " - {peer}: {} (link: {}, from {})\n",
                    e.range.start, link.ring, link.local
                ));
            }
        }
    }
    if !links.is_empty() {
        out.push_str("\naccepting corosync traffic from/to:\n");
        out.push_str(&links);
    }
    out
}

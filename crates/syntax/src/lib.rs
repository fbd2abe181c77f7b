//! rampart's parser: a site's files (bytes) -> [`SiteAst`] with spans, plus
//! every problem found as a [`Diagnostic`](rampart_types::Diagnostic). No I/O.
//!
//! Files read (paths relative to the site root; anything else is ignored):
//! `site.toml`, `corosync.conf`, `firewall/cluster.fw`, `firewall/<vmid>.fw`,
//! `nodes/<node>/host.fw`, `qemu-server/<vmid>.conf`, `lxc/<vmid>.conf`, and
//! the same two under `nodes/<node>/`.

pub mod addr;
pub mod ast;
pub mod conf;
pub mod fw;
pub mod site_toml;
pub mod suggest;
pub mod tables;
pub mod text;

pub use ast::*;

use rampart_types::{codes, Diagnostic, Diagnostics, SiteFiles, SourceMap, Span};

/// What a path of the site is.
enum Role {
    SiteToml,
    Corosync,
    Cluster,
    GuestFw(u32),
    Host(String),
    GuestConf {
        id: u32,
        kind: GuestKindName,
        node: Option<String>,
    },
}

fn vmid(s: &str, ext: &str) -> Option<u32> {
    let n = s.strip_suffix(ext)?;
    if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) || n.starts_with('0') {
        return None;
    }
    n.parse().ok()
}

fn role(path: &str) -> Option<Role> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["site.toml"] => Some(Role::SiteToml),
        ["corosync.conf"] => Some(Role::Corosync),
        ["firewall", "cluster.fw"] => Some(Role::Cluster),
        ["firewall", f] => vmid(f, ".fw").map(Role::GuestFw),
        ["nodes", n, "host.fw"] => Some(Role::Host(n.to_string())),
        ["qemu-server", f] => vmid(f, ".conf").map(|id| Role::GuestConf {
            id,
            kind: GuestKindName::Vm,
            node: None,
        }),
        ["lxc", f] => vmid(f, ".conf").map(|id| Role::GuestConf {
            id,
            kind: GuestKindName::Ct,
            node: None,
        }),
        ["nodes", n, "qemu-server", f] => vmid(f, ".conf").map(|id| Role::GuestConf {
            id,
            kind: GuestKindName::Vm,
            node: Some(n.to_string()),
        }),
        ["nodes", n, "lxc", f] => vmid(f, ".conf").map(|id| Role::GuestConf {
            id,
            kind: GuestKindName::Ct,
            node: Some(n.to_string()),
        }),
        _ => None,
    }
}

/// Parse every file of a site. Problems are collected, never fatal: the tree
/// holds what could be read.
pub fn parse_site(files: &SiteFiles) -> (SiteAst, SourceMap, Diagnostics) {
    let mut ast = SiteAst::default();
    let mut map = SourceMap::new();
    let mut diags = Diagnostics::new();
    let mut conf_guests: Vec<GuestDecl> = Vec::new();
    let mut node_dirs: Vec<String> = Vec::new();
    let mut next_id = 0u32;
    let mut corosync_nodes: Vec<NodeDecl> = Vec::new();

    // site.toml first so its FileId is 0 when present, then the rest in path order.
    let mut order: Vec<(&String, &Vec<u8>)> = files.files.iter().collect();
    order.sort_by_key(|(p, _)| {
        (
            p.as_str() != "site.toml",
            p.as_str() != "corosync.conf",
            (*p).clone(),
        )
    });
    for (path, bytes) in order {
        if let Some(n) = path
            .strip_prefix("nodes/")
            .and_then(|r| r.split('/').next())
        {
            if !node_dirs.iter().any(|d| d == n) && path.matches('/').count() >= 2 {
                node_dirs.push(n.to_string());
            }
        }
        let Some(role) = role(path) else { continue };
        // The id the file will get once added (ids are dense, in order).
        let id = rampart_types::FileId(next_id);
        next_id += 1;
        let mut dec = text::decode(id, path, bytes, &mut diags);
        let text = std::mem::take(&mut dec.text);
        let fid = map.add(path.clone(), text);
        debug_assert_eq!(fid, id);
        let text = map.get(fid).map(|f| f.text.as_str()).unwrap_or("");
        if !dec.usable {
            continue;
        }
        match role {
            Role::SiteToml => {
                ast.has_site_toml = true;
                site_toml::parse_site_toml(fid, text, &mut ast, &mut diags);
            }
            Role::Corosync => corosync_nodes = conf::parse_corosync(fid, text, &mut diags),
            Role::Cluster => {
                ast.cluster = Some(fw::parse_fw(
                    fid,
                    FwKind::Cluster,
                    text,
                    &dec.bad_lines,
                    &mut diags,
                ))
            }
            Role::GuestFw(vmid) => {
                ast.guest_fw.insert(
                    vmid,
                    fw::parse_fw(fid, FwKind::Guest, text, &dec.bad_lines, &mut diags),
                );
            }
            Role::Host(node) => {
                ast.hosts.insert(
                    node,
                    fw::parse_fw(fid, FwKind::Host, text, &dec.bad_lines, &mut diags),
                );
            }
            Role::GuestConf {
                id: vmid,
                kind,
                node,
            } => {
                let node = node.map(|n| Spanned::new(n, Span::new(fid, 1, 1, 0)));
                conf_guests.push(conf::parse_guest_conf(
                    fid,
                    text,
                    &dec.bad_lines,
                    vmid,
                    kind,
                    node,
                    &mut diags,
                ));
            }
        }
    }

    if !ast.has_site_toml {
        // A Proxmox tree: nodes from corosync.conf and the nodes/ directories.
        for n in corosync_nodes {
            if !ast.nodes.iter().any(|x| x.name.value == n.name.value) {
                ast.nodes.push(n);
            }
        }
        for d in node_dirs {
            if !ast.nodes.iter().any(|x| x.name.value == d) {
                let span = Span::default();
                ast.nodes.push(NodeDecl {
                    name: Spanned::new(d, span),
                    backend: None,
                    platform: None,
                    bridges: Vec::new(),
                    addresses: Vec::new(),
                    local_network: None,
                    endpoint: None,
                    implicit_bridges: true,
                    span,
                });
            }
        }
        if ast.nodes.is_empty()
            && (ast.cluster.is_some() || !ast.guest_fw.is_empty() || !conf_guests.is_empty())
        {
            diags.push(
                Diagnostic::new(
                    codes::MISSING_SITE_FILE,
                    "the site names no node: no site.toml, corosync.conf or nodes/ directory",
                )
                .hint("add a site.toml with a [[node]]"),
            );
        }
    }

    // Merge guests from .conf files into the declared ones.
    let declared = ast.guests.len();
    for cg in conf_guests {
        if let Some(g) = ast.guests[..declared]
            .iter_mut()
            .find(|g| g.id.value == cg.id.value && g.kind == cg.kind)
        {
            if g.nics.is_empty() {
                g.nics = cg.nics;
            }
            if g.name.is_none() {
                g.name = cg.name;
            }
            if g.node.is_none() {
                g.node = cg.node;
            }
            continue;
        }
        ast.guests.push(cg);
    }
    if files.files.is_empty() {
        diags.push(Diagnostic::new(
            codes::MISSING_SITE_FILE,
            "the site holds no files",
        ));
    }
    (ast, map, diags)
}

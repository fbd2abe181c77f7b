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
    /// `hosts` or `etc/hosts`: names for corosync's ring addresses.
    Hosts,
    /// `nodes/<node>/interfaces` or `nodes/<node>/network/interfaces`: a
    /// copy of the node's `/etc/network/interfaces`.
    Interfaces(String),
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
        ["hosts"] | ["etc", "hosts"] => Some(Role::Hosts),
        ["nodes", n, "interfaces"] | ["nodes", n, "network", "interfaces"] => {
            Some(Role::Interfaces(n.to_string()))
        }
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

struct Job<'a> {
    id: rampart_types::FileId,
    path: &'a str,
    bytes: &'a [u8],
    role: Role,
}

#[derive(Clone)]
enum Parsed {
    Unusable,
    /// The tree's header, nodes and guests.
    SiteToml(Box<SiteAst>),
    Corosync(CorosyncConf),
    Hosts(Vec<(String, std::net::IpAddr)>),
    Interfaces(String, Vec<(String, Spanned<ipnet::IpNet>)>),
    Cluster(FwFile),
    GuestFw(u32, FwFile),
    Host(NodeName, FwFile),
    GuestConf(GuestDecl),
}

#[derive(Clone)]
struct Out {
    id: rampart_types::FileId,
    path: String,
    text: String,
    parsed: Parsed,
    diags: Diagnostics,
}

fn parse_one(j: &Job) -> Out {
    let mut diags = Diagnostics::new();
    let dec = text::decode(j.id, j.path, j.bytes, &mut diags);
    let (fid, t, bad) = (j.id, dec.text.as_str(), &dec.bad_lines);
    let parsed = if !dec.usable {
        Parsed::Unusable
    } else {
        match &j.role {
            Role::SiteToml => {
                let mut part = SiteAst::default();
                site_toml::parse_site_toml(fid, t, &mut part, &mut diags);
                Parsed::SiteToml(Box::new(part))
            }
            Role::Corosync => Parsed::Corosync(conf::parse_corosync(fid, t, &mut diags)),
            Role::Hosts => Parsed::Hosts(conf::parse_hosts(t)),
            Role::Interfaces(n) => Parsed::Interfaces(n.clone(), conf::parse_interfaces(fid, t)),
            Role::Cluster => {
                Parsed::Cluster(fw::parse_fw(fid, FwKind::Cluster, t, bad, &mut diags))
            }
            Role::GuestFw(vmid) => {
                Parsed::GuestFw(*vmid, fw::parse_fw(fid, FwKind::Guest, t, bad, &mut diags))
            }
            // The directory name was checked when the file was listed (a bad
            // one is refused there and its files are not read).
            Role::Host(node) => match NodeName::parse(node) {
                Ok(node) => Parsed::Host(node, fw::parse_fw(fid, FwKind::Host, t, bad, &mut diags)),
                Err(_) => Parsed::Unusable,
            },
            Role::GuestConf { id, kind, node } => {
                // The directory name was checked when the file was listed.
                let node = node
                    .as_ref()
                    .and_then(|n| NodeName::parse(n).ok())
                    .map(|n| Spanned::new(n, Span::new(fid, 1, 1, 0)));
                Parsed::GuestConf(conf::parse_guest_conf(
                    fid, t, bad, *id, *kind, node, &mut diags,
                ))
            }
        }
    };
    Out {
        id: j.id,
        path: j.path.to_string(),
        text: dec.text,
        parsed,
        diags,
    }
}

/// The parsed files of the previous [`parse_site_cached`], reused for a
/// file whose path, place in the site (its `FileId`, so every span is the
/// same) and bytes are unchanged: only changed files are parsed again.
/// Holds the files of the last site parsed, nothing older.
#[derive(Default)]
pub struct ParseCache {
    files: std::collections::HashMap<String, CachedFile>,
}

struct CachedFile {
    bytes: Vec<u8>,
    out: Out,
    /// The parsed `.fw` file was lent to the tree ([`parse_site_cached`]
    /// takes it back afterwards): until then `out.parsed` holds nothing.
    lent: bool,
}

impl ParseCache {
    pub fn new() -> Self {
        Self::default()
    }
    /// Files held.
    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Parse every file of a site. Problems are collected, never fatal: the tree
/// holds what could be read.
pub fn parse_site(files: &SiteFiles) -> (SiteAst, SourceMap, Diagnostics) {
    parse_site_with(files, None)
}

/// [`parse_site`], parsing only the files that changed since the site
/// `cache` last saw, and handing the result to `f`; the tree, map and
/// diagnostics are the same as [`parse_site`]'s. The tree is lent: the
/// cache takes its `.fw` files back when `f` returns (no copy of a
/// 100,000-entry ipset per revision).
pub fn parse_site_cached<R>(
    files: &SiteFiles,
    cache: &mut ParseCache,
    f: impl FnOnce(&SiteAst, SourceMap, Diagnostics) -> R,
) -> R {
    let (mut ast, map, diags) = parse_site_with(files, Some(cache));
    let r = f(&ast, map, diags);
    // Take the parsed .fw files back, by the path each came from.
    let mut give_back = |path: String, fw: FwFile, wrap: &dyn Fn(FwFile) -> Parsed| {
        if let Some(c) = cache.files.get_mut(&path) {
            if c.lent {
                c.out.parsed = wrap(fw);
                c.lent = false;
            }
        }
    };
    if let Some(fw) = ast.cluster.take() {
        give_back("firewall/cluster.fw".into(), fw, &Parsed::Cluster);
    }
    for (vmid, fw) in std::mem::take(&mut ast.guest_fw) {
        give_back(format!("firewall/{vmid}.fw"), fw, &|f| {
            Parsed::GuestFw(vmid, f)
        });
    }
    for (node, fw) in std::mem::take(&mut ast.hosts) {
        let path = format!("nodes/{node}/host.fw");
        give_back(path, fw, &|f| Parsed::Host(node.clone(), f));
    }
    // A file not given back is parsed again next time.
    cache.files.retain(|_, c| !c.lent);
    r
}

fn parse_site_with(
    files: &SiteFiles,
    mut cache: Option<&mut ParseCache>,
) -> (SiteAst, SourceMap, Diagnostics) {
    let mut ast = SiteAst::default();
    let mut map = SourceMap::new();
    let mut diags = Diagnostics::new();
    let mut conf_guests: Vec<GuestDecl> = Vec::new();
    let mut node_dirs: Vec<String> = Vec::new();
    let mut corosync: Option<CorosyncConf> = None;
    let mut hosts: Vec<(String, std::net::IpAddr)> = Vec::new();
    let mut interfaces: std::collections::BTreeMap<String, Vec<(String, Spanned<ipnet::IpNet>)>> =
        Default::default();

    // site.toml first so its FileId is 0 when present, then the rest in path order.
    let mut order: Vec<(&String, &Vec<u8>)> = files.files.iter().collect();
    order.sort_by(|(a, _), (b, _)| {
        let key = |p: &str| (p != "site.toml", p != "corosync.conf");
        key(a).cmp(&key(b)).then_with(|| a.cmp(b))
    });
    let mut seen_dirs: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut bad_dirs: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut jobs: Vec<Job> = Vec::new();
    for (path, bytes) in order {
        if let Some(n) = path
            .strip_prefix("nodes/")
            .and_then(|r| r.split('/').next())
        {
            if path.matches('/').count() >= 2 {
                // The directory names a node: the same rule as `[[node]] name`.
                if let Err(e) = rampart_types::names::NodeName::parse(n) {
                    if bad_dirs.insert(n) {
                        diags.push(
                            Diagnostic::new(
                                e.code,
                                format!(
                                    "directory `nodes/{}`: {}",
                                    rampart_types::escape::printable(n),
                                    e.message
                                ),
                            )
                            .note(e.allowed)
                            .hint("rename the directory; its files are not read"),
                        );
                    }
                    continue;
                }
                if seen_dirs.insert(n) {
                    node_dirs.push(n.to_string());
                }
            }
        }
        let Some(role) = role(path) else { continue };
        // The id the file gets once added: ids are dense, in this order.
        let id = rampart_types::FileId(jobs.len() as u32);
        jobs.push(Job {
            id,
            path,
            bytes,
            role,
        });
    }

    // Files are independent: parse them on a few threads (pure computation),
    // then merge in file order so the result does not depend on scheduling.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    // Unchanged files from the cache; the rest to parse.
    let mut old = cache
        .as_deref_mut()
        .map(|c| std::mem::take(&mut c.files))
        .unwrap_or_default();
    let mut kept_bytes: Vec<Option<Vec<u8>>> = Vec::new();
    let mut reused: Vec<Option<Out>> = jobs
        .iter()
        .map(|j| {
            match old
                .remove(j.path)
                .filter(|c| !c.lent && c.out.id == j.id && c.bytes == j.bytes)
            {
                Some(c) => {
                    kept_bytes.push(Some(c.bytes));
                    Some(c.out)
                }
                None => {
                    kept_bytes.push(None);
                    None
                }
            }
        })
        .collect();
    drop(old);
    let all = std::mem::take(&mut jobs);
    let mut slots: Vec<usize> = Vec::new();
    for (i, j) in all.into_iter().enumerate() {
        if reused[i].is_none() {
            slots.push(i);
            jobs.push(j);
        }
    }
    let outs: Vec<Out> = if threads > 1 && jobs.len() >= 256 {
        // site.toml (one big file) gets a thread of its own.
        let split = usize::from(matches!(jobs[0].role, Role::SiteToml));
        let (head, rest) = jobs.split_at(split);
        let chunk = rest.len().div_ceil((threads - split).max(1)).max(1);
        let mut parts: Vec<&[Job]> = vec![head];
        parts.extend(rest.chunks(chunk));
        std::thread::scope(|sc| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|c| sc.spawn(move || c.iter().map(parse_one).collect::<Vec<Out>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    } else {
        jobs.iter().map(parse_one).collect()
    };
    for (slot, o) in slots.into_iter().zip(outs) {
        reused[slot] = Some(o);
    }
    let outs: Vec<Out> = reused.into_iter().flatten().collect();
    if let Some(c) = cache.as_deref_mut() {
        // What the next revision reuses: a copy of each file's result, but
        // the parsed .fw files only lent (taken back by parse_site_cached).
        c.files = outs
            .iter()
            .zip(kept_bytes)
            .map(|(o, bytes)| {
                let bytes = bytes.unwrap_or_else(|| files.files[&o.path].clone());
                let lent = matches!(
                    o.parsed,
                    Parsed::Cluster(_) | Parsed::GuestFw(..) | Parsed::Host(..)
                );
                let out = if lent {
                    Out {
                        id: o.id,
                        path: o.path.clone(),
                        text: o.text.clone(),
                        parsed: Parsed::Unusable,
                        diags: o.diags.clone(),
                    }
                } else {
                    o.clone()
                };
                (o.path.clone(), CachedFile { bytes, out, lent })
            })
            .collect();
    }
    let mut ids: std::collections::HashMap<String, rampart_types::FileId> =
        std::collections::HashMap::new();
    for o in outs {
        ids.insert(o.path.clone(), o.id);
        let fid = map.add(o.path, o.text);
        debug_assert_eq!(fid, o.id);
        diags.extend(o.diags);
        match o.parsed {
            Parsed::Unusable => {}
            Parsed::SiteToml(part) => {
                ast.has_site_toml = true;
                ast.name = part.name;
                ast.backend = part.backend;
                ast.nodes = part.nodes;
                ast.guests = part.guests;
            }
            Parsed::Corosync(c) => corosync = Some(c),
            Parsed::Hosts(h) => hosts.extend(h),
            Parsed::Interfaces(n, i) => {
                interfaces.insert(n, i);
            }
            Parsed::Cluster(f) => ast.cluster = Some(f),
            Parsed::GuestFw(vmid, f) => {
                ast.guest_fw.insert(vmid, f);
            }
            Parsed::Host(node, f) => {
                ast.hosts.insert(node, f);
            }
            Parsed::GuestConf(g) => conf_guests.push(g),
        }
    }

    // corosync.conf's ring addresses: host names resolved from the tree's
    // hosts file, then from the addresses site.toml gives the node so named.
    let corosync = corosync.map(|c| resolve_corosync(c, &hosts, &ast.nodes, &mut diags));
    if !ast.has_site_toml {
        // A Proxmox tree: nodes from corosync.conf and the nodes/ directories.
        for n in corosync.iter().flat_map(|c| c.nodes.iter()) {
            let name = match NodeName::parse(&n.name.value) {
                Err(e) => {
                    diags.push(e.diagnostic(n.name.span));
                    continue;
                }
                Ok(v) => v,
            };
            if ast.nodes.iter().any(|x| x.name.value == name) {
                continue;
            }
            let addresses = n
                .rings
                .iter()
                .filter_map(|(_, a)| match a.value {
                    RingAddr::Ip(ip) => ipnet::IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 })
                        .ok()
                        .map(|net| Spanned::new(net, a.span)),
                    RingAddr::Host(_) => None,
                })
                .collect();
            ast.nodes.push(NodeDecl {
                name: Spanned::new(name, n.name.span),
                backend: None,
                platform: None,
                bridges: Vec::new(),
                addresses,
                local_network: None,
                endpoint: None,
                saved_files: Default::default(),
                implicit_bridges: true,
                span: n.span,
            });
        }
        for d in node_dirs {
            // Checked when the files were listed (bad directories are left out).
            let Ok(d) = NodeName::parse(&d) else { continue };
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
                    saved_files: Default::default(),
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

    // A node's /etc/network/interfaces gives its addresses their prefix
    // (a bare tree only knows corosync's host addresses).
    for n in ast.nodes.iter_mut() {
        let Some(ifs) = interfaces.get(n.name.value.as_str()) else {
            continue;
        };
        let widen = |a: &mut Spanned<ipnet::IpNet>| {
            if a.value.prefix_len() == a.value.max_prefix_len() {
                if let Some((_, net)) = ifs.iter().find(|(_, x)| x.value.addr() == a.value.addr()) {
                    a.value = net.value;
                }
            }
        };
        n.addresses.iter_mut().for_each(widen);
        for b in n.bridges.iter_mut() {
            b.addresses.iter_mut().for_each(widen);
        }
    }
    ast.corosync = corosync;

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
    } else {
        completeness(files, &ast, &ids, &mut diags);
    }
    (ast, map, diags)
}

/// The checks that keep a missing, cut-short or misnamed firewall file from
/// reading as "firewall off" (docs/fail-closed.md):
///
/// - every `.fw` file rampart reads must end with a newline (`E0708`): a
///   file cut short mid-line, e.g. `-source 10.1.2.0/24` read as
///   `-source 10.1.2.0/2`, is never compiled;
/// - `firewall/cluster.fw` must say `enable: 0` or `enable: 1` (`E0707`):
///   Proxmox reads a missing `enable` as off, and so would a file of which
///   only `[OPTIONS]` has been written yet;
/// - `firewall/cluster.fw` missing while host or guest `.fw` files exist is
///   an error (`E0705`); a site with no firewall file at all a warning
///   (`E0706`: nothing is filtered), which `apply` and the agent refuse;
/// - `firewall/0100.fw` is an error (`E0709`, it would leave guest 100
///   unfiltered), any other file there that is not read a warning (`E0710`).
fn completeness(
    files: &SiteFiles,
    ast: &SiteAst,
    ids: &std::collections::HashMap<String, rampart_types::FileId>,
    diags: &mut Diagnostics,
) {
    let mut any_fw = false;
    for (path, bytes) in &files.files {
        let parts: Vec<&str> = path.split('/').collect();
        let is_fw = path.ends_with(".fw");
        match role(path) {
            Some(Role::Cluster | Role::GuestFw(_) | Role::Host(_)) => {
                any_fw = true;
                if !bytes.is_empty() && bytes.last() != Some(&b'\n') {
                    let line = bytes.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
                    let mut d = Diagnostic::new(
                        codes::TRUNCATED_FILE,
                        format!("`{path}` does not end with a newline: it may have been cut short"),
                    )
                    .note("rampart reads a file whose last line is not ended as a write in progress, never as a shorter rule (`/24` cut to `/2`)")
                    .hint("end the last line with a newline (Proxmox always writes one)");
                    if let Some(id) = ids.get(path) {
                        d = d
                            .at(Span::new(*id, line, 1, 0))
                            .label("this last line has no newline");
                    }
                    diags.push(d);
                }
            }
            Some(_) => {}
            None => match parts.as_slice() {
                ["firewall", name] => {
                    if is_fw {
                        any_fw = true;
                    }
                    let stem = name.strip_suffix(".fw");
                    if let Some(n) = stem.filter(|n| {
                        n.len() > 1 && n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())
                    }) {
                        let id = n.trim_start_matches('0');
                        diags.push(
                            Diagnostic::new(
                                codes::MISNAMED_GUEST_FILE,
                                format!("`{path}`: a guest id has no leading zero; this file is not guest {id}'s firewall"),
                            )
                            .note(format!("Proxmox and rampart read only `firewall/{id}.fw`: with this name its rules apply to nothing and guest {id} runs with its firewall off"))
                            .hint(format!("rename it to `firewall/{id}.fw`")),
                        );
                    } else {
                        diags.push(
                            Diagnostic::new(
                                codes::IGNORED_FILE,
                                format!("`{path}` is not read: firewall/ holds `cluster.fw` and `<vmid>.fw`"),
                            )
                            .hint("rename it to `<vmid>.fw` (a guest id, no leading zero) or move it out of firewall/"),
                        );
                    }
                }
                ["nodes", _, _] if is_fw => {
                    any_fw = true;
                    diags.push(
                        Diagnostic::new(
                            codes::IGNORED_FILE,
                            format!("`{path}` is not read: a node's firewall file is `host.fw`"),
                        )
                        .hint("rename it to `host.fw`, or move it out of the node's directory"),
                    );
                }
                _ => {}
            },
        }
    }
    let has_site = ast.has_site_toml || !ast.nodes.is_empty();
    match (&ast.cluster, files.get("firewall/cluster.fw")) {
        (_, None) if any_fw => diags.push(
            Diagnostic::new(
                codes::CLUSTER_FW_MISSING,
                "`firewall/cluster.fw` is missing, but the site has other firewall files",
            )
            .note("a missing cluster.fw is never read as \"firewall off\": it is how a file looks while an editor or a copy replaces it")
            .hint("restore firewall/cluster.fw; to run without the firewall, write one with `[OPTIONS]` `enable: 0`"),
        ),
        (_, None) if has_site => diags.push(
            Diagnostic::new(
                codes::NO_FIREWALL_FILES,
                "the site has no firewall files: nothing is filtered",
            )
            .note("`rampart apply` and the agent refuse a site that does not say whether its firewall is on")
            .hint("add firewall/cluster.fw with `[OPTIONS]` `enable: 1` (or `enable: 0` to run without the firewall)"),
        ),
        (Some(fw), Some(_))
            if fw.options.enable.is_none()
                && !diags.items.iter().any(|d| {
                    d.severity == rampart_types::Severity::Error
                        && d.span.is_some_and(|s| s.file == fw.file)
                }) =>
        {
            diags.push(
            Diagnostic::new(
                codes::ENABLE_UNSET,
                "`firewall/cluster.fw` does not say whether the firewall is on",
            )
            .at(Span::new(fw.file, 1, 1, 0))
            .note("Proxmox reads a missing `enable` as off; rampart never turns a firewall off by omission (a cluster.fw cut short after `[OPTIONS]` reads the same way)")
            .hint("add `enable: 1` to [OPTIONS] (or `enable: 0` to run without the firewall)"),
            )
        }
        _ => {}
    }
}

/// Resolve corosync.conf's host names: the tree's hosts file first, then
/// the node of that name (or of its first label) in site.toml. corosync's
/// `ip_version` decides which family wins when a name has both (`ipv6-4`,
/// its default, prefers IPv6). A name neither knows is an error at its line:
/// the link would otherwise get no rule and corosync over it would be dropped.
fn resolve_corosync(
    mut c: CorosyncConf,
    hosts: &[(String, std::net::IpAddr)],
    nodes: &[NodeDecl],
    diags: &mut Diagnostics,
) -> CorosyncConf {
    let pref = c
        .ip_version
        .as_ref()
        .map(|v| v.value.as_str())
        .unwrap_or("ipv6-4");
    let pick = |cands: Vec<std::net::IpAddr>| -> Option<std::net::IpAddr> {
        let v4 = cands.iter().copied().find(|a| a.is_ipv4());
        let v6 = cands.iter().copied().find(|a| a.is_ipv6());
        match pref {
            "ipv4" => v4,
            "ipv6" => v6,
            "ipv4-6" => v4.or(v6),
            _ => v6.or(v4),
        }
    };
    for n in c.nodes.iter_mut() {
        let mut rings = Vec::with_capacity(n.rings.len());
        for (ring, a) in std::mem::take(&mut n.rings) {
            let RingAddr::Host(h) = &a.value else {
                rings.push((ring, a));
                continue;
            };
            let short = h.split('.').next().unwrap_or(h);
            let from_hosts: Vec<std::net::IpAddr> = hosts
                .iter()
                .filter(|(name, _)| name == h)
                .map(|(_, ip)| *ip)
                .collect();
            let from_site: Vec<std::net::IpAddr> = nodes
                .iter()
                .filter(|d| {
                    d.name.value.eq_ignore_ascii_case(h) || d.name.value.eq_ignore_ascii_case(short)
                })
                .flat_map(|d| {
                    d.bridges
                        .iter()
                        .flat_map(|b| b.addresses.iter())
                        .chain(d.addresses.iter())
                        .map(|x| x.value.addr())
                        .collect::<Vec<_>>()
                })
                .collect();
            match pick(from_hosts).or_else(|| pick(from_site)) {
                Some(ip) => rings.push((ring, Spanned::new(RingAddr::Ip(ip), a.span))),
                None => diags.push(
                    Diagnostic::new(
                        codes::UNRESOLVED_HOST,
                        format!(
                            "`ring{ring}_addr: {}` is a host name the site does not resolve",
                            rampart_types::escape::printable(h)
                        ),
                    )
                    .at(a.span)
                    .label("no address for this name")
                    .note("without an address, corosync over this link would be dropped")
                    .hint("add the name to the tree's `hosts` file (a copy of /etc/hosts), give the node its address in site.toml, or write the address here"),
                ),
            }
        }
        n.rings = rings;
    }
    c
}

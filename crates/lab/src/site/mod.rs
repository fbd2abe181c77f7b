//! A whole site built for real on this machine: `rampart lab up|verify|down`.
//!
//! Unlike [`crate::Lab`] (one node, gone when dropped), a site lab lives on
//! after the process that built it: its state is `/run/rampart/lab/NAME/`
//! (`lab.json`, the key store `keys/<owner>/`, one apply state directory per
//! node), and `down` removes what `lab.json` lists. See [`topo`] for the
//! namespaces and links.
//!
//! Every namespace of a lab is named `rl<id>-…` with a random 4-hex id
//! unique on this machine, so two labs never collide; nothing outside those
//! namespaces is touched (no veth into the root namespace, no NAT).

pub mod topo;

use crate::netns::{self, Netns};
use crate::probe::{self, Observed, ProbeProto, Spec};
use crate::{Error, Helper, Result};
use ipnet::IpNet;
use rampart_apply::{HostSystem, Plan, PolicyRule, Route, WgIface};
use rampart_case::PacketProto;
use rampart_resolve::ir;
use rampart_types::{Family, SiteFiles};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where labs keep their state.
pub const RUN_ROOT: &str = "/run/rampart/lab";

/// What a zone is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ZoneKind {
    Internet,
    Node,
    Guest,
    Client,
    /// A machine on a node's private bridge (made when a probe needs one).
    Lan,
}

/// A place probes start from or go to: its namespace, its own addresses
/// (first of a family = the default) and its interfaces with their
/// on-link networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub ns: String,
    pub kind: ZoneKind,
    pub addrs: Vec<IpAddr>,
    pub nets: Vec<(String, Vec<IpNet>)>,
    /// UDP ports something of the lab listens on (WireGuard): probes to
    /// them watch for the datagram's arrival instead of an answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub busy_udp: Vec<u16>,
}

/// `lab.json`: everything `down` removes and `verify` needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct State {
    pub name: String,
    pub id: String,
    /// The site directory it was built from.
    pub site: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// False until `up` finished.
    pub complete: bool,
    pub namespaces: Vec<String>,
    pub zones: BTreeMap<String, Zone>,
    /// `owner/interface` of every WireGuard interface (wireguard-go).
    #[serde(default)]
    pub wireguard: Vec<String>,
}

impl State {
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.get(name)
    }
}

pub fn lab_dir(name: &str) -> PathBuf {
    Path::new(RUN_ROOT).join(name)
}

fn state_path(name: &str) -> PathBuf {
    lab_dir(name).join("lab.json")
}

/// `s` as one path component (rampart_types::names::path_component).
fn component(s: &str) -> Result<&str> {
    rampart_types::names::path_component(s).map_err(|e| Error::new(e.to_string()))
}

/// The lab's key store for one WireGuard member or client.
pub fn key_dir(name: &str, owner: &str) -> Result<PathBuf> {
    Ok(lab_dir(component(name)?)
        .join("keys")
        .join(component(owner)?))
}

/// The state of lab `name`, if it is up (or half built).
pub fn load(name: &str) -> Result<Option<State>> {
    if !valid_name(name) {
        return Err(Error::new(format!(
            "bad lab name `{}` (letters, digits, `-_.`)",
            rampart_types::escape::printable(name)
        )));
    }
    let p = state_path(name);
    match std::fs::read_to_string(&p) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::new(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::new(format!("{}: {e}", p.display()))),
    }
}

fn save(st: &State) -> Result<()> {
    let p = state_path(&st.name);
    let tmp = p.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(st).map_err(|e| Error::new(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| Error::new(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &p).map_err(|e| Error::new(format!("{}: {e}", p.display())))
}

/// Labs that are up on this machine (names).
pub fn list() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(RUN_ROOT)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("lab.json").exists())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A lab name must be a plain file name (it becomes a directory).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && !name.starts_with('.')
        && rampart_types::names::path_component(name).is_ok()
}

/// How the lab gets what it applies: the same code as `rampart apply`
/// (the CLI passes it in), given the site's files with the lab's public
/// keys and the owner's key store.
pub trait Planner {
    /// The plan `rampart apply` would apply to `node`.
    fn node_plan(&self, files: &SiteFiles, node: &str, key_dir: &Path) -> Result<Plan, String>;
    /// The WireGuard interfaces and routes of a guest member or a client.
    fn wg_of(
        &self,
        files: &SiteFiles,
        owner: &str,
        key_dir: &Path,
    ) -> Result<(Vec<WgIface>, Vec<Route>), String>;
}

/// What `up` builds from.
pub struct UpInput<'a> {
    pub name: &'a str,
    /// The site directory (recorded in `lab.json`).
    pub site_path: &'a str,
    pub files: &'a SiteFiles,
    pub site: &'a ir::Site,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A 4-hex id no namespace on this machine uses yet.
fn fresh_id() -> Result<String> {
    let taken: BTreeSet<String> = netns::list("rl")
        .into_iter()
        .filter_map(|n| n.get(2..6).map(str::to_string))
        .collect();
    let mut seed = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
        .map_err(|e| Error::new(format!("/dev/urandom: {e}")))?;
    let mut x = u64::from_le_bytes(seed);
    for _ in 0..64 {
        let id = format!("{:04x}", x & 0xffff);
        if !taken.contains(&id) {
            return Ok(id);
        }
        x = x.rotate_right(16) ^ 0x9e37_79b9_7f4a_7c15;
    }
    Err(Error::new("no free lab id"))
}

/// The WireGuard facts the topology needs from `site.toml`: public
/// endpoints (literal addresses) and road warriors; plus every
/// (network, member-or-client) that needs a key.
struct WgFacts {
    eps: topo::Endpoints,
    /// (network, owner): every member and client.
    keyed: Vec<(String, String)>,
    /// guest member name -> guest zone (`vm100`)
    guest_members: BTreeMap<String, String>,
}

fn wg_facts(files: &SiteFiles, site: &ir::Site) -> WgFacts {
    let mut f = WgFacts {
        eps: topo::Endpoints::default(),
        keyed: vec![],
        guest_members: BTreeMap::new(),
    };
    let Some(bytes) = files.get("site.toml") else {
        return f;
    };
    let text = String::from_utf8_lossy(bytes);
    let (Some(ws), _) = rampart_wg::parse_site_toml(rampart_types::FileId(0), &text) else {
        return f;
    };
    for n in &ws.nodes {
        if let Some(a) = n.endpoint.as_ref().and_then(|e| e.host.parse().ok()) {
            f.eps.nodes.insert(n.name.to_string(), a);
        }
    }
    for net in &ws.networks {
        for m in &net.members {
            f.keyed.push((net.name.to_string(), m.name.to_string()));
            if let Some(g) = m.guest {
                f.eps.routers.insert(g);
                if let Some(a) = m.endpoint.as_ref().and_then(|e| e.host.parse().ok()) {
                    f.eps.guests.insert(g, a);
                }
                if let Some(guest) = site.guests.iter().find(|x| x.id == g) {
                    f.guest_members
                        .insert(m.name.to_string(), guest.zone().to_string());
                }
            }
        }
    }
    for c in &ws.clients {
        f.keyed.push((c.network.to_string(), c.name.to_string()));
        if !f.eps.clients.iter().any(|x| *x == c.name) {
            f.eps.clients.push(c.name.to_string());
        }
    }
    f
}

/// `site.toml` with every member's and client's `public_key` replaced by
/// the lab's (generated into the lab's key store, 0700/0600).
fn enroll(name: &str, files: &SiteFiles, keyed: &[(String, String)]) -> Result<SiteFiles> {
    let Some(bytes) = files.get("site.toml") else {
        return Ok(files.clone());
    };
    let mut keys: BTreeMap<(String, String), String> = BTreeMap::new();
    for (net, owner) in keyed {
        let ks = rampart_keystore::KeyStore::open(key_dir(name, owner)?)
            .map_err(|e| Error::new(format!("key store of {owner}: {e}")))?;
        let pk = ks
            .enroll(net)
            .map_err(|e| Error::new(format!("key of {owner} in {net}: {e}")))?;
        keys.insert((net.clone(), owner.clone()), pk.to_string());
    }
    let text = String::from_utf8_lossy(bytes);
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| Error::new(format!("site.toml: {e}")))?;
    if let Some(nets) = doc
        .get_mut("wireguard")
        .and_then(|w| w.as_array_of_tables_mut())
    {
        for net in nets.iter_mut() {
            let nname = net
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            if let Some(ms) = net
                .get_mut("member")
                .and_then(|m| m.as_array_of_tables_mut())
            {
                for m in ms.iter_mut() {
                    let owner = m.get("name").and_then(|v| v.as_str()).unwrap_or_default();
                    if let Some(k) = keys.get(&(nname.clone(), owner.to_string())) {
                        m.insert("public_key", toml_edit::value(k.as_str()));
                    }
                }
            }
        }
    }
    if let Some(cs) = doc
        .get_mut("client")
        .and_then(|c| c.as_array_of_tables_mut())
    {
        for c in cs.iter_mut() {
            let net = c
                .get("network")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let owner = c.get("name").and_then(|v| v.as_str()).unwrap_or_default();
            if let Some(k) = keys.get(&(net.to_string(), owner.to_string())) {
                c.insert("public_key", toml_edit::value(k.as_str()));
            }
        }
    }
    let text = doc.to_string();
    preshared(name, &text)?;
    let mut out = files.clone();
    out.insert("site.toml", text.into_bytes());
    Ok(out)
}

/// Every preshared pair of the site: one key, written into the lab key
/// stores of both members (0600), as `rampart wg psk` does on real nodes.
fn preshared(name: &str, site_toml: &str) -> Result<()> {
    let mut map = rampart_types::SourceMap::new();
    let id = map.add("site.toml", site_toml);
    let (Some(plan), _) = rampart_wg::check(id, site_toml) else {
        return Ok(()); // the planner reports the site's errors
    };
    for (net, a, b) in plan.preshared_pairs() {
        let open = |owner: &str| {
            rampart_keystore::KeyStore::open(key_dir(name, owner)?)
                .map_err(|e| Error::new(format!("key store of {owner}: {e}")))
        };
        let (ka, kb) = (open(&a)?, open(&b)?);
        let err = |e: rampart_keystore::KeyStoreError| {
            Error::new(format!("preshared key of ({a}, {b}) in {net}: {e}"))
        };
        let key = match ka.preshared_if_any(&net, &a, &b).map_err(err)? {
            Some(k) => k,
            None => ka.preshared(&net, &a, &b).map_err(err)?,
        };
        if kb.preshared_if_any(&net, &a, &b).map_err(err)?.as_ref() != Some(&key) {
            kb.put_preshared(&net, &a, &b, &key, true).map_err(err)?;
        }
    }
    Ok(())
}

/// Build the lab. `progress` gets one line per step. On failure everything
/// made so far is removed again.
pub fn up(input: &UpInput, planner: &dyn Planner, progress: &mut dyn FnMut(&str)) -> Result<State> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Error::new(
            "the lab needs root (it creates network namespaces)",
        ));
    }
    if !valid_name(input.name) {
        return Err(Error::new(format!(
            "bad lab name `{}` (letters, digits, `-_.`)",
            rampart_types::escape::printable(input.name)
        )));
    }
    if let Some(st) = load(input.name)? {
        return Err(Error::new(format!(
            "lab `{}` is already up (from {}); `rampart lab down --name {}` first",
            st.name, st.site, st.name
        )));
    }
    let id = fresh_id()?;
    let prefix = format!("rl{id}-");
    let facts = wg_facts(input.files, input.site);
    let t = topo::plan(input.site, &facts.eps, &prefix).map_err(Error::new)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(lab_dir(input.name))
        .map_err(|e| Error::new(format!("{}: {e}", lab_dir(input.name).display())))?;
    let mut st = State {
        name: input.name.to_string(),
        id,
        site: input.site_path.to_string(),
        created_at: now(),
        complete: false,
        namespaces: t.namespaces.clone(),
        zones: t.zones.clone(),
        wireguard: vec![],
    };
    save(&st)?;
    match build(input, planner, &t, &facts, &mut st, progress) {
        Ok(()) => {
            st.complete = true;
            save(&st)?;
            Ok(st)
        }
        Err(e) => {
            progress(&format!("failed: {e}; removing what was built"));
            let _ = down(input.name);
            Err(e)
        }
    }
}

fn build(
    input: &UpInput,
    planner: &dyn Planner,
    t: &topo::Topology,
    facts: &WgFacts,
    st: &mut State,
    progress: &mut dyn FnMut(&str),
) -> Result<()> {
    let started = Instant::now();
    let mut step = |msg: String| {
        progress(&format!(
            "[{:>6.2}s] {msg}",
            started.elapsed().as_secs_f64()
        ))
    };
    if !Path::new("/proc/sys/net/bridge").exists() {
        let _ = Command::new("modprobe")
            .arg("br_netfilter")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let count = |k: ZoneKind| t.zones.values().filter(|z| z.kind == k).count();
    step(format!(
        "namespaces: {} (internet, {} node(s), {} guest(s), {} client(s)), prefix rl{}-",
        t.namespaces.len(),
        count(ZoneKind::Node),
        count(ZoneKind::Guest),
        count(ZoneKind::Client),
        st.id
    ));
    for ns in &t.namespaces {
        // Owned by lab.json, not by this handle: never deleted on drop.
        let n = Netns::create(ns)?.keep();
        if t.forwarding.contains(ns) {
            n.sysctl(&[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
            ])?;
        }
        if t.nodes.contains(ns) {
            n.sysctl(&[
                ("net.bridge.bridge-nf-call-iptables", "1"),
                ("net.bridge.bridge-nf-call-ip6tables", "1"),
            ])
            .map_err(|e| Error::new(format!("{e} (is br_netfilter loaded?)")))?;
        }
    }
    let bridges: usize = t
        .devices
        .values()
        .map(|l| l.iter().filter(|x| x.contains("type bridge")).count())
        .sum();
    step(format!("bridges: {bridges}"));
    for (ns, lines) in &t.devices {
        Netns::borrowed(ns).ip_batch(lines)?;
    }
    let veths: usize = t
        .links
        .values()
        .map(|l| l.iter().filter(|x| x.contains("type veth")).count())
        .sum();
    step(format!(
        "links: {veths} veth pairs (guest NICs, uplinks, wan)"
    ));
    for (ns, lines) in &t.links {
        Netns::borrowed(ns).ip_batch(lines)?;
    }
    step("addresses and routes".into());
    // The internet first: the others' routes refer to its addresses.
    for (ns, lines) in &t.config {
        Netns::borrowed(ns).ip_batch(lines)?;
    }
    if !facts.keyed.is_empty() {
        step(format!(
            "keys: {} WireGuard key(s) in {} (0700/0600)",
            facts.keyed.len(),
            lab_dir(&st.name).join("keys").display()
        ));
    }
    let files = enroll(&st.name, input.files, &facts.keyed)?;
    let mut warm: Vec<(String, WgIface)> = Vec::new();
    for n in &input.site.nodes {
        let ns = &st.zones[n.name.as_str()].ns.clone();
        let kd = key_dir(&st.name, &n.name)?;
        let plan = planner
            .node_plan(&files, &n.name, &kd)
            .map_err(|e| Error::new(format!("{}: {e}", n.name)))?;
        let sdir = lab_dir(&st.name).join("state").join(component(&n.name)?);
        let mut opts = rampart_apply::ApplyOpts::new(&sdir);
        opts.record_kernel_hash = false;
        let sys = HostSystem::in_netns(ns.clone());
        let rules = plan.ruleset.lines().count();
        rampart_apply::apply(&sys, &plan, &opts)
            .map_err(|e| Error::new(format!("applying {}'s plan: {e}", n.name)))?;
        step(format!(
            "{}: plan applied ({rules} ruleset lines, {} sysctl(s))",
            n.name,
            plan.sysctls.len()
        ));
        // rampart_apply carried out the node's network side (WireGuard,
        // routes, rules); the lab only records what runs where.
        warm.extend(plan.wireguard.iter().map(|i| (ns.clone(), i.clone())));
        network_up(
            st,
            &n.name,
            ns,
            &n.name,
            &plan.wireguard,
            &[],
            &[],
            &mut step,
        )?;
    }
    // Guest members and road warriors.
    let mut others: Vec<(String, String)> = facts
        .guest_members
        .iter()
        .map(|(m, z)| (m.clone(), z.clone()))
        .collect();
    for c in &facts.eps.clients {
        others.push((c.clone(), c.clone()));
    }
    for (owner, zone) in others {
        let Some(z) = st.zones.get(&zone) else {
            continue;
        };
        let ns = z.ns.clone();
        let (ifaces, routes) = planner
            .wg_of(&files, &owner, &key_dir(&st.name, &owner)?)
            .map_err(|e| Error::new(format!("{owner}: {e}")))?;
        warm.extend(ifaces.iter().map(|i| (ns.clone(), i.clone())));
        network_up(st, &zone, &ns, &owner, &ifaces, &routes, &[], &mut step)?;
    }
    warm_up(&warm, &mut step);
    save(st)?;
    Ok(())
}

/// Handshake every tunnel now, one interface at a time, so the first
/// probes do not meet a handshake in progress (two peers initiating at once
/// can lose the first packets for the 5 s WireGuard waits before retrying).
/// A peer is poked by setting its keepalive (which sends one at once), then
/// its keepalive is put back as the plan has it. Both ends of a link are
/// poked: a side whose first initiation went out before its peer existed
/// waits WireGuard's 5 s before it initiates again, but the other side has
/// nothing pending and completes the handshake at once.
fn warm_up(ifaces: &[(String, WgIface)], step: &mut dyn FnMut(String)) {
    let t = Instant::now();
    let mut total = 0;
    let mut done = 0;
    let set_keepalive = |ns: &str, iface: &str, key: &str, ka: &str| {
        if let Ok(mut c) = wg_cmd(&Netns::borrowed(ns), "wg") {
            c.args(["set", iface, "peer", key, "persistent-keepalive", ka]);
            let _ = crate::netns::run(&mut c, None);
        }
    };
    // Each interface's own public key, to find the far end of a link.
    let own_keys: Vec<Option<String>> = ifaces
        .iter()
        .map(|(ns, i)| {
            let mut c = wg_cmd(&Netns::borrowed(ns), "wg").ok()?;
            c.args(["show", &i.name, "public-key"]);
            let o = crate::netns::run(&mut c, None).ok()?;
            let k = String::from_utf8_lossy(&o.stdout).trim().to_string();
            (!k.is_empty()).then_some(k)
        })
        .collect();
    // (namespace, interface, peer key of us there, its planned keepalive)
    let far_end = |k: usize, peer_key: &str| -> Option<(String, String, String, String)> {
        let me = own_keys[k].as_deref()?;
        ifaces.iter().zip(&own_keys).find_map(|((ns, i), key)| {
            if key.as_deref() != Some(peer_key) {
                return None;
            }
            let back = i.peers.iter().find(|p| p.public_key == me)?;
            back.endpoint.as_ref()?;
            let ka = back
                .persistent_keepalive
                .map(|k| k.to_string())
                .unwrap_or_else(|| "off".into());
            Some((ns.clone(), i.name.to_string(), me.to_string(), ka))
        })
    };
    for (k, (ns, i)) in ifaces.iter().enumerate() {
        let n = Netns::borrowed(ns);
        let shaken = |n: &Netns| -> BTreeSet<String> {
            let Ok(mut c) = wg_cmd(n, "wg") else {
                return BTreeSet::new();
            };
            c.args(["show", &i.name, "latest-handshakes"]);
            crate::netns::run(&mut c, None)
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter_map(|l| {
                            let (k, ts) = l.split_once('\t')?;
                            (ts.trim() != "0").then(|| k.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let have = shaken(&n);
        let todo: Vec<&rampart_apply::WgPeer> = i
            .peers
            .iter()
            .filter(|p| p.endpoint.is_some() && !have.contains(&p.public_key))
            .collect();
        if todo.is_empty() {
            continue;
        }
        total += todo.len();
        let far: Vec<(String, String, String, String)> = todo
            .iter()
            .filter_map(|p| far_end(k, &p.public_key))
            .collect();
        for p in &todo {
            // When only this side can initiate (the far end has no endpoint
            // for it) and its first initiation may have gone out before the
            // far end existed, a fresh peer entry initiates at once instead
            // of after WireGuard's 5 s retry. Same key, endpoint and
            // AllowedIPs; a preshared key stays untouched (keepalive poke).
            let fresh = far_end(k, &p.public_key).is_none() && p.preshared_key_file.is_none();
            if let (true, Some(ep), Ok(mut rm), Ok(mut add)) = (
                fresh,
                p.endpoint.as_ref(),
                wg_cmd(&n, "wg"),
                wg_cmd(&n, "wg"),
            ) {
                rm.args(["set", &i.name, "peer", &p.public_key, "remove"]);
                let _ = crate::netns::run(&mut rm, None);
                add.args(["set", &i.name, "peer", &p.public_key, "endpoint", ep]);
                if !p.allowed_ips.is_empty() {
                    add.args(["allowed-ips", &p.allowed_ips.join(",")]);
                }
                add.args(["persistent-keepalive", "1"]);
                let _ = crate::netns::run(&mut add, None);
            } else {
                set_keepalive(ns, &i.name, &p.public_key, "1");
            }
        }
        for (fns, fif, key, _) in &far {
            set_keepalive(fns, fif, key, "1");
        }
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let have = shaken(&n);
            if todo.iter().all(|p| have.contains(&p.public_key)) || Instant::now() > deadline {
                done += todo.iter().filter(|p| have.contains(&p.public_key)).count();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for p in &todo {
            let ka = p
                .persistent_keepalive
                .map(|k| k.to_string())
                .unwrap_or_else(|| "off".into());
            set_keepalive(ns, &i.name, &p.public_key, &ka);
        }
        for (fns, fif, key, ka) in &far {
            set_keepalive(fns, fif, key, ka);
        }
    }
    if total > 0 {
        step(format!(
            "WireGuard handshakes: {done} of {total} peer link(s) up in {:.2} s",
            t.elapsed().as_secs_f64()
        ));
    }
}

/// `wg`/`wireguard-go` in namespace `ns` with its private
/// `/var/run/wireguard`: the directory `rampart_apply` uses for the same
/// namespace, so node interfaces (made by apply) and guest/client ones
/// (made here) are found by the same `wg`.
fn wg_cmd(n: &Netns, program: &str) -> Result<Command> {
    let dir = Path::new(rampart_apply::NETNS_WG_ROOT)
        .join(n.name())
        .join("wireguard");
    std::fs::create_dir_all(&dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
    Ok(n.wg_command(&dir, program))
}

/// Text for `wg setconf`: listen port and peers (no private key).
fn setconf(i: &WgIface) -> String {
    let mut s = String::from("[Interface]\n");
    if let Some(p) = i.listen_port {
        s.push_str(&format!("ListenPort = {p}\n"));
    }
    for p in &i.peers {
        s.push_str(&format!("\n[Peer]\nPublicKey = {}\n", p.public_key));
        if let Some(e) = &p.endpoint {
            s.push_str(&format!("Endpoint = {e}\n"));
        }
        if !p.allowed_ips.is_empty() {
            s.push_str(&format!("AllowedIPs = {}\n", p.allowed_ips.join(", ")));
        }
        if let Some(k) = p.persistent_keepalive {
            s.push_str(&format!("PersistentKeepalive = {k}\n"));
        }
    }
    s
}

fn run_ok(mut c: Command, what: &str) -> Result<String> {
    crate::netns::run(&mut c, None)
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .map_err(|e| Error::new(format!("{what}: {e}")))
}

/// Remember a WireGuard interface of `zone` (its addresses, networks and
/// the UDP port it owns).
fn record_wg(st: &mut State, zone: &str, owner: &str, i: &WgIface) {
    st.wireguard.push(format!("{owner}/{}", i.name));
    if let Some(z) = st.zones.get_mut(zone) {
        let mut nets = Vec::new();
        for a in &i.addresses {
            if let Ok(net) = a.parse::<IpNet>() {
                z.addrs.push(net.addr());
                nets.push(net.trunc());
            }
        }
        z.nets.push((i.name.to_string(), nets));
        z.busy_udp.extend(i.listen_port);
    }
}

/// WireGuard interfaces (wireguard-go, with this namespace's own
/// `/var/run/wireguard`), their addresses, then routes and policy rules.
#[allow(clippy::too_many_arguments)]
fn network_up(
    st: &mut State,
    zone: &str,
    ns: &str,
    owner: &str,
    ifaces: &[WgIface],
    routes: &[Route],
    rules: &[PolicyRule],
    step: &mut dyn FnMut(String),
) -> Result<()> {
    let n = Netns::borrowed(ns);
    let confdir = lab_dir(&st.name).join("wg");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&confdir)
        .map_err(|e| Error::new(format!("{}: {e}", confdir.display())))?;
    for i in ifaces {
        let applied = n
            .command("ip")
            .args(["link", "show", "dev", &i.name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if applied {
            // Up already: `rampart_apply::apply` made it (a node's plan).
            record_wg(st, zone, owner, i);
            step(format!(
                "{owner}: WireGuard {} up (applied with the plan, {} peer(s), {})",
                i.name,
                i.peers.len(),
                i.addresses.join(" ")
            ));
            continue;
        }
        let mut c = wg_cmd(&n, "wireguard-go")?;
        c.env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .arg(&i.name);
        run_ok(c, &format!("wireguard-go {} in {ns}", i.name))?;
        let conf = confdir.join(component(&format!("{owner}-{}.conf", i.name))?);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&conf)
            .and_then(|mut f| f.write_all(setconf(i).as_bytes()))
            .map_err(|e| Error::new(format!("{}: {e}", conf.display())))?;
        let mut c = wg_cmd(&n, "wg")?;
        c.arg("setconf").arg(&i.name).arg(&conf);
        run_ok(c, &format!("wg setconf {} in {ns}", i.name))?;
        let mut c = wg_cmd(&n, "wg")?;
        c.args(["set", &i.name, "private-key", &i.private_key_file]);
        for p in &i.peers {
            if let Some(psk) = &p.preshared_key_file {
                c.args(["peer", &p.public_key, "preshared-key", psk]);
            }
        }
        run_ok(c, &format!("wg set {} in {ns}", i.name))?;
        let mut lines: Vec<String> = i
            .addresses
            .iter()
            .map(|a| {
                let v6 = a.contains(':');
                format!(
                    "addr add {a} dev {}{}",
                    i.name,
                    if v6 { " nodad" } else { "" }
                )
            })
            .collect();
        if let Some(m) = i.mtu {
            lines.push(format!("link set {} mtu {m}", i.name));
        }
        lines.push(format!("link set {} up", i.name));
        n.ip_batch(&lines)?;
        record_wg(st, zone, owner, i);
        step(format!(
            "{owner}: WireGuard {} up (wireguard-go, {} peer(s), {})",
            i.name,
            i.peers.len(),
            i.addresses.join(" ")
        ));
    }
    let mut lines = Vec::new();
    for r in routes {
        let mut l = format!("route replace {} dev {}", r.dest, r.dev);
        if let Some(v) = &r.via {
            l.push_str(&format!(" via {v}"));
        }
        if let Some(t) = r.table {
            l.push_str(&format!(" table {t}"));
        }
        lines.push(l);
    }
    n.ip_batch(&lines)?;
    for r in rules {
        let fam = if r.from.contains(':') { "-6" } else { "-4" };
        let mut c = n.command("ip");
        c.args([fam, "rule", "add", "from", &r.from]);
        if let Some(i) = &r.iif {
            c.args(["iif", i]);
        }
        c.args([
            "lookup",
            &r.table.to_string(),
            "priority",
            &r.priority.to_string(),
        ]);
        run_ok(c, &format!("ip rule in {ns}"))?;
    }
    if !routes.is_empty() || !rules.is_empty() {
        step(format!(
            "{owner}: {} route(s), {} policy rule(s)",
            routes.len(),
            rules.len()
        ));
    }
    Ok(())
}

/// Remove lab `name`: every process in its namespaces (wireguard-go), the
/// namespaces, their WireGuard socket directories and the lab's state and
/// keys. Returns false when there was no such lab (nothing to do).
pub fn down(name: &str) -> Result<bool> {
    let Some(st) = load(name)? else {
        return Ok(false);
    };
    let mut pids = Vec::new();
    for ns in st.namespaces.iter().rev() {
        pids.extend(Netns::borrowed(ns).pids());
        // Drop of an owned handle: kill its processes by pid, remove the
        // namespace and its /run/rampart-lab/<ns> directory.
        if netns::list(ns).iter().any(|n| n == ns) {
            drop(Netns::owned(ns));
        } else {
            let _ = std::fs::remove_dir_all(Path::new(netns::WG_RUN_ROOT).join(ns));
            let _ = std::fs::remove_dir_all(Path::new(rampart_apply::NETNS_WG_ROOT).join(ns));
        }
    }
    // SIGKILL is delivered asynchronously: wait until the processes have
    // exited (a zombie runs nothing) so `down` returning means they are gone.
    let running = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| !s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(running) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = st
        .namespaces
        .iter()
        .filter(|ns| netns::list(ns).iter().any(|n| n == *ns))
        .cloned()
        .collect();
    if !left.is_empty() {
        return Err(Error::new(format!(
            "could not remove namespace(s) {}",
            left.join(", ")
        )));
    }
    std::fs::remove_dir_all(lab_dir(name))
        .map_err(|e| Error::new(format!("{}: {e}", lab_dir(name).display())))?;
    Ok(true)
}

// ------------------------------------------------------------------ probes

/// One packet to send in a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteProbe {
    /// A zone of the lab (`internet`, a node, `vm100`, a client) or an address.
    pub from: String,
    pub to: String,
    pub proto: PacketProto,
    /// Required for tcp/udp.
    pub dport: Option<u16>,
    pub sport: Option<u16>,
    /// ICMP type number; default echo request.
    pub icmp_type: Option<u8>,
    pub source: Option<IpAddr>,
    pub dest: Option<IpAddr>,
    pub family: Option<Family>,
}

/// Far addresses of the internet (on its loopback) when a probe names no
/// source: outside every network of the lab.
fn far_default(st: &State, fam: Family) -> IpAddr {
    let cands: &[&str] = match fam {
        Family::V4 => &["198.18.0.1", "198.19.255.1", "192.0.0.170"],
        Family::V6 => &["2001:db8:ffff:ffff::1", "2001:db8:fffe:ffff::1"],
    };
    let all_nets: Vec<IpNet> = st
        .zones
        .values()
        .flat_map(|z| z.nets.iter().flat_map(|(_, n)| n.iter().copied()))
        .collect();
    let taken = |a: &IpAddr| {
        all_nets.iter().any(|n| n.contains(a))
            || st
                .zones
                .values()
                .any(|z| z.kind != ZoneKind::Internet && z.addrs.contains(a))
    };
    cands
        .iter()
        .map(|c| c.parse::<IpAddr>().expect("literal"))
        .find(|a| !taken(a))
        .unwrap_or_else(|| cands[0].parse().expect("literal"))
}

/// The zone of a probe end: a zone name, or an address (the zone that has
/// it, else the one whose network holds it, else the internet).
fn zone_for<'a>(st: &'a State, what: &str) -> Result<(&'a str, Option<IpAddr>)> {
    if let Some((name, _)) = st.zones.get_key_value(what) {
        return Ok((name.as_str(), None));
    }
    // `hv1@public`, `hv1@vmbr0`, `hv1@wg0`, `vm100@net1`: one address.
    if let Some((z, q)) = what.split_once('@') {
        let (name, zone) = st
            .zones
            .get_key_value(z)
            .ok_or_else(|| Error::new(format!("`{z}` is not a zone of this lab")))?;
        let a = if q == "public" {
            zone.addrs.iter().copied().find(topo::is_public)
        } else {
            zone.nets
                .iter()
                .filter(|(i, _)| i == q)
                .flat_map(|(_, nets)| nets.iter())
                .find_map(|n| zone.addrs.iter().copied().find(|a| n.contains(a)))
        };
        let a = a.ok_or_else(|| Error::new(format!("{z} has no address `@{q}` in this lab")))?;
        return Ok((name.as_str(), Some(a)));
    }
    let Ok(a) = what.parse::<IpAddr>() else {
        let mut names: Vec<&str> = st.zones.keys().map(String::as_str).collect();
        names.sort();
        return Err(Error::new(format!(
            "`{what}` is not a zone of this lab ({}) nor an address",
            names.join(", ")
        )));
    };
    if let Some((n, _)) = st.zones.iter().find(|(_, z)| z.addrs.contains(&a)) {
        return Ok((n.as_str(), Some(a)));
    }
    // An address on a network of the internet (a public segment).
    let inet = &st.zones["internet"];
    if inet
        .nets
        .iter()
        .any(|(_, nets)| nets.iter().any(|n| n.contains(&a)))
    {
        return Ok(("internet", Some(a)));
    }
    if let Some((n, _)) = st.zones.iter().find(|(_, z)| {
        z.kind == ZoneKind::Node
            && z.nets
                .iter()
                .any(|(_, nets)| nets.iter().any(|n| n.contains(&a)))
    }) {
        return Err(Error::new(format!(
            "{a} is on a private network of {n}: give it to a guest or node of the site"
        )));
    }
    Ok(("internet", Some(a)))
}

/// The LAN machine whose network holds `a`, if one was made.
fn lan_of(st: &State, a: IpAddr) -> Option<&str> {
    st.zones
        .iter()
        .find(|(_, z)| {
            z.kind == ZoneKind::Lan && z.nets.iter().any(|(_, n)| n.iter().any(|n| n.contains(&a)))
        })
        .map(|(n, _)| n.as_str())
}

/// A machine on node `node`'s bridge whose private network holds `a` (not
/// a network the internet is on, not an address of the lab): made on first
/// use, recorded in the lab's state (so `down` removes it).
fn ensure_lan(st: &mut State, a: IpAddr) -> Result<()> {
    if lan_of(st, a).is_some()
        || st.zones.values().any(|z| z.addrs.contains(&a))
        || st.zones["internet"]
            .nets
            .iter()
            .any(|(_, n)| n.iter().any(|n| n.contains(&a)))
    {
        return Ok(());
    }
    let hit = st.zones.iter().find_map(|(name, z)| {
        if z.kind != ZoneKind::Node {
            return None;
        }
        z.nets.iter().enumerate().find_map(|(bi, (br, nets))| {
            nets.iter().any(|n| n.contains(&a)).then(|| {
                (
                    name.clone(),
                    z.ns.clone(),
                    bi,
                    br.clone(),
                    nets.clone(),
                    z.addrs.clone(),
                )
            })
        })
    });
    let Some((node, node_ns, bi, bridge, nets, node_addrs)) = hit else {
        return Ok(());
    };
    let zone = format!("lan-{node}-{bridge}");
    let ns = format!("rl{}-l-{node}-{bridge}", st.id);
    let n = Netns::create(&ns)?.keep();
    st.namespaces.push(ns.clone());
    st.zones.insert(
        zone,
        Zone {
            ns: ns.clone(),
            kind: ZoneKind::Lan,
            addrs: vec![],
            nets: vec![("eth0".into(), nets.clone())],
            busy_udp: vec![],
        },
    );
    save(st)?;
    let port = format!("lx{bi}");
    Netns::borrowed(&node_ns).ip_batch(&[
        format!("link add {port} type veth peer name eth0 netns {ns}"),
        format!("link set {port} master {bridge} up"),
    ])?;
    let mut lines = vec!["link set eth0 up".to_string()];
    for fam in Family::both() {
        if let Some(gw) = node_addrs
            .iter()
            .find(|x| Family::of(x) == fam && nets.iter().any(|n| n.contains(*x)))
        {
            let any = if fam == Family::V4 {
                "0.0.0.0/0"
            } else {
                "::/0"
            };
            // The address comes with the probe; the route needs the link up.
            lines.push(format!("route add {any} via {gw} dev eth0 onlink"));
        }
    }
    n.ip_batch(&lines)
}

/// Make sure `addr` is an address of `zone`'s namespace.
fn ensure_addr(zone: &Zone, addr: IpAddr) -> Result<()> {
    if zone.addrs.contains(&addr) {
        return Ok(());
    }
    let v6 = if addr.is_ipv6() { " nodad" } else { "" };
    let on_link = zone.nets.iter().find_map(|(i, nets)| {
        nets.iter()
            .find(|n| n.contains(&addr))
            .map(|n| (i.clone(), n.prefix_len()))
    });
    let line = match on_link {
        Some((i, p)) => format!("addr replace {addr}/{p} dev {i}{v6}"),
        None if zone.kind == ZoneKind::Internet => {
            format!("addr replace {} dev lo{v6}", IpNet::from(addr))
        }
        None => {
            let i = zone
                .nets
                .first()
                .map(|x| x.0.clone())
                .ok_or_else(|| Error::new("zone without interfaces"))?;
            format!("addr replace {} dev {i}{v6}", IpNet::from(addr))
        }
    };
    Netns::borrowed(&zone.ns).ip_batch(&[line])
}

/// Addresses of `a` and `b` (of `fam`) on one network both are on.
fn shared_pair(a: &Zone, b: &Zone, fam: Family) -> Option<(IpAddr, IpAddr)> {
    if a.kind == ZoneKind::Internet || b.kind == ZoneKind::Internet {
        return None;
    }
    for x in a.addrs.iter().filter(|x| Family::of(x) == fam) {
        for (_, anets) in &a.nets {
            for net in anets.iter().filter(|n| n.contains(x)) {
                if let Some(y) = b.addrs.iter().find(|y| {
                    net.contains(*y)
                        && b.nets
                            .iter()
                            .any(|(_, bn)| bn.iter().any(|n| n.contains(*y)))
                }) {
                    return Some((*x, *y));
                }
            }
        }
    }
    None
}

struct Resolved {
    sns: String,
    dns: String,
    spec: Spec,
    /// A UDP port the lab already listens on: watch, don't answer.
    sniff: bool,
}

fn resolve<'a>(st: &'a State, p: &SiteProbe, id: u16) -> Result<Resolved> {
    let (fz, fsrc) = zone_for(st, &p.from)?;
    let (tz, tdst) = zone_for(st, &p.to)?;
    // A source that another zone owns is not what the sender uses (the
    // simulator reports the address after NAT, e.g. a gateway's): let
    // the lab pick the sender's own.
    let other_owner = |a: &IpAddr| {
        st.zones
            .iter()
            .any(|(n, z)| n != fz && z.kind != ZoneKind::Internet && z.addrs.contains(a))
    };
    let src_given = p.source.filter(|a| !other_owner(a)).or(fsrc);
    let dst_given = p.dest.or(tdst);
    // An internet end whose address is on a LAN machine's network is that
    // machine.
    let lan = |z: &'a str, a: Option<IpAddr>| match a {
        Some(a) if z == "internet" => lan_of(st, a).unwrap_or(z),
        _ => z,
    };
    let (fz, tz) = (lan(fz, p.source), lan(tz, p.dest));
    let from = &st.zones[fz];
    let to = &st.zones[tz];
    let fam = p
        .family
        .or(src_given.map(|a| Family::of(&a)))
        .or(dst_given.map(|a| Family::of(&a)))
        .unwrap_or(match p.proto {
            PacketProto::Icmpv6 => Family::V6,
            _ => Family::V4,
        });
    // Without explicit addresses: the two ends' addresses on a network
    // they share (a bridge, a tunnel), else the public ones (the path
    // crosses the internet), else the first of the family.
    let shared = shared_pair(from, to, fam);
    let pick = |z: &Zone, other: Option<IpAddr>| {
        let on = |a: &IpAddr| {
            other.is_some_and(|o| {
                z.nets
                    .iter()
                    .any(|(_, n)| n.iter().any(|n| n.contains(a) && n.contains(&o)))
            })
        };
        let of_fam = || z.addrs.iter().copied().filter(|a| Family::of(a) == fam);
        of_fam()
            .find(on)
            .or_else(|| of_fam().find(topo::is_public))
            .or_else(|| of_fam().next())
    };
    let (src, dst) = match (src_given, dst_given, shared) {
        (Some(s), Some(d), _) => (s, d),
        (None, None, Some(pair)) => pair,
        (s, d, _) => {
            let dst = match d {
                Some(a) => a,
                None if to.kind == ZoneKind::Internet => far_default(st, fam),
                None => pick(to, s)
                    .ok_or_else(|| Error::new(format!("{} has no {fam} address", p.to)))?,
            };
            let src = match s {
                Some(a) => a,
                None if from.kind == ZoneKind::Internet => far_default(st, fam),
                None => pick(from, Some(dst))
                    .ok_or_else(|| Error::new(format!("{} has no {fam} address", p.from)))?,
            };
            (src, dst)
        }
    };
    if Family::of(&src) != Family::of(&dst) {
        return Err(Error::new(format!("{src} and {dst} are not one family")));
    }
    let proto = match p.proto {
        PacketProto::Tcp => ProbeProto::Tcp,
        PacketProto::Udp => ProbeProto::Udp,
        PacketProto::Icmp | PacketProto::Icmpv6 => ProbeProto::Icmp,
    };
    if proto != ProbeProto::Icmp && p.dport.is_none() {
        return Err(Error::new(format!("a {} probe needs a port", p.proto)));
    }
    ensure_addr(from, src)?;
    ensure_addr(to, dst)?;
    Ok(Resolved {
        sniff: proto == ProbeProto::Udp && to.busy_udp.contains(&p.dport.unwrap_or(0)),
        sns: from.ns.clone(),
        dns: to.ns.clone(),
        spec: Spec {
            proto,
            src,
            dst,
            sport: p.sport.unwrap_or(0),
            dport: p.dport.unwrap_or(0),
            icmp_type: p.icmp_type.unwrap_or(if dst.is_ipv4() { 8 } else { 128 }),
            icmp_code: 0,
            id,
            spoof: None,
        },
    })
}

/// Forget every neighbour (ARP/NDP) entry in the lab's namespaces, so the
/// next probe resolves its next hop from its own source address.
pub fn flush_neighbours(st: &State) {
    for ns in &st.namespaces {
        let _ = Command::new("ip")
            .args(["-n", ns, "neigh", "flush", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Send every probe at once (listeners first, one helper per namespace)
/// and report what the kernel did with each: the TCP handshake completed,
/// the UDP datagram was answered, the ping was answered (ACCEPT); a reset or
/// an ICMP error (REJECT); nothing within `timeout` (DROP).
pub fn probe_all(
    st: &mut State,
    helper: &Helper,
    timeout: Duration,
    probes: &[SiteProbe],
) -> Vec<Result<Observed>> {
    let mut results: Vec<Option<Result<Observed>>> = probes.iter().map(|_| None).collect();
    // Machines on private LANs that probes name by address.
    for (i, p) in probes.iter().enumerate() {
        let named = [&p.from, &p.to]
            .into_iter()
            .filter_map(|x| x.parse::<IpAddr>().ok());
        for a in named.chain(p.source).chain(p.dest) {
            if let Err(e) = ensure_lan(st, a) {
                results[i] = Some(Err(e));
            }
        }
    }
    let st: &State = st;
    let mut resolved = Vec::new();
    for (i, p) in probes.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        match resolve(st, p, 0x4000 + i as u16) {
            Ok(r) => {
                if std::env::var_os("RAMPART_LAB_DEBUG").is_some() {
                    eprintln!(
                        "probe {i}: {} -> {}: {} from {} to {}{}",
                        p.from,
                        p.to,
                        r.spec.encode(),
                        r.sns,
                        r.dns,
                        if r.sniff { " (watched)" } else { "" }
                    );
                }
                resolved.push((i, r))
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let cmd = |ns: &str| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns])
            .arg(&helper.exe)
            .args(&helper.prefix);
        c
    };
    let mut listen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, r) in &resolved {
        let s = &r.spec;
        let arg = match s.proto {
            ProbeProto::Tcp => format!("--tcp {},{}", s.dst, s.dport),
            ProbeProto::Udp if r.sniff && s.dst.is_ipv4() => "--udp-sniff4".into(),
            ProbeProto::Udp if r.sniff => "--udp-sniff6".into(),
            ProbeProto::Udp => format!("--udp {},{}", s.dst, s.dport),
            ProbeProto::Icmp if s.icmp_type == 8 || s.icmp_type == 128 => continue,
            // Not an echo: the target watches for it; arrival is ACCEPT.
            ProbeProto::Icmp if s.dst.is_ipv4() => "--icmp4".into(),
            ProbeProto::Icmp => "--icmp6".into(),
        };
        listen.entry(r.dns.clone()).or_default().insert(arg);
    }
    let mut servers = Vec::new();
    for (ns, args) in &listen {
        let mut c = cmd(ns);
        c.arg("serve");
        for a in args {
            c.args(a.split(' '));
        }
        let started = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let fail = |e: String, results: &mut Vec<Option<Result<Observed>>>| {
            for (i, r) in &resolved {
                if &r.dns == ns && r.spec.proto != ProbeProto::Icmp {
                    results[*i] = Some(Err(Error::new(e.clone())));
                }
            }
        };
        match started {
            Ok(mut child) => {
                let stdin = child.stdin.take();
                let mut out = BufReader::new(child.stdout.take().expect("piped"));
                let mut line = String::new();
                let _ = out.read_line(&mut line);
                if line.trim() != "ready" {
                    let _ = child.kill();
                    let err = child
                        .wait_with_output()
                        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
                        .unwrap_or_default();
                    fail(
                        format!("listeners in {ns} did not start: {err}"),
                        &mut results,
                    );
                    continue;
                }
                servers.push((ns.clone(), child, stdin, out));
            }
            Err(e) => fail(format!("probe helper {:?}: {e}", helper.exe), &mut results),
        }
    }
    let watched = |r: &Resolved| {
        r.sniff
            || (r.spec.proto == ProbeProto::Icmp
                && r.spec.icmp_type != 8
                && r.spec.icmp_type != 128)
    };
    let sniffed: Vec<(usize, String, Spec)> = resolved
        .iter()
        .filter(|(_, r)| watched(r))
        .map(|(i, r)| (*i, r.dns.clone(), r.spec.clone()))
        .collect();
    let mut by_ns: BTreeMap<String, Vec<(usize, Spec)>> = BTreeMap::new();
    for (i, r) in resolved {
        if results[i].is_none() {
            by_ns.entry(r.sns).or_default().push((i, r.spec));
        }
    }
    let mut senders = Vec::new();
    for (ns, list) in by_ns {
        let mut c = cmd(&ns);
        c.arg("send")
            .arg("--timeout-ms")
            .arg(timeout.as_millis().to_string());
        for (_, s) in &list {
            c.arg(s.encode());
        }
        match c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(child) => senders.push((child, list.iter().map(|x| x.0).collect::<Vec<_>>())),
            Err(e) => {
                for (i, _) in list {
                    results[i] = Some(Err(Error::new(format!("probe helper: {e}"))));
                }
            }
        }
    }
    for (mut child, idx) in senders {
        let out = BufReader::new(child.stdout.take().expect("piped"));
        for line in out.lines().map_while(|l| l.ok()) {
            if let Some((k, r, _)) = probe::parse_result_line(line.trim_end()) {
                if let Some(&i) = idx.get(k) {
                    results[i] = Some(r.map_err(Error::new));
                }
            }
        }
        let _ = child.wait();
    }
    // Close the listeners; they report which watched datagrams arrived.
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for (ns, mut child, stdin, out) in servers {
        drop(stdin);
        for line in out.lines().map_while(|l| l.ok()) {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f.as_slice() {
                ["seen", "udp", src, dport] => {
                    seen.insert((ns.clone(), format!("udp {src} {dport}")));
                }
                ["seen", fam, ty, id] => {
                    seen.insert((ns.clone(), format!("icmp{fam} {ty} {id}")));
                }
                _ => {}
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    for (i, dns, s) in sniffed {
        let key = if s.proto == ProbeProto::Udp {
            format!("udp {} {}", s.src, s.dport)
        } else {
            let fam = if s.dst.is_ipv4() { 4 } else { 6 };
            format!("icmp{fam} {} {}", s.icmp_type, s.id)
        };
        if matches!(results[i], Some(Ok(Observed::Drop))) && seen.contains(&(dns, key)) {
            results[i] = Some(Ok(Observed::Accept));
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::new("the probe helper gave no answer"))))
        .collect()
}

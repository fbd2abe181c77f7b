//! The network side of a plan: WireGuard interfaces (kernel WireGuard when
//! `ip link add type wireguard` works, else `wireguard-go` with a control
//! socket directory private to the network namespace), their addresses,
//! MTU and peers, the routes and the policy rules rampart owns.
//!
//! Everything is a diff between the plan recorded as running (what rampart
//! applied before: it owns exactly that) and the new plan, checked against
//! what the kernel shows, so a re-apply of the same plan changes nothing.
//! Private keys are read from the key store at apply time and handed to
//! `wg syncconf` on its standard input: never on a command line, never in a
//! log, an error or the state directory.
//!
//! Order (see [`crate::apply`]): the firewall first, the network after, so
//! a new listen port or route never exists before the rules that guard it,
//! and a removed interface goes only after its rules tightened.

use crate::error::Error;
use crate::plan::{Plan, PolicyRule, Route, WgIface};
use crate::revert::sh_quote;
use crate::system::System;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// What [`apply_network`] changed (for the outcome and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetChanges {
    /// One line per change (`wg0: created (wireguard-go)`, `route add ...`).
    pub changes: Vec<String>,
}

impl NetChanges {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

fn step_err(iface: &str, step: &str, e: Error) -> Error {
    Error::Network {
        what: iface.to_owned(),
        step: step.to_owned(),
        source: Box::new(e),
    }
}

/// Bring the network side from `old` (the recorded plan, if any) to `new`.
pub fn apply_network(
    sys: &dyn System,
    old: Option<&Plan>,
    new: &Plan,
) -> Result<NetChanges, Error> {
    let mut ch = NetChanges::default();
    let empty = Plan::nftables(new.node.clone(), "");
    let old = old.unwrap_or(&empty);
    if old.wireguard.is_empty()
        && old.routes.is_empty()
        && old.rules.is_empty()
        && !has_network(new)
    {
        return Ok(ch);
    }
    // Rules and routes that go away first (they may point at an interface
    // that goes away).
    for r in old.rules.iter().filter(|r| !new.rules.contains(r)) {
        if rule_present(sys, r)? {
            sys.net_run("ip", &rule_args("del", r), None, false)
                .map_err(|e| step_err(&r.from, "ip rule del", e))?;
            ch.changes.push(format!("rule removed: {}", rule_text(r)));
        }
    }
    for r in old.routes.iter().filter(|r| !new.routes.contains(r)) {
        // Gone already (its interface went) is fine.
        if sys
            .net_run("ip", &route_args("del", r), None, false)
            .is_ok()
        {
            ch.changes.push(format!("route removed: {}", route_text(r)));
        }
    }
    let keep: BTreeSet<&str> = new.wireguard.iter().map(|w| w.name.as_str()).collect();
    for w in old
        .wireguard
        .iter()
        .filter(|w| !keep.contains(w.name.as_str()))
    {
        if link_exists(sys, &w.name) {
            sys.net_run("ip", &["link", "del", "dev", &w.name], None, false)
                .map_err(|e| step_err(&w.name, "ip link del", e))?;
            ch.changes.push(format!("{}: removed", w.name));
        }
    }
    for w in &new.wireguard {
        wg_iface(sys, w, &mut ch)?;
    }
    for r in &new.routes {
        if !route_present(sys, r) {
            sys.net_run("ip", &route_args("replace", r), None, false)
                .map_err(|e| step_err(&r.dev, &format!("ip route replace {}", r.dest), e))?;
            ch.changes.push(format!("route: {}", route_text(r)));
        }
    }
    for r in &new.rules {
        if !rule_present(sys, r)? {
            sys.net_run("ip", &rule_args("add", r), None, false)
                .map_err(|e| step_err(&r.from, "ip rule add", e))?;
            ch.changes.push(format!("rule: {}", rule_text(r)));
        }
    }
    Ok(ch)
}

/// What can be checked of the network side before the firewall changes:
/// every key file the plan names is private (mode, owner), readable and a
/// key. [`apply_network`] runs after the ruleset switch; a key file it
/// cannot use would fail there, with the new rules already live.
pub fn preflight(new: &Plan) -> Result<(), Error> {
    for w in &new.wireguard {
        read_key(&w.private_key_file).map_err(|e| step_err(&w.name, "private key", e))?;
        for p in &w.peers {
            if let Some(f) = &p.preshared_key_file {
                read_key(f).map_err(|e| {
                    let e = match e {
                        Error::Io { source, .. }
                            if source.kind() == std::io::ErrorKind::NotFound =>
                        {
                            // The store is three levels up: DIR/psk/NET/a--b.psk.
                            let store = std::path::Path::new(f)
                                .ancestors()
                                .nth(3)
                                .map(|d| d.display().to_string())
                                .unwrap_or_else(|| "DIR".into());
                            Error::InvalidPlan(format!(
                                "{f} is missing: the site gives the pair ({}, {}) of network `{}` a preshared key; \
                                 put it into both members' key stores with \
                                 `rampart wg psk SITE --store {}={store} --store {}=DIR`",
                                new.node, p.name, w.network, new.node, p.name
                            ))
                        }
                        e => e,
                    };
                    step_err(&w.name, &format!("preshared key of peer {}", p.name), e)
                })?;
            }
        }
    }
    Ok(())
}

pub fn has_network(p: &Plan) -> bool {
    !p.wireguard.is_empty() || !p.routes.is_empty() || !p.rules.is_empty()
}

fn link_exists(sys: &dyn System, name: &str) -> bool {
    sys.net_run("ip", &["link", "show", "dev", name], None, false)
        .is_ok()
}

/// Create (if missing) and configure one WireGuard interface.
fn wg_iface(sys: &dyn System, w: &WgIface, ch: &mut NetChanges) -> Result<(), Error> {
    let name = w.name.as_str();
    if !link_exists(sys, name) {
        let how = if sys
            .net_run(
                "ip",
                &["link", "add", "dev", name, "type", "wireguard"],
                None,
                false,
            )
            .is_ok()
        {
            "kernel WireGuard"
        } else {
            sys.net_run(
                "env",
                &[
                    "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                    "wireguard-go",
                    name,
                ],
                None,
                true,
            )
            .map_err(|e| {
                step_err(
                    name,
                    "create (kernel WireGuard is missing; wireguard-go)",
                    e,
                )
            })?;
            "wireguard-go"
        };
        ch.changes.push(format!("{name}: created ({how})"));
    }
    // The userspace daemon answers on its socket shortly after it forks.
    let t = Instant::now();
    let dump = loop {
        match sys.net_run("wg", &["show", name, "dump"], None, true) {
            Ok(d) => break d,
            Err(e) if t.elapsed() > Duration::from_secs(5) => {
                return Err(step_err(name, "wg show (control socket)", e))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let key = read_key(&w.private_key_file).map_err(|e| step_err(name, "private key", e))?;
    let mut psks = Vec::new();
    for p in &w.peers {
        if let Some(f) = &p.preshared_key_file {
            let k = read_key(f)
                .map_err(|e| step_err(name, &format!("preshared key of peer {}", p.name), e))?;
            psks.push((p.public_key.clone(), k));
        }
    }
    if !wg_matches(&dump, w, &key, &psks) {
        let conf = wg_conf(w, Some(&key), &psks);
        sys.net_run("wg", &["syncconf", name, "/dev/stdin"], Some(&conf), true)
            .map_err(|e| step_err(name, "wg syncconf", redact(e, &key, &psks)))?;
        ch.changes.push(format!(
            "{name}: WireGuard configured ({} peer(s))",
            w.peers.len()
        ));
    }
    // Addresses: exactly the plan's (link-local ones aside).
    let have = addresses(sys, name).map_err(|e| step_err(name, "ip addr show", e))?;
    let want: BTreeSet<String> = w.addresses.iter().map(|a| canon_net(a)).collect();
    for a in have.iter().filter(|a| !want.contains(*a)) {
        sys.net_run("ip", &["addr", "del", a, "dev", name], None, false)
            .map_err(|e| step_err(name, &format!("ip addr del {a}"), e))?;
        ch.changes.push(format!("{name}: address {a} removed"));
    }
    for a in w.addresses.iter().filter(|a| !have.contains(&canon_net(a))) {
        let mut args = vec!["addr", "add", a.as_str(), "dev", name];
        if a.contains(':') {
            args.push("nodad");
        }
        sys.net_run("ip", &args, None, false)
            .map_err(|e| step_err(name, &format!("ip addr add {a}"), e))?;
        ch.changes.push(format!("{name}: address {a}"));
    }
    let (mtu, up) = link_state(sys, name).map_err(|e| step_err(name, "ip link show", e))?;
    if let Some(m) = w.mtu {
        if mtu != Some(m) {
            let ms = m.to_string();
            sys.net_run("ip", &["link", "set", "dev", name, "mtu", &ms], None, false)
                .map_err(|e| step_err(name, "ip link set mtu", e))?;
            ch.changes.push(format!("{name}: mtu {m}"));
        }
    }
    if !up {
        sys.net_run("ip", &["link", "set", "dev", name, "up"], None, false)
            .map_err(|e| step_err(name, "ip link set up", e))?;
        ch.changes.push(format!("{name}: up"));
    }
    Ok(())
}

/// The base64 key of a key store file: the file must be private (no group
/// or other access) and hold one key. Errors name the file, never the
/// contents.
fn read_key(path: &str) -> Result<String, Error> {
    use std::os::unix::fs::MetadataExt;
    let p = std::path::Path::new(path);
    let md = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
    if md.mode() & 0o077 != 0 {
        return Err(Error::InvalidPlan(format!(
            "{path}: key file is accessible by others (mode {:o}); it must be 0600",
            md.mode() & 0o777
        )));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me && md.uid() != 0 {
        return Err(Error::InvalidPlan(format!(
            "{path}: key file is owned by uid {}, not by root or uid {me}",
            md.uid()
        )));
    }
    if !md.is_file() {
        return Err(Error::InvalidPlan(format!(
            "{path}: key file is not a regular file"
        )));
    }
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    let k = text.trim();
    let ok = k.len() == 44
        && k.ends_with('=')
        && k[..43]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !ok {
        return Err(Error::InvalidPlan(format!(
            "{path}: not a WireGuard key (base64 of 32 bytes)"
        )));
    }
    Ok(k.to_owned())
}

fn redact(e: Error, key: &str, psks: &[(String, String)]) -> Error {
    match e {
        Error::Command {
            command,
            status,
            mut stderr,
        } => {
            stderr = stderr.replace(key, "<redacted>");
            for (_, k) in psks {
                stderr = stderr.replace(k.as_str(), "<redacted>");
            }
            Error::Command {
                command,
                status,
                stderr,
            }
        }
        e => e,
    }
}

/// `wg setconf` text of an interface; with `key`, complete (fed on stdin).
pub(crate) fn wg_conf(w: &WgIface, key: Option<&str>, psks: &[(String, String)]) -> String {
    let mut s = String::from("[Interface]\n");
    if let Some(k) = key {
        s.push_str(&format!("PrivateKey = {k}\n"));
    }
    if let Some(p) = w.listen_port {
        s.push_str(&format!("ListenPort = {p}\n"));
    }
    for p in &w.peers {
        s.push_str(&format!("\n[Peer]\nPublicKey = {}\n", p.public_key));
        if let Some((_, k)) = psks.iter().find(|(pk, _)| *pk == p.public_key) {
            s.push_str(&format!("PresharedKey = {k}\n"));
        }
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

/// Whether `wg show IF dump` already is the plan: key, port, and per peer
/// AllowedIPs, endpoint (when the plan names one), keepalive, preshared key.
fn wg_matches(dump: &str, w: &WgIface, key: &str, psks: &[(String, String)]) -> bool {
    let mut lines = dump.lines();
    let Some(head) = lines.next() else {
        return false;
    };
    let h: Vec<&str> = head.split('\t').collect();
    if h.len() < 3 || h[0] != key {
        return false;
    }
    if let Some(p) = w.listen_port {
        if h[2] != p.to_string() {
            return false;
        }
    }
    let peers: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    if peers.len() != w.peers.len() {
        return false;
    }
    for p in &w.peers {
        let Some(d) = peers
            .iter()
            .find(|d| d.first() == Some(&p.public_key.as_str()))
        else {
            return false;
        };
        if d.len() < 8 {
            return false;
        }
        let psk = psks
            .iter()
            .find(|(pk, _)| *pk == p.public_key)
            .map(|(_, k)| k.as_str())
            .unwrap_or("(none)");
        if d[1] != psk {
            return false;
        }
        if let Some(e) = &p.endpoint {
            if d[2] != e && !endpoint_eq(d[2], e) {
                return false;
            }
        }
        let mut have: Vec<String> = if d[3] == "(none)" {
            vec![]
        } else {
            d[3].split(',').map(canon_net).collect()
        };
        let mut want: Vec<String> = p.allowed_ips.iter().map(|a| canon_net(a)).collect();
        have.sort();
        want.sort();
        if have != want {
            return false;
        }
        let ka = p
            .persistent_keepalive
            .map(|k| k.to_string())
            .unwrap_or_else(|| "off".into());
        if d[7] != ka {
            return false;
        }
    }
    true
}

/// `host:port` equality after resolution-free normalisation (brackets).
fn endpoint_eq(a: &str, b: &str) -> bool {
    a.parse::<std::net::SocketAddr>().ok() == b.parse::<std::net::SocketAddr>().ok()
        && a.parse::<std::net::SocketAddr>().is_ok()
}

/// A prefix in canonical text (`10.0.0.0/24`, `fd00::1/64`, a bare address
/// as a host prefix).
fn canon_net(s: &str) -> String {
    let s = s.trim();
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().ok()),
        None => (s, None),
    };
    match a.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let l = len.unwrap_or(if ip.is_ipv4() { 32 } else { 128 });
            format!("{ip}/{l}")
        }
        Err(_) => s.to_owned(),
    }
}

/// The interface's global addresses (`10.0.0.2/24`).
fn addresses(sys: &dyn System, name: &str) -> Result<BTreeSet<String>, Error> {
    let out = sys.net_run("ip", &["-j", "addr", "show", "dev", name], None, false)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| Error::Corrupt {
        path: "ip -j addr".into(),
        message: e.to_string(),
    })?;
    let mut set = BTreeSet::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                continue;
            };
            if a["scope"].as_str() == Some("link") {
                continue;
            }
            set.insert(canon_net(&format!("{local}/{len}")));
        }
    }
    Ok(set)
}

/// (mtu, administratively up).
fn link_state(sys: &dyn System, name: &str) -> Result<(Option<u16>, bool), Error> {
    let out = sys.net_run("ip", &["-j", "link", "show", "dev", name], None, false)?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| Error::Corrupt {
        path: "ip -j link".into(),
        message: e.to_string(),
    })?;
    let l = &v[0];
    let mtu = l["mtu"].as_u64().map(|m| m as u16);
    let up = l["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP")));
    Ok((mtu, up))
}

fn fam(prefix: &str) -> &'static str {
    if prefix.contains(':') {
        "-6"
    } else {
        "-4"
    }
}

fn route_args<'a>(op: &'a str, r: &'a Route) -> Vec<&'a str> {
    let mut a = vec![
        fam(&r.dest),
        "route",
        op,
        r.dest.as_str(),
        "dev",
        r.dev.as_str(),
    ];
    if let Some(v) = &r.via {
        a.extend(["via", v.as_str()]);
    }
    if let Some(t) = &r.table {
        a.extend(["table", leak_u32(*t)]);
    }
    a
}

/// Table numbers as `&str` for argument vectors (small, few, cached).
fn leak_u32(n: u32) -> &'static str {
    use std::sync::Mutex;
    static CACHE: Mutex<Vec<(u32, &'static str)>> = Mutex::new(Vec::new());
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, s)) = c.iter().find(|(k, _)| *k == n) {
        return s;
    }
    let s: &'static str = Box::leak(n.to_string().into_boxed_str());
    c.push((n, s));
    s
}

fn route_text(r: &Route) -> String {
    route_args("replace", r)[1..].join(" ")
}

fn route_present(sys: &dyn System, r: &Route) -> bool {
    let mut args = vec![
        fam(&r.dest),
        "route",
        "show",
        "exact",
        r.dest.as_str(),
        "dev",
        r.dev.as_str(),
    ];
    if let Some(v) = &r.via {
        args.extend(["via", v.as_str()]);
    }
    if let Some(t) = &r.table {
        args.extend(["table", leak_u32(*t)]);
    }
    sys.net_run("ip", &args, None, false)
        .map(|o| !o.trim().is_empty())
        .unwrap_or(false)
}

fn rule_args<'a>(op: &'a str, r: &'a PolicyRule) -> Vec<&'a str> {
    let mut a = vec![
        fam(&r.from),
        "rule",
        op,
        "priority",
        leak_u32(r.priority),
        "from",
        r.from.as_str(),
    ];
    if let Some(i) = &r.iif {
        a.extend(["iif", i.as_str()]);
    }
    a.extend(["lookup", leak_u32(r.table)]);
    a
}

fn rule_text(r: &PolicyRule) -> String {
    rule_args("add", r)[1..].join(" ")
}

fn rule_present(sys: &dyn System, r: &PolicyRule) -> Result<bool, Error> {
    let out = sys
        .net_run("ip", &[fam(&r.from), "-j", "rule", "show"], None, false)
        .map_err(|e| step_err(&r.from, "ip rule show", e))?;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    let want = canon_net(&r.from);
    Ok(v.as_array().into_iter().flatten().any(|x| {
        let src = match (x["src"].as_str(), x["srclen"].as_u64()) {
            (Some(s), Some(l)) => canon_net(&format!("{s}/{l}")),
            (Some(s), None) => canon_net(s),
            _ => return false,
        };
        x["priority"].as_u64() == Some(r.priority as u64)
            && src == want
            && x["table"].as_str() == Some(r.table.to_string().as_str())
            && x["iif"].as_str() == r.iif.as_deref()
    }))
}

/// Where the network side differs from `plan` (empty: in sync). Names the
/// interface, route or rule, never key material.
pub fn network_drift(sys: &dyn System, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    for w in &plan.wireguard {
        if !link_exists(sys, &w.name) {
            out.push(format!("{}: interface missing", w.name));
            continue;
        }
        let key = read_key(&w.private_key_file).ok();
        let psks: Vec<(String, String)> = w
            .peers
            .iter()
            .filter_map(|p| {
                let f = p.preshared_key_file.as_ref()?;
                Some((p.public_key.clone(), read_key(f).ok()?))
            })
            .collect();
        match (
            sys.net_run("wg", &["show", &w.name, "dump"], None, true),
            key,
        ) {
            (Ok(d), Some(k)) if wg_matches(&d, w, &k, &psks) => {}
            (Ok(_), Some(_)) => out.push(format!(
                "{}: WireGuard configuration differs from the plan",
                w.name
            )),
            (Err(_), _) => out.push(format!(
                "{}: WireGuard control socket does not answer",
                w.name
            )),
            (_, None) => out.push(format!("{}: private key file unreadable", w.name)),
        }
        match addresses(sys, &w.name) {
            Ok(have) => {
                let want: BTreeSet<String> = w.addresses.iter().map(|a| canon_net(a)).collect();
                if have != want {
                    out.push(format!("{}: addresses differ from the plan", w.name));
                }
            }
            Err(_) => out.push(format!("{}: addresses unreadable", w.name)),
        }
        if let Ok((_, false)) = link_state(sys, &w.name) {
            out.push(format!("{}: down", w.name));
        }
    }
    for r in &plan.routes {
        if !route_present(sys, r) {
            out.push(format!("route missing: {}", route_text(r)));
        }
    }
    for r in &plan.rules {
        if !rule_present(sys, r).unwrap_or(false) {
            out.push(format!("rule missing: {}", rule_text(r)));
        }
    }
    out
}

/// Shell lines (for the `--confirm` revert script) that take the network
/// side from `new` back to `old`. WireGuard is set with `wg set` only: the
/// private key by its key store path (the script and the state directory
/// never hold key material; setting the same key keeps the sessions), peers
/// the new plan added are removed, the old ones set back.
pub(crate) fn revert_lines(sys: &dyn System, old: Option<&Plan>, new: &Plan) -> Vec<String> {
    let q = |v: &[String]| v.iter().map(|a| sh_quote(a)).collect::<Vec<_>>().join(" ");
    let mut pre = q(&sys.exec_prefix());
    if !pre.is_empty() {
        pre.push(' ');
    }
    let mut wgp = q(&sys.wg_prefix());
    if !wgp.is_empty() {
        wgp.push(' ');
    }
    let empty = Plan::nftables(new.node.clone(), "");
    let old = old.unwrap_or(&empty);
    let mut s = Vec::new();
    let ipl = |args: Vec<&str>| {
        format!(
            "{pre}ip {}",
            args.iter()
                .map(|a| sh_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    for r in new.rules.iter().filter(|r| !old.rules.contains(r)) {
        s.push(format!("{} 2>/dev/null", ipl(rule_args("del", r))));
    }
    for r in new.routes.iter().filter(|r| !old.routes.contains(r)) {
        s.push(format!("{} 2>/dev/null", ipl(route_args("del", r))));
    }
    let keep: BTreeSet<&str> = old.wireguard.iter().map(|w| w.name.as_str()).collect();
    for w in new
        .wireguard
        .iter()
        .filter(|w| !keep.contains(w.name.as_str()))
    {
        s.push(format!(
            "{} 2>/dev/null",
            ipl(vec!["link", "del", "dev", &w.name])
        ));
    }
    for w in &old.wireguard {
        let n = sh_quote(&w.name);
        s.push(format!(
            "{pre}ip link show dev {n} >/dev/null 2>&1 || {pre}ip link add dev {n} type wireguard 2>/dev/null || {wgp}env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go {n} >/dev/null 2>&1 || rc=1"
        ));
        s.push(format!(
            "i=0; until {wgp}wg show {n} >/dev/null 2>&1 || [ $i -ge 50 ]; do sleep 0.1; i=$((i+1)); done"
        ));
        let mut set = format!(
            "{wgp}wg set {n} private-key {}",
            sh_quote(&w.private_key_file)
        );
        if let Some(p) = w.listen_port {
            set.push_str(&format!(" listen-port {p}"));
        }
        let added = new
            .wireguard
            .iter()
            .filter(|x| x.name == w.name)
            .flat_map(|x| x.peers.iter())
            .filter(|p| !w.peers.iter().any(|o| o.public_key == p.public_key));
        for p in added {
            set.push_str(&format!(" peer {} remove", sh_quote(&p.public_key)));
        }
        for p in &w.peers {
            set.push_str(&format!(
                " peer {} allowed-ips {}",
                sh_quote(&p.public_key),
                sh_quote(&p.allowed_ips.join(","))
            ));
            if let Some(e) = &p.endpoint {
                set.push_str(&format!(" endpoint {}", sh_quote(e)));
            }
            set.push_str(&format!(
                " persistent-keepalive {}",
                p.persistent_keepalive.unwrap_or(0)
            ));
            if let Some(f) = &p.preshared_key_file {
                set.push_str(&format!(" preshared-key {}", sh_quote(f)));
            }
        }
        s.push(format!("{set} || rc=1"));
        let old_addrs: BTreeSet<String> = w.addresses.iter().map(|a| canon_net(a)).collect();
        for x in new.wireguard.iter().filter(|x| x.name == w.name) {
            for a in x
                .addresses
                .iter()
                .filter(|a| !old_addrs.contains(&canon_net(a)))
            {
                s.push(format!(
                    "{pre}ip addr del {} dev {n} 2>/dev/null",
                    sh_quote(a)
                ));
            }
        }
        for a in &w.addresses {
            let nodad = if a.contains(':') { " nodad" } else { "" };
            s.push(format!(
                "{pre}ip addr replace {} dev {n}{nodad} || rc=1",
                sh_quote(a)
            ));
        }
        if let Some(m) = w.mtu {
            s.push(format!("{pre}ip link set dev {n} mtu {m} || rc=1"));
        }
        s.push(format!("{pre}ip link set dev {n} up || rc=1"));
    }
    for r in &old.routes {
        s.push(format!("{} || rc=1", ipl(route_args("replace", r))));
    }
    for r in old.rules.iter().filter(|r| !new.rules.contains(r)) {
        s.push(format!("{} || rc=1", ipl(rule_args("add", r))));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::WgPeer;

    fn iface() -> WgIface {
        WgIface {
            name: "wg0".parse().unwrap(),
            network: "n".parse().unwrap(),
            private_key_file: "/k/n.key".into(),
            listen_port: Some(51820),
            addresses: vec!["10.0.0.1/24".into()],
            mtu: None,
            peers: vec![WgPeer {
                name: "b".parse().unwrap(),
                public_key: "B".repeat(43) + "=",
                preshared_key_file: None,
                endpoint: Some("192.0.2.2:51820".into()),
                allowed_ips: vec!["10.0.0.2/32".into(), "10.9.0.0/24".into()],
                persistent_keepalive: Some(25),
            }],
        }
    }

    #[test]
    fn dump_comparison() {
        let k = "A".repeat(43) + "=";
        let pk = "B".repeat(43) + "=";
        let dump = format!(
            "{k}\tPUB\t51820\toff\n{pk}\t(none)\t192.0.2.2:51820\t10.9.0.0/24,10.0.0.2/32\t0\t0\t0\t25\n"
        );
        assert!(wg_matches(&dump, &iface(), &k, &[]));
        let other_key = "C".repeat(43) + "=";
        assert!(!wg_matches(&dump, &iface(), &other_key, &[]));
        let mut w = iface();
        w.peers[0].allowed_ips.pop();
        assert!(!wg_matches(&dump, &w, &k, &[]));
        let mut w = iface();
        w.peers[0].persistent_keepalive = None;
        assert!(!wg_matches(&dump, &w, &k, &[]));
    }

    #[test]
    fn conf_has_the_key_only_when_given() {
        let c = wg_conf(&iface(), None, &[]);
        assert!(!c.contains("PrivateKey"));
        assert!(c.contains("ListenPort = 51820\n"));
        assert!(c.contains("AllowedIPs = 10.0.0.2/32, 10.9.0.0/24\n"));
        let k = "A".repeat(43) + "=";
        assert!(wg_conf(&iface(), Some(&k), &[]).contains(&format!("PrivateKey = {k}")));
    }

    #[test]
    fn key_files_must_be_private_and_keys() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("k");
        std::fs::write(&p, format!("{}=\n", "A".repeat(43))).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_key(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains("0600") && !e.contains("AAAA"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            read_key(p.to_str().unwrap()).unwrap(),
            format!("{}=", "A".repeat(43))
        );
        std::fs::write(&p, "secret-but-not-a-key\n").unwrap();
        let e = read_key(p.to_str().unwrap()).unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn canonical_prefixes() {
        assert_eq!(canon_net("10.0.0.1"), "10.0.0.1/32");
        assert_eq!(canon_net("fd00:0::1/64"), "fd00::1/64");
    }
}

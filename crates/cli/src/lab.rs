//! `rampart lab up|verify|down`: the whole site built for real in network
//! namespaces on this machine (`rampart_lab::site`), each node's plan
//! applied by `rampart_apply::apply`, and the site's intents run with real
//! packets.

use crate::compile::Wg;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use rampart_apply::{Plan, Route, WgIface, WgPeer};
use rampart_lab::site::{self, Planner, SiteProbe};
use rampart_lab::{Helper, Observed};
use rampart_types::SiteFiles;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Subcommand)]
enum LabCommand {
    /// Build the site in network namespaces: nodes, guests, WireGuard
    /// clients, the internet; apply every node's plan; start WireGuard.
    Up(UpArgs),
    /// Run every intent ([[expect]]) with real packets and compare.
    Verify(VerifyArgs),
    /// Remove everything `lab up` made (idempotent).
    Down(DownArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    site: PathBuf,
    /// Lab name (default: the site directory's name).
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    site: PathBuf,
    #[arg(long)]
    name: Option<String>,
    /// How long a probe waits for an answer before calling it dropped.
    #[arg(long, default_value_t = 1500)]
    timeout_ms: u64,
}

#[derive(clap::Args)]
struct DownArgs {
    /// The site (its directory name is the lab's name), or use --name.
    #[arg(required_unless_present = "name")]
    site: Option<PathBuf>,
    #[arg(long)]
    name: Option<String>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    match a.command {
        LabCommand::Up(a) => up(a),
        LabCommand::Verify(a) => verify(a),
        LabCommand::Down(a) => down(a),
    }
}

/// The lab's name: `--name`, else the site directory's base name.
pub fn lab_name(site: Option<&Path>, name: Option<&str>) -> Result<String> {
    if let Some(n) = name {
        if !site::valid_name(n) {
            bail!(
                "bad lab name `{}`: letters, digits and `-_.`, not starting with `.`, 64 bytes at most",
                rampart_types::escape::printable(n)
            );
        }
        return Ok(n.to_string());
    }
    let site = site.ok_or_else(|| anyhow!("say which lab: SITE or --name"))?;
    let abs = std::fs::canonicalize(site).unwrap_or_else(|_| site.to_path_buf());
    let base = abs
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !site::valid_name(&base) {
        bail!("cannot name a lab after `{}`: use --name", site.display());
    }
    Ok(base)
}

/// The plans the lab applies: what `rampart compile` produces for a node
/// (ruleset with the WireGuard listen-port and forwarding rules, sysctls)
/// and its WireGuard interfaces with the lab's key store.
struct CliPlanner;

fn wg_ifaces(wg: &Wg, owner: &str, key_dir: &Path) -> (Vec<WgIface>, Vec<Route>) {
    let kd = key_dir.to_string_lossy();
    let mut ifaces = Vec::new();
    let mut routes = Vec::new();
    for i in wg.interfaces(owner) {
        ifaces.push(WgIface {
            name: i.interface.clone(),
            network: i.network.clone(),
            private_key_file: rampart_wg::plan::private_key_file(&kd, &i.network),
            listen_port: i.listen_port,
            addresses: i.addresses.iter().map(|a| a.to_string()).collect(),
            mtu: i.mtu,
            peers: i
                .peers
                .iter()
                .map(|p| WgPeer {
                    name: p.name.clone(),
                    public_key: p.public_key.to_string(),
                    // The lab's store of this member (both members of a
                    // pair hold the key: rampart_lab::site writes it).
                    preshared_key_file: p.preshared_key_file.as_ref().map(|_| {
                        rampart_wg::plan::preshared_key_file(&kd, &i.network, owner, &p.name)
                    }),
                    endpoint: p.endpoint.clone(),
                    allowed_ips: p.allowed_ips.iter().map(|a| a.to_string()).collect(),
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        });
        for r in &i.routes {
            routes.push(Route {
                dest: r.dest.to_string(),
                dev: r.dev.clone().into(),
                via: None,
                table: r.table,
                origin: format!("auto:wireguard {}", i.interface),
            });
        }
    }
    (ifaces, routes)
}

impl Planner for CliPlanner {
    fn node_plan(&self, files: &SiteFiles, node: &str, key_dir: &Path) -> Result<Plan, String> {
        // The one path (rampart_plan), as `rampart compile` and `apply`
        // take it; the lab builds what the site says even when the guard
        // would refuse it (intents then show the lock-out).
        let opts = rampart_plan::PlanOpts {
            key_dir: key_dir.to_string_lossy().into_owned(),
            force: true,
            ..Default::default()
        };
        rampart_plan::build(files, node, &opts)
            .map(|np| np.plan)
            .map_err(|r| format!("{}\n{}", r.message, r.rendered))
    }

    fn wg_of(
        &self,
        files: &SiteFiles,
        owner: &str,
        key_dir: &Path,
    ) -> Result<(Vec<WgIface>, Vec<Route>), String> {
        Ok(wg_ifaces(&Wg::of(files), owner, key_dir))
    }
}

fn up(a: UpArgs) -> Result<ExitCode> {
    let name = lab_name(Some(&a.site), a.name.as_deref())?;
    let (files, site) = match crate::load::resolved_site_files(&a.site) {
        Ok(s) => s,
        Err(e) => return e.exit(),
    };
    let path = std::fs::canonicalize(&a.site).unwrap_or(a.site.clone());
    let input = site::UpInput {
        name: &name,
        site_path: &path.to_string_lossy(),
        files: &files,
        site: &site,
    };
    println!("lab `{name}`: building {}", path.display());
    let t = Instant::now();
    let mut progress = |l: &str| {
        println!("  {l}");
        let _ = std::io::stdout().flush();
    };
    match site::up(&input, &CliPlanner, &mut progress) {
        Ok(st) => {
            println!(
                "lab `{name}` is up in {:.1} s: {} namespaces (rl{}-*), {} WireGuard interface(s); `{}` runs its intents, `rampart lab down --name {name}` removes it",
                t.elapsed().as_secs_f64(),
                st.namespaces.len(),
                st.id,
                st.wireguard.len(),
                lab_command("verify", &a.site, a.name.as_deref())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: lab `{name}` could not be built: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The `rampart lab <verb>` command line that reaches the same lab: with
/// the `--name` the user gave, or the lab named after the site would be
/// another one.
fn lab_command(verb: &str, site: &Path, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("rampart lab {verb} {} --name {n}", site.display()),
        None => format!("rampart lab {verb} {}", site.display()),
    }
}

fn down(a: DownArgs) -> Result<ExitCode> {
    let name = lab_name(a.site.as_deref(), a.name.as_deref())?;
    match site::down(&name) {
        Ok(true) => {
            println!("lab `{name}` removed");
            Ok(ExitCode::SUCCESS)
        }
        Ok(false) => {
            println!("no lab `{name}` is up; nothing to do");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: lab `{name}`: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// The lab's probe for one row of `rampart verify`'s matrix.
fn site_probe(p: &rampart_intent::verify::LabProbe) -> Result<SiteProbe, String> {
    let proto = match p.proto.as_str() {
        "tcp" => rampart_lab::PacketProto::Tcp,
        "udp" => rampart_lab::PacketProto::Udp,
        "icmp" => rampart_lab::PacketProto::Icmp,
        "icmpv6" => rampart_lab::PacketProto::Icmpv6,
        x => return Err(format!("protocol `{x}` has no probe")),
    };
    Ok(SiteProbe {
        from: p.from.clone(),
        to: p.to.clone(),
        proto,
        dport: p.dport,
        sport: p.sport,
        icmp_type: p.icmp_type,
        source: Some(p.source),
        dest: Some(p.dest),
        family: Some(p.family),
    })
}

fn word(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "reachable",
        Some(false) => "unreachable",
        None => "error",
    }
}

fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let name = lab_name(Some(&a.site), a.name.as_deref())?;
    let Some(mut st) = site::load(&name).map_err(|e| anyhow!("{e}"))? else {
        eprintln!(
            "error: no lab `{name}` is up: `{}` first",
            lab_command("up", &a.site, a.name.as_deref())
        );
        return Ok(ExitCode::from(2));
    };
    if !st.complete {
        eprintln!(
            "error: lab `{name}` is only half built: `rampart lab down --name {name}` and up again"
        );
        return Ok(ExitCode::from(2));
    }
    let files = crate::sitedir::read_site(&a.site)?;
    // The simulator's matrix, exactly as `rampart verify` computes it.
    let report = match crate::verify::report(&files) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let rows = &report.matrix.rows;
    if rows.is_empty() {
        println!("the site states no intents ([[expect]]); nothing to verify");
        return Ok(ExitCode::SUCCESS);
    }
    let helper = Helper::current_exe(&[rampart_lab::probe::HIDDEN_SUBCOMMAND])
        .map_err(|e| anyhow!("{e}"))?;
    // One probe per row that has one.
    let mut probes = Vec::new();
    let mut index: Vec<Result<usize, String>> = Vec::new();
    for r in rows {
        match r.probe.as_ref().map(site_probe) {
            Some(Ok(p)) => {
                index.push(Ok(probes.len()));
                probes.push(p);
            }
            Some(Err(e)) => index.push(Err(e)),
            None => index.push(Err("the simulator built no probe for this row".into())),
        }
    }
    let t = Instant::now();
    let got = site::probe_all(
        &mut st,
        &helper,
        Duration::from_millis(a.timeout_ms),
        &probes,
    );
    let mut got = got;
    // Every probe went out at once, so probes that share a neighbour entry
    // can interfere: an IPv6 address resolution started by a blacklisted
    // source is retried from that source, the firewall drops it, and a
    // legitimate probe queued behind it fails too. A disagreement with the
    // simulator is therefore sent again on its own, from empty neighbour
    // caches, before it is reported as a bug.
    let mut alone = std::collections::BTreeSet::new();
    for (r, ix) in rows.iter().zip(&index) {
        let (Ok(k), Some(sim)) = (ix, r.got) else {
            continue;
        };
        if matches!(&got[*k], Ok(o) if (*o == Observed::Accept) != sim) {
            site::flush_neighbours(&st);
            let again = site::probe_all(
                &mut st,
                &helper,
                Duration::from_millis(a.timeout_ms),
                std::slice::from_ref(&probes[*k]),
            );
            if let Some(g) = again.into_iter().next() {
                got[*k] = g;
            }
            alone.insert(*k);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let (mut misses, mut bugs, mut errors) = (0, 0, 0);
    let mut table: Vec<[String; 7]> = vec![[
        "".into(),
        "intent".into(),
        "service".into(),
        "expected".into(),
        "simulator".into(),
        "lab (kernel)".into(),
        "decided by (simulator)".into(),
    ]];
    for (r, ix) in rows.iter().zip(&index) {
        let lab: Result<bool, String> = match ix {
            Ok(k) => match &got[*k] {
                Ok(o) => Ok(*o == Observed::Accept),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(e.clone()),
        };
        let lab_text = match (&lab, ix.as_ref().ok().map(|k| &got[*k])) {
            (Ok(true), _) => "reachable".to_string(),
            (Ok(false), Some(Ok(Observed::Reject))) => "unreachable (reject)".to_string(),
            (Ok(false), _) => "unreachable (drop)".to_string(),
            (Err(e), _) => format!("error: {e}"),
        };
        let lab_text = match ix {
            Ok(k) if alone.contains(k) => format!("{lab_text} (sent alone)"),
            _ => lab_text,
        };
        let mark = match (&lab, r.got) {
            (Err(_), _) => {
                errors += 1;
                "ERROR"
            }
            (Ok(l), Some(s)) if *l != s => {
                bugs += 1;
                "BUG"
            }
            (Ok(l), _) if *l != r.expected => {
                misses += 1;
                "MISS"
            }
            _ => "ok",
        };
        let decided = match (&r.decided_by, &r.reason) {
            (Some(d), _) => format!("{} {}", d.node, d.origin),
            (None, Some(reason)) => reason.clone(),
            (None, None) => "-".into(),
        };
        table.push([
            mark.into(),
            r.intent.clone(),
            r.service.clone(),
            word(Some(r.expected)).into(),
            word(r.got).into(),
            lab_text,
            decided,
        ]);
    }
    let mut w = [0usize; 7];
    for l in &table {
        for k in 0..7 {
            w[k] = w[k].max(l[k].chars().count());
        }
    }
    for l in &table {
        let mut line = String::new();
        for k in 0..7 {
            line.push_str(&format!("{:<width$}  ", l[k], width = w[k]));
        }
        println!("{}", line.trim_end());
    }
    println!(
        "{} row(s) in {:.2} s: {} ok, {} miss(es), {} simulator/kernel disagreement(s), {} error(s)",
        rows.len(),
        secs,
        rows.len() - misses - bugs - errors,
        misses,
        bugs,
        errors
    );
    if bugs > 0 {
        println!(
            "BUG: the simulator and the kernel disagree on {bugs} row(s): that is a rampart bug; please report it with this matrix and the site (RAMPART_LAB_DEBUG=1 shows each probe's addresses)"
        );
    }
    if misses + bugs + errors > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

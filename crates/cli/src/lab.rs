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
                    preshared_key_file: None,
                    endpoint: p.endpoint.clone(),
                    allowed_ips: p.allowed_ips.iter().map(|a| a.to_string()).collect(),
                    persistent_keepalive: p.persistent_keepalive,
                })
                .collect(),
        });
        for r in &i.routes {
            routes.push(Route {
                dest: r.dest.to_string(),
                dev: r.dev.clone(),
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
                "lab `{name}` is up in {:.1} s: {} namespaces (rl{}-*), {} WireGuard interface(s); `rampart lab verify {}` runs its intents, `rampart lab down --name {name}` removes it",
                t.elapsed().as_secs_f64(),
                st.namespaces.len(),
                st.id,
                st.wireguard.len(),
                a.site.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: lab `{name}` could not be built: {e}");
            Ok(ExitCode::from(1))
        }
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

/// One intent as the lab runs it.
pub struct Intent {
    pub name: String,
    pub probe: SiteProbe,
    pub expected: bool,
    /// The simulator's answer, when known.
    pub sim: Option<bool>,
}

/// `[[expect]]` entries of site.toml (the subset the lab runs: from, to,
/// proto, port, reachable, name).
pub fn intents(files: &SiteFiles) -> Result<Vec<Intent>> {
    #[derive(serde::Deserialize)]
    struct Top {
        #[serde(default)]
        expect: Vec<Expect>,
    }
    #[derive(serde::Deserialize)]
    struct Expect {
        name: Option<String>,
        from: String,
        to: String,
        #[serde(default)]
        proto: Option<String>,
        port: Option<u16>,
        service: Option<String>,
        reachable: bool,
    }
    let Some(b) = files.get("site.toml") else {
        return Ok(vec![]);
    };
    let top: Top =
        toml::from_str(&String::from_utf8_lossy(b)).map_err(|e| anyhow!("site.toml: {e}"))?;
    top.expect
        .into_iter()
        .map(|mut e| {
            match e.service.as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("ssh") => e.port = Some(22),
                Some("http") => e.port = Some(80),
                Some("https") => e.port = Some(443),
                Some("ping") | None => {}
                Some(s) => bail!("service `{s}` needs the intents crate"),
            }
            let proto =
                match e
                    .proto
                    .as_deref()
                    .unwrap_or(if e.port.is_some() { "tcp" } else { "icmp" })
                {
                    "tcp" => rampart_lab::PacketProto::Tcp,
                    "udp" => rampart_lab::PacketProto::Udp,
                    "icmp" | "ping" => rampart_lab::PacketProto::Icmp,
                    "icmpv6" => rampart_lab::PacketProto::Icmpv6,
                    p => bail!("[[expect]] `{}`: unknown proto `{p}`", e.from),
                };
            let name = e.name.clone().unwrap_or_else(|| {
                format!(
                    "{} -> {} {}{}",
                    e.from,
                    e.to,
                    proto,
                    e.port.map(|p| format!("/{p}")).unwrap_or_default()
                )
            });
            Ok(Intent {
                name,
                probe: SiteProbe {
                    from: e.from,
                    to: e.to,
                    proto,
                    dport: e.port,
                    source: None,
                    dest: None,
                    family: None,
                },
                expected: e.reachable,
                sim: None,
            })
        })
        .collect()
}

fn word(b: bool) -> &'static str {
    if b {
        "reachable"
    } else {
        "blocked"
    }
}

fn verify(a: VerifyArgs) -> Result<ExitCode> {
    let name = lab_name(Some(&a.site), a.name.as_deref())?;
    let Some(st) = site::load(&name).map_err(|e| anyhow!("{e}"))? else {
        eprintln!(
            "error: no lab `{name}` is up: `rampart lab up {}` first",
            a.site.display()
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
    let intents = intents(&files)?;
    if intents.is_empty() {
        println!("the site states no intents ([[expect]]); nothing to verify");
        return Ok(ExitCode::SUCCESS);
    }
    let helper = Helper::current_exe(&[rampart_lab::probe::HIDDEN_SUBCOMMAND])
        .map_err(|e| anyhow!("{e}"))?;
    let probes: Vec<SiteProbe> = intents.iter().map(|i| i.probe.clone()).collect();
    let t = Instant::now();
    let got = site::probe_all(&st, &helper, Duration::from_millis(a.timeout_ms), &probes);
    let secs = t.elapsed().as_secs_f64();
    let rows: Vec<[String; 5]> = intents
        .iter()
        .zip(&got)
        .map(|(i, g)| {
            let lab = match g {
                Ok(Observed::Accept) => "reachable".to_string(),
                Ok(Observed::Drop) => "blocked (drop)".to_string(),
                Ok(Observed::Reject) => "blocked (reject)".to_string(),
                Err(e) => format!("error: {e}"),
            };
            let sim = i.sim.map(word).unwrap_or("-").to_string();
            [
                i.name.clone(),
                word(i.expected).to_string(),
                sim,
                lab,
                String::new(),
            ]
        })
        .collect();
    let mut misses = 0;
    let mut bugs = 0;
    let mut errors = 0;
    let mut rendered = Vec::new();
    for (r, (i, g)) in rows.into_iter().zip(intents.iter().zip(&got)) {
        let mut r = r;
        let lab = g.as_ref().ok().map(|o| *o == Observed::Accept);
        r[4] = match (lab, i.sim) {
            (None, _) => {
                errors += 1;
                "ERROR".into()
            }
            (Some(l), Some(s)) if l != s => {
                bugs += 1;
                "BUG: simulator and kernel disagree".into()
            }
            (Some(l), _) if l != i.expected => {
                misses += 1;
                "MISS".into()
            }
            _ => "ok".into(),
        };
        rendered.push(r);
    }
    let head = ["intent", "expected", "simulator", "lab (kernel)", ""];
    let mut w = [0usize; 5];
    for r in rendered
        .iter()
        .map(|r| r.each_ref().map(|s| s.len()))
        .chain([head.map(str::len)])
    {
        for k in 0..5 {
            w[k] = w[k].max(r[k]);
        }
    }
    let line = |r: [&str; 5]| {
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3]
        )
        .trim_end()
        .to_string()
    };
    println!("{}", line(head));
    for r in &rendered {
        println!("{}", line(r.each_ref().map(String::as_str)));
    }
    println!(
        "{} intent(s) in {:.2} s: {} ok, {} miss(es), {} simulator/kernel disagreement(s), {} error(s)",
        intents.len(),
        secs,
        intents.len() - misses - bugs - errors,
        misses,
        bugs,
        errors
    );
    if bugs > 0 {
        println!("a disagreement between the simulator and the kernel is a rampart bug: please report it with this matrix and the site");
    }
    if misses + bugs + errors > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

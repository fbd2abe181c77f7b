//! `rampart simulate SITE [--node N] --from Z --to Z ...`: what happens to
//! one packet, and which line decided it.

use crate::load::{pick_node, resolved_site_files};
use anyhow::{bail, Result};
use rampart_sim::{Packet, State, Zone};
use rampart_types::{Family, Proto};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    #[arg(long)]
    pub node: Option<String>,
    /// outside, host, vm<id>, vm<id>i<n>, ct<id>, ct<id>i<n>, or another node's name.
    #[arg(long)]
    pub from: String,
    #[arg(long)]
    pub to: String,
    #[arg(short = 'p', long = "proto", default_value = "tcp")]
    pub proto: String,
    #[arg(long)]
    pub dport: Option<u16>,
    #[arg(long)]
    pub sport: Option<u16>,
    #[arg(long)]
    pub source: Option<IpAddr>,
    #[arg(long)]
    pub dest: Option<IpAddr>,
    #[arg(long)]
    pub icmp_type: Option<String>,
    /// ipv4 or ipv6 (default: from --source/--dest, else ipv4).
    #[arg(long)]
    pub family: Option<String>,
    #[arg(long, default_value = "new")]
    pub state: String,
    /// Print the trace as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn packet_from(a: &Args) -> Result<Packet> {
    let proto = match a.proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        "icmp" => Proto::Icmp,
        "icmpv6" | "ipv6-icmp" => Proto::Icmpv6,
        other => bail!("unknown protocol `{other}`: use tcp, udp, icmp or icmpv6"),
    };
    if proto.has_ports() && a.dport.is_none() {
        bail!("a {proto} packet needs --dport");
    }
    if !proto.has_ports() && (a.dport.is_some() || a.sport.is_some()) {
        bail!("{proto} has no ports: drop --dport/--sport");
    }
    let family = match a.family.as_deref() {
        None => None,
        Some("ipv4") | Some("4") => Some(Family::V4),
        Some("ipv6") | Some("6") => Some(Family::V6),
        Some(f) => bail!("unknown family `{f}`: use ipv4 or ipv6"),
    };
    let state = match a.state.as_str() {
        "new" => State::New,
        "established" => State::Established,
        s => bail!("unknown state `{s}`: use new or established"),
    };
    let mut p = Packet::new(&a.from, &a.to, proto);
    p.dport = a.dport;
    p.sport = a.sport;
    p.source = a.source;
    p.dest = a.dest;
    p.icmp_type = a.icmp_type.clone();
    p.family = family;
    p.state = state;
    Ok(p)
}

pub fn run(a: Args) -> Result<ExitCode> {
    let (files, site) = match resolved_site_files(&a.site) {
        Ok(s) => s,
        Err(e) => return e.exit(),
    };
    let node = pick_node(&site, a.node.as_deref())?.name.clone();
    let packet = packet_from(&a)?;
    if let Zone::Node(n) = &packet.to {
        if site.node(n).is_none() {
            bail!(
                "unknown zone `{n}`: use outside, host, vm<id>, ct<id>, vm<id>i<n> or a node name"
            );
        }
    }
    // The model of the plan `rampart compile` prints and `apply` loads (the
    // WireGuard listen ports, the profiles' rules), through rampart_plan.
    let opts = rampart_plan::PlanOpts {
        force: true,
        ..Default::default()
    };
    let built = rampart_plan::load(&files, &opts).and_then(|s| s.build(&node));
    let model = match built {
        Ok(b) => b.model,
        Err(r) => {
            eprint!("{}", r.rendered);
            eprintln!("error: node `{node}`: {}; nothing to simulate", r.message);
            return Ok(ExitCode::from(1));
        }
    };
    let sim = rampart_sim::simulate_plan(&site, &model, &packet);
    match sim {
        Ok(trace) => {
            if a.json {
                println!("{}", serde_json::to_string_pretty(&trace)?);
            } else {
                print!("{trace}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(rampart_sim::SimError::Compile(d)) => {
            eprint!("{}", d.render(&site.sources));
            eprintln!("error: node `{node}` does not compile; nothing to simulate");
            Ok(ExitCode::from(1))
        }
        Err(rampart_sim::SimError::Packet(m)) => bail!("{m}"),
    }
}

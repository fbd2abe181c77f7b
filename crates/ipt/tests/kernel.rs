//! Every case of the conformance suite, with real packets, through the
//! iptables backend: the verdicts must be exactly those of the case files.

mod common;

use rampart_lab::{Helper, LabOptions};
use std::path::PathBuf;

fn suite() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

fn helper() -> Helper {
    Helper::current_exe(&[rampart_lab::probe::HIDDEN_SUBCOMMAND]).unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = rampart_lab::probe::run_if_helper(&args) {
        std::process::exit(code);
    }
    if args.get(1).map(String::as_str) == Some(NFQ_SUBCOMMAND) {
        std::process::exit(nfq_consumer(&args[2..]));
    }
    if !common::is_root() {
        eprintln!("kernel tests skipped: they need root");
        return;
    }
    let filter = args.iter().skip(1).find(|a| !a.starts_with('-')).cloned();
    let tests: &[(&str, fn())] = &[
        (
            "ips_nfqueue_bypass_and_consumer",
            ips_nfqueue_bypass_and_consumer,
        ),
        ("guest_and_host_verdicts", guest_and_host_verdicts),
        (
            "conformance_suite_on_the_kernel",
            conformance_suite_on_the_kernel,
        ),
    ];
    let mut failed = 0;
    for (name, f) in tests {
        if filter.as_deref().is_some_and(|fl| !name.contains(fl)) {
            continue;
        }
        eprintln!("test {name} ...");
        match std::panic::catch_unwind(f) {
            Ok(()) => eprintln!("test {name} ... ok"),
            Err(_) => {
                eprintln!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        std::process::exit(1);
    }
}

fn conformance_suite_on_the_kernel() {
    let only = std::env::var("RAMPART_CASE").ok();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(suite())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("packets.toml").exists())
        .filter(|p| match only.as_deref() {
            None => true,
            Some(o) => p.file_name().unwrap().to_str() == Some(o),
        })
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    let mut all = Vec::new();
    let mut unresolved = 0;
    for dir in &dirs {
        let files = common::read_site(dir);
        let (site, diags) = rampart_resolve::load(&files);
        if diags.has_errors() {
            // The resolver's problem, not this backend's: reported, not run.
            eprintln!(
                "NOT RUN {}: the resolver rejects it:\n{}",
                dir.display(),
                diags.render(&site.sources)
            );
            unresolved += 1;
            continue;
        }
        let packets = std::fs::read_to_string(dir.join("packets.toml")).unwrap();
        let case = match rampart_case::parse(&packets) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("NOT RUN {}: packets.toml: {e}", dir.display());
                unresolved += 1;
                continue;
            }
        };
        let plan = rampart_ipt::compile(
            &site,
            case.node.as_deref().unwrap_or_else(|| &site.nodes[0].name),
        )
        .unwrap_or_else(|d| panic!("{}: {}", dir.display(), d.render(&site.sources)));
        if std::env::var("RAMPART_DEBUG").is_ok() {
            debug_case(&site, &case, &plan);
        }
        let opts = LabOptions::new(helper());
        let outcomes = rampart_lab::runner::run_case_dir(dir, &site, opts, &|lab| {
            common::load_into_lab(lab, &plan)
        })
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let failed: Vec<_> = outcomes.iter().filter(|o| !o.passed()).cloned().collect();
        if !failed.is_empty() {
            eprintln!("{}", rampart_case::summary(&failed));
        }
        all.extend(outcomes);
    }
    let summary = rampart_case::summary(&all);
    eprintln!("{summary} ({unresolved} cases not run: resolver or case-format errors)");
    let known = |o: &rampart_case::Outcome| {
        KNOWN.iter().any(|(case, packet, _)| {
            o.case.ends_with(case) && (packet.is_empty() || o.packet.contains(packet))
        })
    };
    let known_packet = |o: &rampart_case::Outcome| {
        KNOWN.iter().any(|(case, packet, _)| {
            o.case.ends_with(case) && !packet.is_empty() && o.packet.contains(packet)
        })
    };
    for o in all.iter().filter(|o| o.passed() && known_packet(o)) {
        eprintln!("note: known failure now passes: {} / {}", o.case, o.packet);
    }
    let unexpected: Vec<_> = all
        .iter()
        .filter(|o| !o.passed() && !known(o))
        .cloned()
        .collect();
    assert_eq!(
        unresolved, 0,
        "every conformance case must resolve and parse"
    );
    assert!(
        unexpected.is_empty(),
        "unexpected failures:\n{}",
        rampart_case::summary(&unexpected)
    );
}

/// Failures that are not this backend's: each with the reason. The test
/// fails on any other failure.
const KNOWN: &[(&str, &str, &str)] = &[
    // Empty: the lab's routing between bridges, DHCP port rounds and
    // REJECT-in-OUTPUT detection were fixed, and the two wrong case
    // expectations corrected. Add an entry only with a reason.
];

/// Probe a case by hand and print the counters (RAMPART_DEBUG=1).
fn debug_case(
    site: &rampart_resolve::ir::Site,
    case: &rampart_case::Case,
    plan: &rampart_ipt::IptPlan,
) {
    let node = case
        .node
        .clone()
        .unwrap_or_else(|| site.nodes[0].name.to_string());
    let lab = rampart_lab::Lab::build(site, &node, LabOptions::new(helper())).unwrap();
    common::load_into_lab(&lab, plan).unwrap();
    let probes: Vec<rampart_lab::Probe> = case
        .packets
        .iter()
        .map(rampart_lab::Probe::from_packet)
        .collect();
    for (p, r) in case.packets.iter().zip(lab.probe_all(&probes)) {
        eprintln!("{} -> {:?} (want {:?})", p.label(), r, p.verdict);
    }
    eprintln!(
        "{}",
        lab.host()
            .exec(&["conntrack", "-L", "-f", "ipv6"], None)
            .unwrap_or_default()
    );
    for prog in ["iptables-save", "ip6tables-save"] {
        eprintln!("{}", lab.host().exec(&[prog, "-c"], None).unwrap());
    }
}

const NFQ_SUBCOMMAND: &str = "__nfq";

/// A tiny IPS stand-in: binds queue N and gives every packet the verdict
/// asked for (`__nfq drop|accept N`). Prints `ready` once bound.
fn nfq_consumer(args: &[String]) -> i32 {
    use std::io::Write;
    let verdict = match args.first().map(String::as_str) {
        Some("drop") => nfq::Verdict::Drop,
        Some("accept") => nfq::Verdict::Accept,
        _ => return 2,
    };
    let num: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut q = nfq::Queue::open().expect("open nfqueue");
    q.bind(num).expect("bind queue");
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut seen = 0u64;
    loop {
        let mut msg = q.recv().expect("recv");
        seen += 1;
        msg.set_verdict(verdict);
        q.verdict(msg).expect("verdict");
        eprintln!("nfq: packet {seen}");
    }
}

const IPS_SITE: &str = r#"
[[node]]
name = "hv1"
backend = "iptables"
bridges = { vmbr0 = ["192.0.2.10/24"] }

[[guest]]
id = 100
kind = "vm"
node = "hv1"
nics = [
  { name = "net0", bridge = "vmbr0", mac = "0e:00:00:00:64:00", addresses = ["192.0.2.100/24"], firewall = true },
]
"#;

/// A guest with `ips: 1`: accepted traffic goes to NFQUEUE 3 with bypass.
/// With no listener it flows; a consumer that drops makes it fail; one
/// that accepts lets it through again. Rules still decide first: a port
/// the guest's policy drops never reaches the queue.
fn ips_nfqueue_bypass_and_consumer() {
    use rampart_lab::{Observed, PacketProto, Probe};
    use std::io::BufRead;
    let files = rampart_types::SiteFiles::new()
        .with("site.toml", IPS_SITE)
        .with("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n")
        .with(
            "firewall/100.fw",
            "[OPTIONS]\nenable: 1\nips: 1\nips_queues: 3\n\n[RULES]\nIN ACCEPT -p tcp -dport 80\n",
        );
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    let plan = rampart_ipt::compile(&site, "hv1").unwrap();
    assert!(
        plan.v4.contains("NFQUEUE --queue-num 3 --queue-bypass"),
        "{}",
        plan.v4
    );
    let lab = rampart_lab::Lab::build(&site, "hv1", LabOptions::new(helper())).unwrap();
    common::load_into_lab(&lab, &plan).unwrap();
    let probe = |dport: u16| {
        let mut p = Probe::new(
            "outside",
            "vm100",
            PacketProto::Tcp,
            Some(dport),
            rampart_types::Family::V4,
        );
        p.source = Some("192.0.2.50".parse().unwrap());
        lab.probe(&p).unwrap()
    };
    assert_eq!(
        probe(80),
        Observed::Accept,
        "no IPS listening: bypass lets accepted traffic through"
    );
    assert_eq!(probe(81), Observed::Drop, "the guest's policy still drops");
    for (mode, want) in [("drop", Observed::Drop), ("accept", Observed::Accept)] {
        let exe = std::env::current_exe().unwrap();
        let mut child = lab
            .host()
            .command(&exe)
            .args([NFQ_SUBCOMMAND, mode, "3"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        let got = probe(80);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(got, want, "consumer that says {mode}");
    }
    assert_eq!(probe(80), Observed::Accept, "consumer gone: bypass again");
}

/// A guest accepts, drops and rejects TCP as its rules say; the node
/// accepts management from its management set and drops it from elsewhere.
fn guest_and_host_verdicts() {
    use rampart_lab::{Observed, PacketProto, Probe};
    let files = rampart_types::SiteFiles::new()
        .with("site.toml", IPS_SITE)
        .with(
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\n\n[IPSET management]\n203.0.113.5\n",
        )
        .with(
            "firewall/100.fw",
            "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -p tcp -dport 80\nIN REJECT -p tcp -dport 81\nIN DROP -p tcp -dport 82\n",
        );
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    let plan = rampart_ipt::compile(&site, "hv1").unwrap();
    let lab = rampart_lab::Lab::build(&site, "hv1", LabOptions::new(helper())).unwrap();
    common::load_into_lab(&lab, &plan).unwrap();
    let probe = |to: &str, dport: u16, src: &str| {
        let mut p = Probe::new(
            "outside",
            to,
            PacketProto::Tcp,
            Some(dport),
            rampart_types::Family::V4,
        );
        p.source = Some(src.parse().unwrap());
        p
    };
    let cases = [
        (probe("vm100", 80, "198.51.100.9"), Observed::Accept),
        (probe("vm100", 81, "198.51.100.9"), Observed::Reject),
        (probe("vm100", 82, "198.51.100.9"), Observed::Drop),
        (probe("vm100", 83, "198.51.100.9"), Observed::Drop),
        (probe("host", 22, "203.0.113.5"), Observed::Accept),
        (probe("host", 8006, "192.0.2.50"), Observed::Accept),
        (probe("host", 22, "203.0.113.6"), Observed::Drop),
        (probe("host", 8007, "203.0.113.5"), Observed::Drop),
    ];
    let probes: Vec<Probe> = cases.iter().map(|(p, _)| p.clone()).collect();
    let got = lab.probe_all(&probes);
    for ((p, want), got) in cases.iter().zip(got) {
        assert_eq!(got.as_ref().ok(), Some(want), "{p:?}: {got:?}");
    }
}

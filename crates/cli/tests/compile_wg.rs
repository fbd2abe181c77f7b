//! `rampart compile` on a site with WireGuard networks: per node the
//! wg-quick `.conf` (Table = off, no private key), the route list, the
//! forwarding sysctls of a forwarder, and the firewall rules of the listen
//! port and of forwarding, in a ruleset the kernel accepts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wg-mesh")
}

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart")
}

mod common;
use common::is_root;

fn compile_all() -> (tempfile::TempDir, Output) {
    let out = tempfile::tempdir().unwrap();
    let o = rampart(&[
        "compile",
        fixture().to_str().unwrap(),
        "--all",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    (out, o)
}

fn read(dir: &Path, node: &str, file: &str) -> String {
    fs::read_to_string(dir.join(node).join(file)).unwrap_or_else(|e| panic!("{node}/{file}: {e}"))
}

/// The `host-in` / `host-forward` chain of a script, as text.
fn chain<'a>(script: &'a str, name: &str) -> &'a str {
    let start = script
        .find(&format!("chain {name} {{"))
        .unwrap_or_else(|| panic!("no chain {name}"));
    let end = script[start..].find("\n\t}").unwrap();
    &script[start..start + end]
}

#[test]
fn every_node_gets_its_wg_files() {
    let (dir, o) = compile_all();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = dir.path();
    for node in ["host1", "host2", "host3"] {
        let conf = read(d, node, "wg0.conf");
        assert!(conf.contains("\nTable = off\n"), "{node}: {conf}");
        assert!(!conf.contains("PrivateKey"), "{node}: {conf}");
        assert!(
            conf.contains("PostUp = wg set %i private-key /etc/rampart/wg/cluster.key"),
            "{node}: {conf}"
        );
        let routes = read(d, node, "wg0.routes");
        assert!(routes.starts_with("# routes of wg0"), "{routes}");
        assert!(
            routes
                .lines()
                .skip(1)
                .all(|l| l.starts_with("ip route replace ")),
            "{routes}"
        );
        assert!(d.join(node).join("ruleset.nft").exists());
    }
    // host3 peers with host1 and host2; host1 with everyone, the client too.
    let c3 = read(d, "host3", "wg0.conf");
    assert!(c3.contains("ListenPort = 51830"), "{c3}");
    assert!(c3.contains("Endpoint = 203.0.113.1:51820"), "{c3}");
    assert!(c3.contains("Endpoint = 203.0.113.2:51820"), "{c3}");
    assert!(read(d, "host1", "wg0.conf").contains("# desktop"));
}

#[test]
fn listen_port_rules_follow_the_peers_endpoints() {
    let (dir, o) = compile_all();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let d = dir.path();
    // host3 listens on its own port, open to host1's and host2's addresses
    // only, with the line of that port as origin; before the policy.
    let s3 = read(d, "host3", "ruleset.nft");
    let in3 = chain(&s3, "host-in");
    let rule =
        "udp dport 51830 ip saddr { 203.0.113.1, 203.0.113.2 } return comment \"site.toml:35\"";
    let at = in3.find(rule).unwrap_or_else(|| panic!("{in3}"));
    assert!(at < in3.find("auto:policy_in DROP").unwrap(), "{in3}");
    assert!(!in3.contains("udp dport 51820"), "{in3}");
    // host2: IPv4 and IPv6 endpoints, one rule per family.
    let in2 = read(d, "host2", "ruleset.nft");
    assert!(in2.contains("ip saddr 203.0.113.1 udp dport 51820 return comment \"site.toml:19\""));
    assert!(in2.contains("ip6 saddr 2001:db8::3 udp dport 51820 return comment \"site.toml:19\""));
    // host1 has a roaming client: the port is open to any source, and it
    // forwards between its peers (the client reaches host2 and host3).
    let s1 = read(d, "host1", "ruleset.nft");
    assert!(chain(&s1, "host-in").contains("\tudp dport 51820 return comment \"site.toml:19\""));
    assert!(chain(&s1, "host-forward").contains(
        "iifname \"wg0\" oifname \"wg0\" return comment \"auto:wireguard wg0 forwarding\""
    ));
    let sys1 = read(d, "host1", "sysctl.conf");
    assert!(sys1.contains("net.ipv4.ip_forward = 1"), "{sys1}");
    assert!(sys1.contains("net.ipv6.conf.all.forwarding = 1"), "{sys1}");
    // host2 does not forward.
    assert!(!chain(&in2, "host-forward").contains("wg0"));
    assert!(!read(d, "host2", "sysctl.conf").contains("forward"));
    // No masquerade: the plan has no NAT flag.
    assert!(!s1.contains("masquerade"));
}

#[test]
fn the_rulesets_pass_nft_check() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (dir, o) = compile_all();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for node in ["host1", "host2", "host3"] {
        let s = read(dir.path(), node, "ruleset.nft");
        rampart_lab::netns::nft_check(&s).unwrap_or_else(|e| panic!("{node}: {e:#}"));
    }
}

#[test]
fn a_wireguard_error_fails_every_node_and_writes_nothing() {
    let site = tempfile::tempdir().unwrap();
    let src = fixture();
    fs::create_dir_all(site.path().join("firewall")).unwrap();
    fs::copy(
        src.join("firewall/cluster.fw"),
        site.path().join("firewall/cluster.fw"),
    )
    .unwrap();
    // host1 pins an address outside the pool (E0608).
    let toml = fs::read_to_string(src.join("site.toml"))
        .unwrap()
        .replace("address = [\"10.0.0.2\"]", "address = [\"10.9.0.2\"]");
    fs::write(site.path().join("site.toml"), toml).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = rampart(&[
        "compile",
        site.path().to_str().unwrap(),
        "--all",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("E0608"), "{err}");
    assert!(err.contains("site.toml:"), "{err}");
    assert!(err.contains("node `host2` does not compile"), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn a_site_without_wireguard_compiles_as_before() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host-basics");
    let out = tempfile::tempdir().unwrap();
    let o = rampart(&[
        "compile",
        fx.to_str().unwrap(),
        "--all",
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = fs::read_dir(out.path().join("hv1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["ruleset.nft", "sysctl.conf"]);
}

#[test]
fn simulate_sees_the_listen_port_rule() {
    let fx = fixture();
    let sim = |source: &str| {
        let o = rampart(&[
            "simulate",
            fx.to_str().unwrap(),
            "--node",
            "host3",
            "--from",
            "outside",
            "--to",
            "host",
            "-p",
            "udp",
            "--dport",
            "51830",
            "--source",
            source,
            "--dest",
            "203.0.113.3",
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["verdict"].as_str().unwrap().to_string(),
            v["decided_by"]["origin"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(sim("203.0.113.1"), ("ACCEPT".into(), "site.toml:35".into()));
    assert_eq!(
        sim("203.0.113.66"),
        ("DROP".into(), "auto:policy_in DROP".into())
    );
}

#[test]
fn iptables_backend_and_key_dir_carry_the_wireguard_rules() {
    let o = rampart(&[
        "compile",
        fixture().to_str().unwrap(),
        "--node",
        "host2",
        "--backend",
        "iptables",
        "--keys",
        "/srv/keys-x",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("# ==== host2 / iptables.rules ===="), "{out}");
    assert!(out.contains("# ==== host2 / ip6tables.rules ===="), "{out}");
    // The listen port, open to the peers' endpoints only, in each family.
    assert!(
        out.contains("-A RAMPART-HOST-IN -s 203.0.113.1/32 -p udp -m udp --dport 51820"),
        "{out}"
    );
    assert!(
        out.contains("-A RAMPART-HOST-IN -s 2001:db8::3/128 -p udp -m udp --dport 51820"),
        "{out}"
    );
    assert!(!out.contains("table inet rampart"), "{out}");
    // The key store named by --keys, never a key.
    assert!(out.contains("private-key /srv/keys-x/cluster.key"), "{out}");
    assert!(!out.contains("PrivateKey"), "{out}");
}

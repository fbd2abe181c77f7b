//! examples/pve-cluster: a real-looking /etc/pve tree (corosync.conf with
//! host names and two rings, long ipset names, legacy ICMP rules) checks
//! with no error, compiles for both backends, and resolves as Proxmox would.

use std::path::PathBuf;
use std::process::Command;

fn tree() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/pve-cluster")
}

fn rampart(args: &[&str]) -> (Option<i32>, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart");
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn pve_cluster_checks_with_only_the_legacy_icmp_warnings() {
    let t = tree();
    let (code, out, err) = rampart(&["check", t.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3 nodes, 4 guests"), "{out}");
    assert!(out.contains("0 errors, 5 warnings"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning[")).collect();
    assert_eq!(warnings.len(), 5, "{err}");
    assert!(
        warnings.iter().all(|w| w.starts_with("warning[E0315]")),
        "{err}"
    );
    // The long names keep their Proxmox name next to the hashed kernel name.
    assert!(
        out.contains("= +monitoring-collectors-and-uptime-probes-of-the-noc-in-frankfurt2"),
        "{out}"
    );
}

#[test]
fn pve_cluster_compiles_for_both_backends() {
    let t = tree();
    for backend in ["nftables", "iptables"] {
        let (code, out, err) = rampart(&[
            "compile",
            t.to_str().unwrap(),
            "--all",
            "--backend",
            backend,
        ]);
        assert_eq!(code, Some(0), "{backend}: {err}");
        assert!(!out.is_empty());
    }
    // Corosync ring by ring from the host names: link 1 on 172.30.7.0/24.
    let (_, out, _) = rampart(&[
        "compile",
        t.to_str().unwrap(),
        "--node",
        "pve-a",
        "--backend",
        "iptables",
    ]);
    assert!(
        out.contains(
            "-p udp -d 172.30.7.11 -m set --match-set n-pve-a-ring1-4 src -m udp --dport 5404:5405"
        ),
        "{out}"
    );
}

#[test]
fn pve_cluster_local_network_comes_from_interfaces() {
    let t = tree();
    let (code, out, err) = rampart(&["localnet", t.to_str().unwrap(), "--node", "pve-b"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("local hostname: pve-b\nlocal IP address: 10.20.0.12\nnetwork auto detect: 10.20.0.0/24\n"), "{out}");
    assert!(
        out.contains(" - pve-c: 172.30.7.13 (link: 1, from 172.30.7.12)\n"),
        "{out}"
    );
}

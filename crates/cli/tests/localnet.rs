//! `rampart localnet`: the node's address and local network as
//! `pve-firewall localnet` prints them, from a bare /etc/pve tree.

use std::process::Command;

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

fn site(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, t) in files {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
    d
}

const COROSYNC: &str = "nodelist {\n  node {\n    name: pve1\n    nodeid: 1\n    ring0_addr: pve1\n  }\n  node {\n    name: pve2\n    nodeid: 2\n    ring0_addr: 10.1.1.12\n  }\n}\n";
const HOSTS: &str = "127.0.0.1 localhost\n10.1.1.11 pve1.lan pve1\n";

#[test]
fn a_bare_tree_takes_the_subnet_from_the_nodes_interfaces_file() {
    let d = site(&[
        ("corosync.conf", COROSYNC),
        ("hosts", HOSTS),
        ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n"),
        (
            "nodes/pve1/interfaces",
            "auto vmbr0\niface vmbr0 inet static\n\taddress 10.1.1.11/23\n\tgateway 10.1.0.1\n\tbridge-ports eno1\n",
        ),
        (
            "nodes/pve2/network/interfaces",
            "auto vmbr0\niface vmbr0 inet static\n        address 10.1.1.12\n        netmask 255.255.254.0\n",
        ),
    ]);
    let (code, out, err) = rampart(&["localnet", d.path().to_str().unwrap(), "--node", "pve1"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "local hostname: pve1\nlocal IP address: 10.1.1.11\nnetwork auto detect: 10.1.0.0/23\nusing detected local_network: 10.1.0.0/23\n\naccepting corosync traffic from/to:\n - pve2: 10.1.1.12 (link: 0, from 10.1.1.11)\n"
    );
    assert!(err.is_empty(), "{err}");
    let (_, out, _) = rampart(&["localnet", d.path().to_str().unwrap(), "--node", "pve2"]);
    assert!(out.contains("network auto detect: 10.1.0.0/23\n"), "{out}");
}

#[test]
fn without_an_interfaces_file_the_host_address_is_warned_about() {
    let d = site(&[
        ("corosync.conf", COROSYNC),
        ("hosts", HOSTS),
        ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n"),
    ]);
    let (code, out, err) = rampart(&["localnet", d.path().to_str().unwrap(), "--node", "pve1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("network auto detect: 10.1.1.11/32\n"), "{out}");
    assert!(err.contains("warning[E0507]"), "{err}");
}

#[test]
fn a_local_network_alias_is_user_defined() {
    let d = site(&[
        ("corosync.conf", COROSYNC),
        ("hosts", HOSTS),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\n\n[ALIASES]\nlocal_network 10.1.0.0/16\n",
        ),
    ]);
    let (code, out, err) = rampart(&["localnet", d.path().to_str().unwrap(), "--node", "pve1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("using user defined local_network: 10.1.0.0/16\n"),
        "{out}"
    );
}

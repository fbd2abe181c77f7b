//! The firewall log: a packet that hits a `-log` rule shows up in the
//! agent's output as a Proxmox-style line naming the rule's origin and the
//! packet's addresses. Real kernel, real nflog, in namespaces made here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::{is_root, journal_fields, under_journald, Ns};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_site(p: &Path, backend: &str) {
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::create_dir_all(p.join("nodes/hv1")).unwrap();
    std::fs::write(
        p.join("site.toml"),
        format!(
            "[[node]]\nname = \"hv1\"\nbackend = \"{backend}\"\nbridges = {{ vmbr0 = [\"192.0.2.10/24\"] }}\n"
        ),
    )
    .unwrap();
    std::fs::write(p.join("nodes/hv1/host.fw"), "[OPTIONS]\nenable: 1\n").unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n\n\
         [RULES]\n# nobody needs rpcbind; log who tries\nIN DROP -p tcp -dport 111 -log info\n",
    )
    .unwrap();
}

/// A line as pvefw-logger writes it (`VMID LEVEL CHAIN TIME ZONE MSG ...`),
/// the way a fail2ban filter or dashboard for /var/log/pve-firewall.log
/// splits it.
fn check_pve_format(line: &str, iface: &str) {
    let at = line
        .find("0 6 PVEFW-HOST-IN ")
        .unwrap_or_else(|| panic!("no pvefw-logger line in: {line}"));
    let msg = &line[at..];
    let f: Vec<&str> = msg.split(' ').collect();
    assert_eq!(&f[..3], ["0", "6", "PVEFW-HOST-IN"], "{msg}");
    let t = f[3].as_bytes();
    assert!(
        t.len() == 20
            && t[2] == b'/'
            && t[6] == b'/'
            && t[11] == b':'
            && f[3][7..11].bytes().all(|b| b.is_ascii_digit()),
        "time {:?} is not DD/Mon/YYYY:HH:MM:SS in: {msg}",
        f[3]
    );
    assert_eq!(f[4], "+0000", "{msg}");
    assert_eq!(f[5], "DROP:", "{msg}");
    assert_eq!(f[6], format!("IN={iface}"), "{msg}");
    // The fields a fail2ban filter picks, in pvefw-logger's order.
    let order = [
        "SRC=192.0.2.99 DST=192.0.2.10 LEN=",
        " TTL=",
        " PROTO=TCP SPT=",
        " DPT=111 SEQ=",
        " SYN",
        " ORIGIN=cluster.fw:10",
    ];
    let mut from = 0;
    for want in order {
        let i = msg[from..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} missing (or out of order) in: {msg}"));
        from += i + want.len();
    }
}

#[test]
fn a_logged_drop_becomes_a_line_with_origin_and_addresses() {
    logged_drop("nftables", "fwlog");
}

#[test]
fn a_logged_drop_becomes_a_line_with_origin_and_addresses_iptables() {
    logged_drop("iptables", "fwlogi");
}

fn logged_drop(backend: &str, tag: &str) {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let node = Ns::new(&format!("{tag}-node"));
    let peer = Ns::new(&format!("{tag}-peer"));
    let k = if backend == "iptables" { "i" } else { "n" };
    let (a, b) = (
        format!("rfl{k}{}a", std::process::id() % 100_000),
        format!("rfl{k}{}b", std::process::id() % 100_000),
    );
    ip(&[
        "-n", &node.0, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &peer.0,
    ]);
    ip(&["-n", &node.0, "addr", "add", "192.0.2.10/24", "dev", &a]);
    ip(&["-n", &node.0, "link", "set", &a, "up"]);
    ip(&["-n", &node.0, "link", "set", "lo", "up"]);
    ip(&["-n", &peer.0, "addr", "add", "192.0.2.99/24", "dev", &b]);
    ip(&["-n", &peer.0, "link", "set", &b, "up"]);

    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_site(&site, backend);
    let state = tmp.path().join("state");
    let mut agent = Killed(
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args([
                "agent",
                "--site",
                site.to_str().unwrap(),
                "--node",
                "hv1",
                "--state-dir",
                state.to_str().unwrap(),
                "--netns",
                &node.0,
            ])
            .env("RAMPART_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel::<String>();
    for pipe in [
        Box::new(agent.0.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(agent.0.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
    }
    let mut seen = Vec::new();
    let mut wait_for = |what: &str, limit: Duration, poke: &mut dyn FnMut()| -> String {
        let t = Instant::now();
        loop {
            while let Ok(l) = rx.try_recv() {
                seen.push(l.clone());
                if l.contains(what) {
                    return l;
                }
            }
            assert!(
                t.elapsed() < limit,
                "no line with {what:?}; agent said:\n{}",
                seen.join("\n")
            );
            poke();
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(
        "listening on nflog group",
        Duration::from_secs(20),
        &mut || {},
    );
    wait_for("applied", Duration::from_secs(30), &mut || {});
    // A SYN to rpcbind from the peer: dropped (so the connect times out) and logged.
    let peer_name = peer.0.clone();
    let line = wait_for("ORIGIN=cluster.fw:10", Duration::from_secs(20), &mut || {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &peer_name,
                "timeout",
                "0.3",
                "bash",
                "-c",
                "exec 3<>/dev/tcp/192.0.2.10/111",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    });
    check_pve_format(&line, &a);
}

/// The same under journald: the entry carries the rule's origin, node and
/// the packet as fields (RULE_ORIGIN=cluster.fw:10, NODE=hv1, ...).
#[test]
fn under_journald_a_logged_drop_carries_rule_origin_and_node_fields() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let node = Ns::new("fwjournal-node");
    let peer = Ns::new("fwjournal-peer");
    let (a, b) = (
        format!("rfj{}a", std::process::id() % 100_000),
        format!("rfj{}b", std::process::id() % 100_000),
    );
    ip(&[
        "-n", &node.0, "link", "add", &a, "type", "veth", "peer", "name", &b, "netns", &peer.0,
    ]);
    ip(&["-n", &node.0, "addr", "add", "192.0.2.10/24", "dev", &a]);
    ip(&["-n", &node.0, "link", "set", &a, "up"]);
    ip(&["-n", &node.0, "link", "set", "lo", "up"]);
    ip(&["-n", &peer.0, "addr", "add", "192.0.2.99/24", "dev", &b]);
    ip(&["-n", &peer.0, "link", "set", &b, "up"]);

    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_site(&site, "nftables");
    let jdir = tmp.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    let rx = std::os::unix::net::UnixDatagram::bind(jdir.join("socket")).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _agent = Killed(
        under_journald(&jdir, &tmp.path().join("stderr"))
            .args(["agent", "--site", site.to_str().unwrap(), "--node", "hv1"])
            .args(["--state-dir", tmp.path().join("state").to_str().unwrap()])
            .args(["--netns", &node.0])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buf = vec![0u8; 65536];
    let mut seen: Vec<Vec<String>> = Vec::new();
    let t = Instant::now();
    let mut applied = false;
    let entry = loop {
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "no entry with RULE_ORIGIN=cluster.fw:10; journal got {seen:?}"
        );
        if let Ok(n) = rx.recv(&mut buf) {
            let e = journal_fields(&buf[..n]);
            applied |= e.iter().any(|f| f.starts_with("MESSAGE=applied"));
            if e.iter().any(|f| f == "RULE_ORIGIN=cluster.fw:10") {
                break e;
            }
            seen.push(e);
            continue;
        }
        if applied {
            let _ = Command::new("ip")
                .args(["netns", "exec", &peer.0, "timeout", "0.3", "bash", "-c"])
                .arg("exec 3<>/dev/tcp/192.0.2.10/111")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    };
    for want in [
        "NODE=hv1",
        "VERDICT=DROP",
        "SRC=192.0.2.99",
        "DST=192.0.2.10",
        "DPT=111",
        "TARGET=rampart::fwlog",
    ] {
        assert!(
            entry.iter().any(|f| f == want),
            "{want} missing in {entry:?}"
        );
    }
}

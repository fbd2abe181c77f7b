//! `rampart apply / status / rollback` in a network namespace the test
//! creates: the real kernel, nothing outside the namespace touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{is_root, Ns};

fn rampart(args: &[&str], state: &Path, ns: &Ns) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .args(["--netns", &ns.0])
        .env_remove("SSH_CONNECTION")
        .output()
        .unwrap()
}

fn site(blacklist: Option<&str>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::create_dir_all(p.join("nodes/hv1")).unwrap();
    std::fs::write(
        p.join("site.toml"),
        "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n",
    )
    .unwrap();
    let mut cluster = String::from("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n\n[RULES]\nIN HTTP(ACCEPT)\n");
    if let Some(b) = blacklist {
        cluster.push_str(&format!("\n[IPSET blacklist]\n{b}\n"));
    }
    std::fs::write(p.join("firewall/cluster.fw"), cluster).unwrap();
    std::fs::write(p.join("nodes/hv1/host.fw"), "[OPTIONS]\nenable: 1\n").unwrap();
    d
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn apply_status_drift_and_rollback() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("apply");
    let state = tempfile::tempdir().unwrap();
    let s = site(None);
    let sp: PathBuf = s.path().into();
    let o = rampart(&["apply", sp.to_str().unwrap()], state.path(), &ns);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        ns.nft(&["list", "table", "inet", "rampart"])
            .status
            .success(),
        "the table runs"
    );
    let o = rampart(&["status"], state.path(), &ns);
    assert!(
        o.status.success() && text(&o).contains("in sync"),
        "{}",
        text(&o)
    );

    // Someone flushes rampart's table by hand: status reports drift (exit 1).
    assert!(ns
        .nft(&["flush", "table", "inet", "rampart"])
        .status
        .success());
    let o = rampart(&["status"], state.path(), &ns);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("DRIFTED"), "{}", text(&o));

    // Rollback returns to the last good plan: in sync again.
    let o = rampart(&["rollback"], state.path(), &ns);
    assert!(o.status.success(), "{}", text(&o));
    let o = rampart(&["status"], state.path(), &ns);
    assert!(
        o.status.success() && text(&o).contains("in sync"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_lockout_guard_refuses_and_changes_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("guard");
    let state = tempfile::tempdir().unwrap();
    let s = site(Some("198.51.100.0/24"));
    let o = rampart(&["apply", s.path().to_str().unwrap()], state.path(), &ns);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("E0502") && t.contains("refusing to apply"),
        "{t}"
    );
    assert!(
        !ns.nft(&["list", "table", "inet", "rampart"])
            .status
            .success(),
        "nothing was applied"
    );

    // --force applies it anyway (the admin has console access).
    let o = rampart(
        &["apply", s.path().to_str().unwrap(), "--force"],
        state.path(),
        &ns,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(ns
        .nft(&["list", "table", "inet", "rampart"])
        .status
        .success());
}

#[test]
fn a_site_with_errors_applies_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("bad");
    let state = tempfile::tempdir().unwrap();
    let s = site(None);
    std::fs::write(
        s.path().join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolciy_in: DROP\n",
    )
    .unwrap();
    let o = rampart(&["apply", s.path().to_str().unwrap()], state.path(), &ns);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("E0103"), "{}", text(&o));
    assert!(!ns
        .nft(&["list", "table", "inet", "rampart"])
        .status
        .success());
}

#[test]
fn a_missing_site_is_not_firewall_off() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("missing");
    let state = tempfile::tempdir().unwrap();
    let s = site(None);
    let o = rampart(&["apply", s.path().to_str().unwrap()], state.path(), &ns);
    assert!(o.status.success(), "{}", text(&o));
    let before = ns.nft(&["list", "table", "inet", "rampart"]).stdout;
    let o = rampart(&["apply", "/nonexistent/rampart-site"], state.path(), &ns);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        ns.nft(&["list", "table", "inet", "rampart"]).stdout,
        before,
        "the running ruleset is untouched"
    );
}

/// Kills what runs in the namespace (wireguard-go) before it goes, and
/// removes its WireGuard socket directory.
struct KillIn(String);
impl Drop for KillIn {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip").args(["netns", "pids", &self.0]).output() {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = std::fs::remove_dir_all(Path::new("/run/rampart/netns").join(&self.0));
    }
}

#[test]
fn apply_brings_up_wireguard_and_status_shows_network_drift() {
    let have_wg = Command::new("sh")
        .args(["-c", "command -v wireguard-go && command -v wg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root() || !have_wg {
        eprintln!("skipped: needs root, wireguard-go and wg");
        return;
    }
    let ns = Ns::new("applywg");
    let _kill = KillIn(ns.0.clone());
    let state = tempfile::tempdir().unwrap();
    // The node's key store: one key from the real `wg genkey`, 0600.
    let keys = tempfile::tempdir().unwrap();
    let key = Command::new("wg").arg("genkey").output().unwrap().stdout;
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(keys.path().join("ops.key"))
            .unwrap()
            .write_all(&key)
            .unwrap();
    }
    let s = site(None);
    let mut toml = std::fs::read_to_string(s.path().join("site.toml")).unwrap();
    toml = toml.replace(
        "[[node]]\nname = \"hv1\"\n",
        "[[node]]\nname = \"hv1\"\nendpoint = \"192.0.2.10\"\n",
    );
    toml.push_str(
        "\n[[node]]\nname = \"hv2\"\nendpoint = \"192.0.2.20\"\n\n[[wireguard]]\nname = \"ops\"\ninterface = \"wgo0\"\npool = [\"10.66.0.0/24\"]\nlisten_port = 51966\ntopology = \"mesh\"\n\n[[wireguard.member]]\nname = \"hv1\"\npublic_key = \"SA3KjzlBe4Eie688sw8DwPIXZUMt4Q/pnGcSTLftmX0=\"\naddress = [\"10.66.0.1\"]\n\n[[wireguard.member]]\nname = \"hv2\"\npublic_key = \"y0u4RJIqkgxzXLc4fmHwHW+M6y1PgDUhvkEnEnBd/1U=\"\naddress = [\"10.66.0.2\"]\n",
    );
    std::fs::write(s.path().join("site.toml"), toml).unwrap();
    let sp = s.path().to_str().unwrap();
    let kp = keys.path().to_str().unwrap();
    let o = rampart(
        &["apply", sp, "--node", "hv1", "--keys", kp],
        state.path(),
        &ns,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("network: wgo0: created"), "{}", text(&o));
    // The listen port apply loaded is the one compile prints.
    let listing =
        String::from_utf8_lossy(&ns.nft(&["list", "table", "inet", "rampart"]).stdout).into_owned();
    assert!(
        listing.contains("ip saddr 192.0.2.20 udp dport 51966"),
        "{listing}"
    );
    let st = rampart(&["status"], state.path(), &ns);
    let t = text(&st);
    assert!(st.status.success(), "{t}");
    assert!(
        t.contains("wireguard:     wgo0 (network ops, port 51966, 1 peer(s), 10.66.0.1/24)"),
        "{t}"
    );
    assert!(t.contains("network:       in sync"), "{t}");
    // Someone deletes the interface: status says so (exit 1), apply repairs.
    let del = Command::new("ip")
        .args(["netns", "exec", &ns.0, "ip", "link", "del", "wgo0"])
        .status()
        .unwrap();
    assert!(del.success());
    let st = rampart(&["status"], state.path(), &ns);
    let t = text(&st);
    assert_eq!(st.status.code(), Some(1), "{t}");
    assert!(t.contains("wgo0: interface missing"), "{t}");
    let o = rampart(
        &["apply", sp, "--node", "hv1", "--keys", kp],
        state.path(),
        &ns,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(rampart(&["status"], state.path(), &ns).status.success());
    // The key never shows in output or state.
    let k = String::from_utf8_lossy(&key).trim().to_string();
    assert!(!text(&o).contains(&k));
    for e in std::fs::read_dir(state.path()).unwrap() {
        let p = e.unwrap().path();
        if let Ok(body) = std::fs::read_to_string(&p) {
            assert!(!body.contains(&k), "key in {}", p.display());
        }
    }
}

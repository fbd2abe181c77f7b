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

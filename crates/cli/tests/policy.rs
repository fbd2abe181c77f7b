//! `rampart compile`, `simulate` and `test-policy` as a user runs them.

use std::path::PathBuf;
use std::process::Command;

fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

mod common;
use common::is_root;

#[test]
fn compile_prints_a_ruleset_with_origins() {
    let out = rampart()
        .arg("compile")
        .arg(repo().join("examples/homelab"))
        .args(["--node", "pve1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("table inet rampart"), "{text}");
    assert!(
        text.contains("comment \"cluster.fw:"),
        "every rule names its line:\n{text}"
    );
    assert!(
        !text.contains("flush ruleset"),
        "never flushes other tables"
    );
}

#[test]
fn compile_all_writes_one_file_set_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let out = rampart()
        .arg("compile")
        .arg(repo().join("examples/homelab"))
        .arg("--all")
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    // pve3 runs an IPS guest on the iptables backend (xt NFQUEUE; this
    // kernel's nftables has no queue): it compiles too, although the
    // nftables model the simulator walks for it has to queue.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for node in ["pve1", "pve2"] {
        assert!(
            dir.path().join(node).join("ruleset.nft").is_file(),
            "{node}: {stderr}"
        );
        assert!(dir.path().join(node).join("sysctl.conf").is_file());
    }
    let v4 = std::fs::read_to_string(dir.path().join("pve3/iptables.rules")).unwrap();
    assert!(v4.contains("NFQUEUE"), "{v4}");
}

#[test]
fn compile_refuses_a_site_with_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("site.toml"),
        "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("firewall")).unwrap();
    std::fs::write(
        dir.path().join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN SSH(ACCEPT) -source +nosuchset\n",
    )
    .unwrap();
    let out = rampart().arg("compile").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("E0402") && err.contains("cluster.fw:5:"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "nothing compiled");
}

#[test]
fn simulate_names_the_deciding_line() {
    let site = fixtures().join("host-basics");
    let out = rampart()
        .arg("simulate")
        .arg(&site)
        .args([
            "--from",
            "outside",
            "--to",
            "host",
            "-p",
            "tcp",
            "--dport",
            "25",
            "--source",
            "203.0.113.20",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("REJECT"), "{text}");
    assert!(
        text.contains("cluster.fw:17"),
        "the REJECT rule's line: {text}"
    );
}

#[test]
fn simulate_usage_errors_exit_2() {
    let out = rampart()
        .arg("simulate")
        .arg(fixtures().join("host-basics"))
        .args(["--from", "outside", "--to", "host", "-p", "tcp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dport"));
}

#[test]
fn test_policy_against_the_simulator() {
    let out = rampart()
        .arg("test-policy")
        .arg(fixtures().join("host-basics"))
        .arg(fixtures().join("guest-basics"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().last(), Some("25 passed, 0 failed"));
}

#[test]
fn test_policy_reports_a_wrong_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("case");
    copy_dir(&fixtures().join("host-basics"), &case);
    let p = case.join("packets.toml");
    let text = std::fs::read_to_string(&p).unwrap().replacen(
        "verdict = \"REJECT\"",
        "verdict = \"ACCEPT\"",
        1,
    );
    std::fs::write(&p, text).unwrap();
    let out = rampart().arg("test-policy").arg(&case).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FAIL")
            && text.contains("explicit REJECT answers: expected ACCEPT, got REJECT"),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some("12 passed, 1 failed"));
}

#[test]
fn test_policy_against_the_kernel() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let out = rampart()
        .arg("test-policy")
        .arg("--kernel")
        .arg(fixtures().join("host-basics"))
        .arg(fixtures().join("guest-basics"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.lines().last(), Some("25 passed, 0 failed"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// bad-inputs 26: something the backend cannot express is an error naming
/// where it comes from, never a silently skipped rule.
#[test]
fn an_inexpressible_feature_is_an_error_not_a_skip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::write(
        p.join("site.toml"),
        "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[guest]]\nid = 100\nkind = \"vm\"\nnode = \"hv1\"\nnics = [{ name = \"net0\", bridge = \"vmbr0\", addresses = [\"192.0.2.100/24\"], firewall = true }]\n",
    )
    .unwrap();
    std::fs::write(p.join("firewall/cluster.fw"), "[OPTIONS]\nenable: 1\n").unwrap();
    // IPS needs nft `queue`, which this kernel (and the nftables backend
    // here) does not have.
    std::fs::write(p.join("firewall/100.fw"), "[OPTIONS]\nenable: 1\nips: 1\n").unwrap();
    let out = rampart().arg("compile").arg(p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        // It points at the `ips: 1` line of the guest's .fw file.
        err.contains("error[E0413]")
            && err.contains("ips: 1")
            && err.contains("firewall/100.fw:3:1"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no ruleset printed for a node that does not compile"
    );
}

/// The project's whole conformance suite through the CLI's simulator path
/// (the kernel side runs in crates/lab/tests/conformance_all.rs).
#[test]
fn the_conformance_suite_passes_on_the_simulator() {
    let out = rampart()
        .arg("test-policy")
        .arg(repo().join("conformance"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = text.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{text}");
}

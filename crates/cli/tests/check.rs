//! `rampart check`: exit codes, text and JSON output, the conformance sites.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary site directory with the given files.
fn site(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (p, t) in files {
        let path = d.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
    d
}

const NODE: &str = "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n";

#[test]
fn conformance_sites_check_clean() {
    for case in ["guest-basics", "host-basics"] {
        let o = rampart(&["check", fixture(case).to_str().unwrap()]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{case}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert!(
            stdout(&o).contains("0 errors, 0 warnings"),
            "{}",
            stdout(&o)
        );
        assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    }
}

#[test]
fn shared_conformance_sites_check_clean_when_present() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance");
    let Ok(rd) = std::fs::read_dir(&shared) else {
        return;
    };
    for e in rd.flatten() {
        if e.path().is_dir() {
            let o = rampart(&["check", e.path().to_str().unwrap()]);
            assert_eq!(o.status.code(), Some(0), "{:?}: {}", e.path(), stderr(&o));
        }
    }
}

#[test]
fn summary_counts_nodes_guests_nics_rules_and_sets() {
    let o = rampart(&["check", fixture("guest-basics").to_str().unwrap()]);
    let out = stdout(&o);
    assert!(out.contains("1 node, 3 guests, 3 NICs, 6 rules"), "{out}");
    assert!(out.contains("vm100 3"), "{out}");
    assert!(out.contains("dc-trusted (cluster, 1 entry)"), "{out}");
}

#[test]
fn errors_exit_1_with_rustc_style_diagnostics() {
    let d = site(&[
        ("site.toml", NODE),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\npolciy_in: DROP\n[RULES]\nIN SHH(ACCEPT)\n",
        ),
    ]);
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error[E0103]: unknown option `polciy_in`"),
        "{err}"
    );
    assert!(err.contains("--> firewall/cluster.fw:3:1"), "{err}");
    assert!(err.contains("3 | polciy_in: DROP"), "{err}");
    assert!(err.contains("= help: did you mean `policy_in`?"), "{err}");
    assert!(err.contains("error[E0310]: unknown macro `SHH`"), "{err}");
    assert!(
        stdout(&o).contains("2 errors, 0 warnings"),
        "{}",
        stdout(&o)
    );
}

/// Issue 14 item 3: the hint for a misspelt rule option once read
/// ``did you mean `-did you mean `dport`?`?``.
#[test]
fn unknown_rule_option_hint_names_the_option_once() {
    let d = site(&[
        ("site.toml", NODE),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -p tcp -dprot 22\n",
        ),
    ]);
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("error[E0117]: unknown rule option `-dprot`"),
        "{err}"
    );
    let helps: Vec<&str> = err.lines().filter(|l| l.contains("help:")).collect();
    assert_eq!(helps, ["  = help: did you mean `-dport`?"], "{err}");
}

#[test]
fn warnings_exit_0_unless_denied() {
    let d = site(&[
        ("site.toml", NODE),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 0\n[IPSET web]\n10.0.0.1\n10.0.0.1\n",
        ),
    ]);
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning[E0312]"), "{}", stderr(&o));
    let o = rampart(&["check", d.path().to_str().unwrap(), "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn missing_site_is_a_usage_error() {
    let o = rampart(&["check", "/nonexistent/rampart-site"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("E0701")
            && stderr(&o).contains("site directory /nonexistent/rampart-site"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_file_is_not_a_site() {
    let d = site(&[("site.toml", NODE)]);
    let o = rampart(&["check", d.path().join("site.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(rampart(&[]).status.code(), Some(2));
    assert_eq!(rampart(&["check"]).status.code(), Some(2));
    assert_eq!(
        rampart(&["check", ".", "--format", "xml"]).status.code(),
        Some(2)
    );
}

#[test]
fn json_output() {
    let d = site(&[
        ("site.toml", NODE),
        (
            "firewall/cluster.fw",
            "[RULES]\nIN ACCEPT -p tcp -dport 90:80\n",
        ),
    ]);
    let o = rampart(&["check", d.path().to_str().unwrap(), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 1);
    let d0 = &v["diagnostics"][0];
    assert_eq!(d0["code"], "E0302");
    assert_eq!(d0["severity"], "error");
    assert_eq!(d0["file"], "firewall/cluster.fw");
    assert_eq!(
        (d0["line"].as_u64(), d0["col"].as_u64(), d0["len"].as_u64()),
        (Some(2), Some(25), Some(5))
    );
    assert_eq!(d0["hint"], "write `80:90`");
    assert_eq!(v["summary"]["nodes"], 1);

    let o = rampart(&[
        "check",
        fixture("host-basics").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["summary"]["rules_total"], 6);
    assert_eq!(v["summary"]["rules_by_zone"][0]["zone"], "host:hv1");
}

#[test]
fn proxmox_tree_symlinks_are_not_followed_twice() {
    let d = site(&[
        (
            "corosync.conf",
            "nodelist {\n  node {\n    name: pve1\n    ring0_addr: 10.0.0.11\n  }\n}\n",
        ),
        (
            "nodes/pve1/qemu-server/100.conf",
            "net0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1\n",
        ),
        // A management set: the node has no addresses here, and `check`
        // runs the lock-out guard as `apply` does.
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\n\n[IPSET management]\n10.0.0.0/24\n",
        ),
    ]);
    std::os::unix::fs::symlink(
        d.path().join("nodes/pve1/qemu-server"),
        d.path().join("qemu-server"),
    )
    .unwrap();
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("1 node, 1 guest, 1 NIC"),
        "{}",
        stdout(&o)
    );
}

/// Issue 14 item 7: `check` reports everything `compile` / `apply` refuse
/// (they plan every node through `rampart_plan`: backend limits, the
/// lock-out guard) and every warning they print, so `--deny-warnings`
/// fails on it. Each case: what the plan path says, then `check`.
#[test]
fn check_reports_every_refusal_of_the_plan_path() {
    const GUEST: &str = "[[guest]]\nid = 100\nkind = \"vm\"\nnode = \"hv1\"\nnics = [{ name = \"net0\", bridge = \"vmbr0\", addresses = [\"192.0.2.100/24\"], firewall = true }]\n";
    const HV2: &str = "[[node]]\nname = \"hv2\"\nbridges = { vmbr0 = [\"192.0.2.11/24\"] }\n";
    const MGMT: &str =
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n";
    struct Case {
        what: &'static str,
        files: Vec<(&'static str, String)>,
        /// `error[E....]` or `warning[E....]`.
        expect: &'static str,
    }
    let cases = [
        Case {
            what: "IPS on an nftables node without nft queue (backend refusal)",
            files: vec![
                ("site.toml", format!("{NODE}\n{GUEST}")),
                ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n".into()),
                ("firewall/100.fw", "[OPTIONS]\nenable: 1\nips: 1\n".into()),
            ],
            expect: "error[E0413]",
        },
        Case {
            what: "the admin's management address blacklisted (lock-out guard)",
            files: vec![
                ("site.toml", NODE.into()),
                (
                    "firewall/cluster.fw",
                    format!("{MGMT}\n[IPSET blacklist]\n198.51.100.0/24\n"),
                ),
            ],
            expect: "error[E0502]",
        },
        Case {
            what: "another node blacklisted (cluster guard)",
            files: vec![
                ("site.toml", format!("{NODE}\n{HV2}")),
                (
                    "firewall/cluster.fw",
                    format!("{MGMT}\n[IPSET blacklist]\n192.0.2.11\n"),
                ),
            ],
            expect: "error[E0504]",
        },
        Case {
            what: "log_nf_conntrack, which rampart says at its line it does not do",
            files: vec![
                ("site.toml", NODE.into()),
                ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n".into()),
                (
                    "nodes/hv1/host.fw",
                    "[OPTIONS]\nlog_nf_conntrack: 1\n".into(),
                ),
            ],
            expect: "warning[E0127]",
        },
    ];
    for c in &cases {
        let files: Vec<(&str, &str)> = c.files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let d = site(&files);
        let dir = d.path().to_str().unwrap();
        // The plan path: compile prints it (the guard's findings as
        // warnings, as it only shows the plan; apply refuses them).
        let o = rampart(&["compile", dir, "--all"]);
        let code = &c.expect[c.expect.find('[').unwrap()..];
        assert!(
            stderr(&o).contains(code),
            "{}: compile\n{}",
            c.what,
            stderr(&o)
        );
        let strict = c.expect.starts_with("warning");
        let mut args = vec!["check", dir];
        if strict {
            let o = rampart(&args);
            assert!(
                stderr(&o).contains(c.expect),
                "{}: check\n{}",
                c.what,
                stderr(&o)
            );
            assert_eq!(o.status.code(), Some(0), "{}: only a warning", c.what);
            args.push("--deny-warnings");
        }
        let o = rampart(&args);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}: check {:?}\n{}",
            c.what,
            args,
            stderr(&o)
        );
        assert!(
            stderr(&o).contains(c.expect),
            "{}: check\n{}",
            c.what,
            stderr(&o)
        );
    }
}

// ---------- one reader for the CLI and the agent (issue 17, item 2) ----------

fn pve_site() -> tempfile::TempDir {
    site(&[
        ("site.toml", NODE),
        ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n"),
        ("nodes/hv1/host.fw", "[OPTIONS]\nenable: 1\n"),
    ])
}

fn refused(d: &Path, what: &str) {
    let o = rampart(&["check", d.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{what}: {}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(stderr(&o).contains("E0701"), "{what}: {}", stderr(&o));
}

#[test]
fn a_symlinked_cluster_fw_leaving_the_tree_is_refused_naming_it() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("cluster.fw"), "[OPTIONS]\nenable: 1\n").unwrap();
    let d = pve_site();
    std::fs::remove_file(d.path().join("firewall/cluster.fw")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("cluster.fw"),
        d.path().join("firewall/cluster.fw"),
    )
    .unwrap();
    refused(d.path(), "escaping symlink");
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert!(stderr(&o).contains("firewall/cluster.fw"), "{}", stderr(&o));
}

#[test]
fn a_fifo_a_directory_or_a_symlinked_firewall_dir_is_refused() {
    let d = pve_site();
    let fifo = d.path().join("firewall/100.fw");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    refused(d.path(), "fifo");
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert!(stderr(&o).contains("firewall/100.fw"), "{}", stderr(&o));

    let d = pve_site();
    std::fs::remove_file(d.path().join("firewall/cluster.fw")).unwrap();
    std::fs::create_dir(d.path().join("firewall/cluster.fw")).unwrap();
    std::fs::write(
        d.path().join("firewall/cluster.fw/x"),
        "[OPTIONS]\nenable: 1\n",
    )
    .unwrap();
    refused(d.path(), "directory as cluster.fw");

    let d = pve_site();
    std::fs::rename(d.path().join("firewall"), d.path().join("fw-real")).unwrap();
    std::os::unix::fs::symlink(d.path().join("fw-real"), d.path().join("firewall")).unwrap();
    refused(d.path(), "symlinked firewall/");
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert!(
        stderr(&o).contains("`firewall` is a symlink to a directory"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pve_local_qemu_server_and_lxc_links_are_aliases_and_not_read_twice() {
    // What pmxcfs shows for the local node.
    let d = site(&[
        (
            "corosync.conf",
            "nodelist {\n  node {\n    name: pve1\n    ring0_addr: 192.0.2.11\n  }\n}\n",
        ),
        ("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n"),
        ("firewall/100.fw", "[OPTIONS]\nenable: 1\n"),
        ("nodes/pve1/host.fw", "[OPTIONS]\nenable: 1\n"),
        (
            "nodes/pve1/qemu-server/100.conf",
            "net0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1\n",
        ),
        ("nodes/pve1/lxc/.keep", ""),
    ]);
    let plain = rampart(&["check", d.path().to_str().unwrap()]);
    for (link, to) in [
        ("local", "nodes/pve1"),
        ("qemu-server", "nodes/pve1/qemu-server"),
        ("lxc", "nodes/pve1/lxc"),
    ] {
        std::os::unix::fs::symlink(to, d.path().join(link)).unwrap();
    }
    let linked = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(
        linked.status.code(),
        plain.status.code(),
        "{}",
        stderr(&linked)
    );
    assert_eq!(stdout(&linked), stdout(&plain));
    assert!(
        !stderr(&linked).contains("E0412"),
        "guest seen twice: {}",
        stderr(&linked)
    );
}

#[test]
fn editor_backups_in_the_site_are_named_in_a_warning() {
    let d = pve_site();
    std::fs::write(d.path().join("firewall/100.fw~"), "[OPTIONS]\nenable: 1\n").unwrap();
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert!(
        stderr(&o).contains("E0710") && stderr(&o).contains("firewall/100.fw~"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_naming_file_and_limit() {
    let d = pve_site();
    let big = format!(
        "[OPTIONS]\nenable: 1\n[IPSET big]\n{}",
        "10.0.0.1\n".repeat(1_000_000)
    );
    std::fs::write(d.path().join("firewall/cluster.fw"), big).unwrap();
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("E0711") && e.contains("firewall/cluster.fw") && e.contains("8388608"),
        "{e}"
    );
}

#[test]
fn missing_empty_or_cut_short_cluster_fw_fails_check() {
    for (what, text) in [
        ("empty", ""),
        ("options only", "[OPTIONS]\n"),
        (
            "cut mid-line",
            "[OPTIONS]\nenable: 1\n[RULES]\nIN ACCEPT -source 10.1.2.0/2",
        ),
    ] {
        let d = pve_site();
        std::fs::write(d.path().join("firewall/cluster.fw"), text).unwrap();
        let o = rampart(&["check", d.path().to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{what}: {}", stderr(&o));
    }
    let d = pve_site();
    std::fs::remove_file(d.path().join("firewall/cluster.fw")).unwrap();
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("E0705"), "{}", stderr(&o));
}

/// Issue 17 items 3 and 8: `-p ip` (protocol 0) warns that it matches
/// every protocol, as in Proxmox; an IPv4-mapped IPv6 address (rule,
/// alias, ipset entry) warns at its token that it never matches.
#[test]
fn protocol_zero_and_v4_mapped_addresses_warn_at_their_span() {
    let d = site(&[
        ("site.toml", NODE),
        (
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\n\n[ALIASES]\nmapped ::ffff:10.1.2.3\n\n[IPSET web]\n::ffff:0:0/96\n\n[RULES]\nIN ACCEPT -p hopopt -dest 192.0.2.10\nIN ACCEPT -source ::ffff:198.51.100.7 -p tcp -dport 80\n",
        ),
    ]);
    let o = rampart(&["check", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning[E0314]: `-p hopopt` matches every protocol, as in Proxmox\n  --> firewall/cluster.fw:11:14"),
        "{err}"
    );
    assert!(
        err.contains("warning[E0210]: `::ffff:198.51.100.7` is an IPv4-mapped IPv6 address; it never matches\n  --> firewall/cluster.fw:12:19"),
        "{err}"
    );
    assert!(
        err.contains("= help: write the IPv4 address `198.51.100.7`"),
        "{err}"
    );
    assert!(err.contains("--> firewall/cluster.fw:5:8"), "alias: {err}");
    assert!(
        err.contains("--> firewall/cluster.fw:8:1"),
        "ipset entry: {err}"
    );
    assert!(
        err.contains("= help: write the IPv4 network `0.0.0.0/0`"),
        "{err}"
    );
    let o = rampart(&["check", d.path().to_str().unwrap(), "--deny-warnings"]);
    assert_eq!(o.status.code(), Some(1));
}

//! After a reboot: the kernel holds no rampart tables while the state says
//! the site's plan runs. `agent --once`, the agent loop (before READY=1)
//! and `rampart restore` (the boot unit, no site needed) load it; the
//! metrics port lives in the agent's namespace; the units verify.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{is_root, Ns};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

fn rampart(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RAMPART_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn has_table(ns: &Ns) -> bool {
    ns.nft(&["list", "table", "inet", "rampart"])
        .status
        .success()
}

fn rules(ns: &Ns) -> String {
    String::from_utf8_lossy(&ns.nft(&["list", "table", "inet", "rampart"]).stdout).into_owned()
}

fn write_site(p: &Path, marker: &str) {
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::create_dir_all(p.join("nodes/hv1")).unwrap();
    std::fs::write(p.join("nodes/hv1/host.fw"), "[OPTIONS]\nenable: 1\n").unwrap();
    std::fs::write(
        p.join("site.toml"),
        "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n",
    )
    .unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        format!("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n{marker}\n\n[RULES]\nIN HTTP(ACCEPT)\n"),
    )
    .unwrap();
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A site applied once in namespace `first`; returns (site, state).
fn applied_once(tmp: &Path, first: &Ns) -> (String, String) {
    let site = tmp.join("site");
    write_site(&site, "203.0.113.7");
    let state = tmp.join("state");
    let (site, state) = (
        site.to_string_lossy().into_owned(),
        state.to_string_lossy().into_owned(),
    );
    let o = rampart(&[
        "agent",
        "--once",
        "--site",
        &site,
        "--node",
        "hv1",
        "--state-dir",
        &state,
        "--netns",
        &first.0,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(has_table(first));
    (site, state)
}

#[test]
fn agent_once_after_a_reboot_loads_the_tables_of_an_unchanged_site() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let first = Ns::new("boot1");
    let (site, state) = applied_once(tmp.path(), &first);
    let want = rules(&first);
    drop(first);
    // The reboot: a fresh namespace, the same state and site.
    let ns = Ns::new("boot1b");
    assert!(!has_table(&ns));
    let o = rampart(&[
        "agent",
        "--once",
        "--site",
        &site,
        "--node",
        "hv1",
        "--state-dir",
        &state,
        "--netns",
        &ns.0,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        has_table(&ns),
        "no tables after agent --once:\n{}",
        text(&o)
    );
    assert_eq!(
        rampart_in_force(&rules(&ns)),
        rampart_in_force(&want),
        "{}",
        text(&o)
    );
    // And status agrees.
    let o = rampart(&["status", "--state-dir", &state, "--netns", &ns.0]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("in sync"), "{}", text(&o));
}

/// The policy the hooks reach (staged names without their hash; objects
/// no hook reaches left out).
fn rampart_in_force(listing: &str) -> String {
    rampart_apply::twophase::in_force(listing)
}

#[test]
fn agent_loop_after_a_reboot_loads_the_tables_before_ready() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let first = Ns::new("boot2");
    let (site, state) = applied_once(tmp.path(), &first);
    drop(first);
    let ns = Ns::new("boot2b");
    let sock = tmp.path().join("notify");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _agent = Killed(
        Command::new(BIN)
            .args([
                "agent",
                "--site",
                &site,
                "--node",
                "hv1",
                "--state-dir",
                &state,
                "--netns",
                &ns.0,
                // the first drift check is far away
                "--interval",
                "300",
            ])
            .env("NOTIFY_SOCKET", &sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    assert!(
        has_table(&ns),
        "READY=1 after {:?} with no tables",
        t.elapsed()
    );
}

#[test]
fn restore_loads_the_last_good_plan_without_a_site_and_fails_closed_without_one() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let first = Ns::new("boot3");
    let (site, state) = applied_once(tmp.path(), &first);
    let want = rampart_in_force(&rules(&first));
    drop(first);
    std::fs::remove_dir_all(&site).unwrap();
    let ns = Ns::new("boot3b");
    let o = rampart(&["restore", "--state-dir", &state, "--netns", &ns.0]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("restored the last good plan"),
        "{}",
        text(&o)
    );
    assert_eq!(rampart_in_force(&rules(&ns)), want);
    // No record: nothing loaded, and the exit status says so.
    let empty = tmp.path().join("empty");
    let ns2 = Ns::new("boot3c");
    let o = rampart(&[
        "restore",
        "--state-dir",
        empty.to_str().unwrap(),
        "--netns",
        &ns2.0,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no last good plan"), "{}", text(&o));
    assert!(!has_table(&ns2));
}

fn get_metrics(ns: Option<&str>, port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port));
    let conn = match ns {
        None => connect(),
        Some(ns) => {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    connect()
                })
                .join()
                .unwrap()
            })
        }
    };
    let mut s = conn.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn agent_netns_serves_metrics_inside_the_namespace_only() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new("metr");
    assert!(Command::new("ip")
        .args(["-n", &ns.0, "link", "set", "lo", "up"])
        .status()
        .unwrap()
        .success());
    let site = tmp.path().join("site");
    write_site(&site, "203.0.113.7");
    let state = tmp.path().join("state");
    // A port free in the caller's namespace (and, the namespace being new,
    // in the agent's).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let _agent = Killed(
        Command::new(BIN)
            .args([
                "agent",
                "--site",
                site.to_str().unwrap(),
                "--node",
                "hv1",
                "--state-dir",
                state.to_str().unwrap(),
                "--netns",
                &ns.0,
                "--metrics-listen",
                &listen,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let inside = loop {
        if let Some(m) =
            get_metrics(Some(&ns.0), port).filter(|m| m.contains("rampart_applies_total 1"))
        {
            break m;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no metrics inside the namespace"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(inside.starts_with("HTTP/1.1 200"), "{inside}");
    assert!(
        get_metrics(None, port).is_none(),
        "the metrics port answers in the caller's namespace"
    );
}

#[test]
fn contrib_units_verify() {
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib");
    let Ok(v) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: no systemd-analyze");
        return;
    };
    assert!(v.status.success());
    let restore = std::fs::read_to_string(units.join("rampart-restore.service")).unwrap();
    for want in [
        "DefaultDependencies=no",
        "Before=network-pre.target",
        "Wants=network-pre.target",
        "ExecStart=/usr/bin/rampart restore",
    ] {
        assert!(
            restore.lines().any(|l| l.starts_with(want)),
            "missing {want}"
        );
    }
    // Verify copies whose ExecStart names a binary that exists here
    // (systemd-analyze checks that the program is executable).
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for u in ["rampart-restore.service", "rampart-agent.service"] {
        let t = std::fs::read_to_string(units.join(u))
            .unwrap()
            .replace("/usr/bin/rampart", BIN);
        let p = dir.path().join(u);
        std::fs::write(&p, t).unwrap();
        paths.push(p);
    }
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&paths)
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()
        .unwrap();
    let out = text(&o);
    // Only complaints about these units count (the host's own units may
    // have problems of their own).
    let ours: Vec<&str> = out.lines().filter(|l| l.contains("rampart")).collect();
    assert!(o.status.success() && ours.is_empty(), "{out}");
}

/// `kill -9` of `rampart apply` between its stage and switch transactions
/// leaves its script file in the temp directory and unreachable staged
/// objects in the kernel; the next agent start (the site unchanged since
/// the last good apply) removes both.
#[test]
fn agent_start_cleans_up_after_an_apply_killed_mid_way() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new("k9mid");
    let (site, state) = applied_once(tmp.path(), &ns);
    let before = rampart_in_force(&rules(&ns));
    // A new revision, applied by a `rampart apply` whose switch hangs.
    let site2 = tmp.path().join("site2");
    write_site(&site2, "203.0.113.99");
    let shim = tmp.path().join("shim");
    std::fs::create_dir(&shim).unwrap();
    let mark = tmp.path().join("mark");
    std::fs::create_dir(&mark).unwrap();
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nft");
    std::fs::write(
        shim.join("nft"),
        format!(
            "#!/bin/sh\nM={m}\necho \"$*\" >> \"$M/calls\"\nif [ \"$1\" = -f ] && [ -e \"$M/staged\" ]; then echo \"$2\" > \"$M/h.tmp\"; mv \"$M/h.tmp\" \"$M/hanging\"; exec sleep 60; fi\n{real} \"$@\"; rc=$?\nif [ \"$1\" = -f ] && [ $rc = 0 ]; then : > \"$M/staged\"; fi\nexit $rc\n",
            m = mark.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(shim.join("nft"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Another table's commit moves the ruleset generation: the apply can
    // no longer send a difference and stages the whole plan.
    assert!(ns.nft(&["add", "table", "inet", "other"]).status.success());
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(BIN)
            .args([
                "apply",
                site2.to_str().unwrap(),
                "--node",
                "hv1",
                "--state-dir",
                &state,
                "--netns",
                &ns.0,
            ])
            .env("PATH", &path)
            .env("RAMPART_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("apply.log")).unwrap())
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let hanging = mark.join("hanging");
    let t = Instant::now();
    while !hanging.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the switch was never reached: {}\nnft calls:\n{}",
            std::fs::read_to_string(tmp.path().join("apply.log")).unwrap_or_default(),
            std::fs::read_to_string(mark.join("calls")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let script = std::fs::read_to_string(&hanging).unwrap().trim().to_owned();
    assert!(Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap();
    assert!(Path::new(&script).exists(), "{script}");
    assert!(
        rules(&ns).contains("203.0.113.99"),
        "staged objects expected"
    );
    assert_eq!(rampart_in_force(&rules(&ns)), before);
    // The agent starts on the unchanged (old) site.
    let o = rampart(&[
        "agent",
        "--once",
        "--site",
        &site,
        "--node",
        "hv1",
        "--state-dir",
        &state,
        "--netns",
        &ns.0,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!Path::new(&script).exists(), "{script} left behind");
    let l = rules(&ns);
    assert!(!l.contains("203.0.113.99"), "staged leftovers:\n{l}");
    assert_eq!(rampart_in_force(&l), before);
}

/// A step that fails after the switch (here a sysctl the kernel refuses,
/// in the recorded last good plan) is reported as what it is: exit 3, the
/// new ruleset named as live, the failed step named; `status` agrees.
#[test]
fn restore_reports_a_step_failing_after_the_switch_with_exit_3() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut plan = rampart_apply::Plan::nftables(
        "hv1".parse().unwrap(),
        "table inet rampart {\n chain input {\n  type filter hook input priority 0; policy accept;\n  tcp dport 4444 drop\n }\n}\n",
    );
    plan.sysctls
        .insert("net.ipv4.ip_default_ttl".into(), "0".into());
    let rec = rampart_apply::Applied {
        plan_hash: plan.content_hash(),
        plan,
        applied_at: 1,
        kernel_hash: None,
        nft_genid: None,
        nft_staged: false,
        nft_salt: None,
        nft_pins: Default::default(),
        incomplete: None,
        sysctls_before: Default::default(),
    };
    std::fs::write(
        state.join("last-good.plan"),
        serde_json::to_vec(&rec).unwrap(),
    )
    .unwrap();
    let ns = Ns::new("exit3");
    let st = state.to_str().unwrap();
    let o = rampart(&["restore", "--state-dir", st, "--netns", &ns.0]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(3), "{t}");
    assert!(t.contains("is live") && t.contains("ip_default_ttl"), "{t}");
    assert!(
        !t.contains("nothing was changed") && !t.contains("still in place"),
        "{t}"
    );
    assert!(rules(&ns).contains("dport 4444"));
    let o = rampart(&["status", "--state-dir", st, "--netns", &ns.0]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("INCOMPLETE") && t.contains("ip_default_ttl"),
        "{t}"
    );
}

/// `rampart apply` on a full state disk: refused before the switch, exit
/// 2, "nothing was changed", and the kernel keeps the old rules. The state
/// directory is a tmpfs in a private mount namespace (gone with it).
#[test]
fn apply_on_a_full_state_disk_changes_nothing_and_says_so() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ns = Ns::new("fulld");
    let (site1, site2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    write_site(&site1, "203.0.113.7");
    write_site(&site2, "203.0.113.99");
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let script = format!(
        "set -e; mount -t tmpfs -o size=64k tmpfs '{st}'; \
         '{BIN}' apply '{s1}' --node hv1 --state-dir '{st}' --netns '{ns}' >/dev/null; \
         dd if=/dev/zero of='{st}/filler' bs=4k 2>/dev/null || true; \
         set +e; '{BIN}' apply '{s2}' --node hv1 --state-dir '{st}' --netns '{ns}'; echo \"rc=$?\"",
        st = state.display(),
        s1 = site1.display(),
        s2 = site2.display(),
        ns = ns.0
    );
    let o = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let t = text(&o);
    assert!(t.contains("rc=2"), "{t}");
    assert!(
        t.contains("nothing was changed") && t.contains("No space left"),
        "{t}"
    );
    let l = rules(&ns);
    assert!(
        l.contains("203.0.113.7") && !l.contains("203.0.113.99"),
        "{l}"
    );
}

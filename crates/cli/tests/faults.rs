//! Faults (bad-inputs.md 42-43, issue "Proof, in CI"): the real `rampart
//! agent` against the real kernel in namespaces the tests create. Each fault
//! ends with the old or the new policy in force — never none, never a mix —
//! and the agent recovers on its own once the fault is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{is_root, Ns};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");

/// The policy the hooks reach (staged names and leftovers normalized away).
fn in_force(ns: &Ns) -> Option<String> {
    let o = ns.nft(&["-s", "list", "table", "inet", "rampart"]);
    o.status
        .success()
        .then(|| rampart_apply::twophase::in_force(&String::from_utf8_lossy(&o.stdout)))
}

/// A site whose management set carries `marker` (so revisions differ).
fn write_site(p: &Path, marker: &str) {
    write_site_rules(p, marker, "");
}

/// The site with `extra` rule lines after the HTTP rule.
fn write_site_rules(p: &Path, marker: &str, extra: &str) {
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
        format!("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n{marker}\n\n[RULES]\nIN HTTP(ACCEPT)\n{extra}"),
    )
    .unwrap();
}

struct AgentProc(Child);
impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(site: &Path, state: &Path, ns: &Ns, path_prefix: Option<&Path>) -> AgentProc {
    let mut c = Command::new(BIN);
    c.args(["agent", "--site"])
        .arg(site)
        .args(["--node", "hv1", "--state-dir"])
        .arg(state)
        .args(["--netns", &ns.0, "--interval", "0.5"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(p) = path_prefix {
        c.env(
            "PATH",
            format!(
                "{}:{}",
                p.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    }
    AgentProc(c.spawn().unwrap())
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for: {what}");
}

/// The policies of the two revisions, as the agent applies them.
fn reference(tag: &str, a: &str, b: &str) -> (String, String) {
    reference_rules(tag, (a, ""), (b, ""))
}

/// [`reference`] with extra rule lines per revision.
fn reference_rules(tag: &str, a: (&str, &str), b: (&str, &str)) -> (String, String) {
    let ns = Ns::new(tag);
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let mut out = Vec::new();
    for (m, extra) in [a, b] {
        write_site_rules(&site, m, extra);
        let o = Command::new(BIN)
            .args(["agent", "--once", "--site"])
            .arg(&site)
            .args(["--node", "hv1", "--state-dir"])
            .arg(tmp.path().join("state"))
            .args(["--netns", &ns.0])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out.push(in_force(&ns).unwrap());
    }
    (out.remove(0), out.remove(0))
}

#[test]
fn kill_9_mid_apply_at_many_moments_leaves_old_or_new_and_a_restart_converges() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (old, new) = reference("k9ref", "203.0.113.7", "203.0.113.8");
    assert_ne!(old, new);
    let mut seen = (0, 0);
    for (round, delay_ms) in [0u64, 20, 45, 70, 100, 140, 200, 300].iter().enumerate() {
        let ns = Ns::new(&format!("k9-{round}"));
        let tmp = tempfile::tempdir().unwrap();
        let (site, state) = (tmp.path().join("site"), tmp.path().join("state"));
        write_site(&site, "203.0.113.7");
        let mut a = agent(&site, &state, &ns, None);
        wait_until(Duration::from_secs(20), "first apply", || {
            in_force(&ns).as_deref() == Some(old.as_str()) && state.join("last-good.plan").exists()
        });
        write_site(&site, "203.0.113.8");
        // The directory watch polls every 100 ms: the kill lands before,
        // during or after the apply of the new revision.
        std::thread::sleep(Duration::from_millis(100 + delay_ms));
        let _ = a.0.kill();
        let _ = a.0.wait();
        let now = in_force(&ns).expect("rampart's table is still there");
        assert!(
            now == old || now == new,
            "killed {delay_ms} ms in: neither old nor new:\n{now}"
        );
        if now == old {
            seen.0 += 1;
        } else {
            seen.1 += 1;
        }
        // A restarted agent converges on the new revision by itself.
        let _b = agent(&site, &state, &ns, None);
        wait_until(Duration::from_secs(20), "restart converges", || {
            in_force(&ns).as_deref() == Some(new.as_str())
        });
    }
    eprintln!("after kill -9: {} old, {} new", seen.0, seen.1);
}

/// An `nft` in front of the real one that fails every transaction while
/// `fail-switch` exists in its directory and the transaction is the switch
/// (the one after the staging: it points hook chains at staged bodies), or
/// any transaction while `fail-all` exists.
fn nft_shim(dir: &Path) -> PathBuf {
    let real = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("nft installed");
    let shim = dir.join("nft");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nd=$(dirname \"$0\")\n\
             if [ \"$1\" = -f ]; then\n\
               if [ -e \"$d/fail-all\" ]; then echo 'shim: refused' >&2; exit 1; fi\n\
               if [ -e \"$d/fail-switch\" ] && grep -q '^add rule .* jump ' \"$2\"; then echo 'shim: switch refused' >&2; exit 1; fi\n\
             fi\n\
             exec {real} \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    shim
}

#[test]
fn nft_failing_mid_apply_keeps_the_old_policy_and_the_agent_retries_until_it_works() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // The new revision adds a rule with an interval set (so it is staged:
    // stage, then the switch through nft). A change of set elements alone
    // would not run nft at all (rampart sends element messages itself).
    const EXTRA: &str = "IN ACCEPT -source 10.66.0.0/16,10.77.0.0/16 -p tcp -dport 81\n";
    let (old, new) = reference_rules("nftref", ("203.0.113.7", ""), ("203.0.113.9", EXTRA));
    for (tag, flag) in [("sw", "fail-switch"), ("all", "fail-all")] {
        let ns = Ns::new(&format!("nftf-{tag}"));
        let tmp = tempfile::tempdir().unwrap();
        let (site, state, bin) = (
            tmp.path().join("site"),
            tmp.path().join("state"),
            tmp.path().join("bin"),
        );
        std::fs::create_dir_all(&bin).unwrap();
        nft_shim(&bin);
        write_site(&site, "203.0.113.7");
        let _a = agent(&site, &state, &ns, Some(&bin));
        wait_until(Duration::from_secs(20), "first apply", || {
            in_force(&ns).as_deref() == Some(old.as_str())
        });
        std::fs::write(bin.join(flag), "").unwrap();
        write_site_rules(&site, "203.0.113.9", EXTRA);
        // Several attempts fail (backoff 200 ms, 400 ms, ...): the old
        // policy stays in force the whole time.
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(1500) {
            assert_eq!(in_force(&ns).as_deref(), Some(old.as_str()), "{flag}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // nft works again: the agent gets there by itself.
        std::fs::remove_file(bin.join(flag)).unwrap();
        wait_until(
            Duration::from_secs(20),
            "retry applies the new revision",
            || in_force(&ns).as_deref() == Some(new.as_str()),
        );
        // Nothing staged by the failed attempts is left behind: each chain
        // once, hook chains twice (the hook and its staged body).
        wait_until(Duration::from_secs(5), "no leftovers", || {
            let l = ns.nft(&["list", "table", "inet", "rampart"]);
            let t = rampart_apply::twophase::unhash(&String::from_utf8_lossy(&l.stdout));
            let names: Vec<&str> = t
                .lines()
                .filter_map(|l| l.trim().strip_prefix("chain "))
                .collect();
            names.iter().all(|n| {
                names.iter().filter(|m| *m == n).count()
                    <= if n.starts_with("hook-") { 2 } else { 1 }
            })
        });
    }
}

#[test]
fn full_state_disk_keeps_a_policy_in_force_and_the_agent_recovers_when_space_returns() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    if Command::new("unshare").arg("--version").output().is_err() {
        eprintln!("skipped: no unshare");
        return;
    }
    let (old, new) = reference("diskref", "203.0.113.7", "203.0.113.10");
    let ns = Ns::new("disk");
    let tmp = tempfile::tempdir().unwrap();
    let (site, state) = (tmp.path().join("site"), tmp.path().join("state"));
    std::fs::create_dir_all(&state).unwrap();
    write_site(&site, "203.0.113.7");
    // The state directory is a 256 KiB tmpfs in the agent's own mount
    // namespace; `filler` sits in it too, so the test fills and frees it
    // through /proc/PID/root.
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{st}' && exec '{BIN}' agent --site '{site}' --node hv1 --state-dir '{st}' --netns '{ns}' --interval 0.5",
        st = state.display(),
        site = site.display(),
        ns = ns.0
    );
    let child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _a = AgentProc(child);
    let inner = PathBuf::from(format!("/proc/{pid}/root{}", state.display()));
    wait_until(Duration::from_secs(20), "first apply", || {
        in_force(&ns).as_deref() == Some(old.as_str()) && inner.join("last-good.plan").exists()
    });
    // Fill the disk.
    let filler = inner.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    use std::io::Write;
    let chunk = vec![0u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    drop(f);
    write_site(&site, "203.0.113.10");
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2000) {
        let now = in_force(&ns);
        assert!(
            now.as_deref() == Some(old.as_str()) || now.as_deref() == Some(new.as_str()),
            "a policy is always in force: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Space returns: the agent records and runs the new revision by itself.
    std::fs::remove_file(&filler).unwrap();
    wait_until(Duration::from_secs(20), "recovered", || {
        in_force(&ns).as_deref() == Some(new.as_str())
            && std::fs::read_to_string(inner.join("current.plan"))
                .map(|s| s.contains("203.0.113.10"))
                .unwrap_or(false)
    });
}

#[test]
fn a_removed_site_directory_is_not_firewall_off_and_its_return_converges() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let (old, new) = reference("rmref", "203.0.113.7", "203.0.113.11");
    let ns = Ns::new("rmsite");
    let tmp = tempfile::tempdir().unwrap();
    let (site, state) = (tmp.path().join("site"), tmp.path().join("state"));
    write_site(&site, "203.0.113.7");
    let _a = agent(&site, &state, &ns, None);
    wait_until(Duration::from_secs(20), "first apply", || {
        in_force(&ns).as_deref() == Some(old.as_str())
    });
    std::fs::remove_dir_all(&site).unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(1500) {
        assert_eq!(in_force(&ns).as_deref(), Some(old.as_str()));
        std::thread::sleep(Duration::from_millis(50));
    }
    write_site(&site, "203.0.113.11");
    wait_until(Duration::from_secs(20), "the returned site applies", || {
        in_force(&ns).as_deref() == Some(new.as_str())
    });
}

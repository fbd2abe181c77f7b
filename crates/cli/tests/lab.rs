//! `rampart lab up|verify|down` on a small site (two nodes in a WireGuard
//! mesh, a road warrior, three guests): built for real, its intents sent as
//! real packets, and nothing left behind. Needs root and wireguard-go.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
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

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab-mesh")
}

fn can_run() -> bool {
    if !common::is_root() {
        eprintln!("skipped: needs root");
        return false;
    }
    if Command::new("wireguard-go")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: needs wireguard-go");
        return false;
    }
    true
}

fn state(name: &str) -> serde_json::Value {
    let p = Path::new("/run/rampart/lab").join(name).join("lab.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

fn pids_in(ns: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A process that is gone (or a zombie nobody reaped yet: it runs nothing).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// Removes the lab even when an assertion fails.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = rampart(&["lab", "down", "--name", &self.0]);
    }
}

#[test]
fn lab_up_verify_down_leaves_nothing() {
    if !can_run() {
        return;
    }
    let name = format!("t{}-one", std::process::id());
    let _guard = Down(name.clone());
    let site = fixture();
    let up = rampart(&["lab", "up", site.to_str().unwrap(), "--name", &name]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    // Progress: a line per step.
    for step in [
        "namespaces: 7 (internet, 2 node(s), 3 guest(s), 1 client(s))",
        "hv1: plan applied",
        "hv2: plan applied",
        "hv1: WireGuard wg0 up",
        "laptop: WireGuard wg0 up",
        "is up in",
    ] {
        assert!(out.contains(step), "no `{step}` in:\n{out}");
    }
    // The command it suggests reaches this lab (issue 14: it dropped `--name`).
    let hint = format!("`rampart lab verify {} --name {name}`", site.display());
    assert!(out.contains(&hint), "no {hint} in:\n{out}");
    let st = state(&name);
    let id = st["id"].as_str().unwrap().to_string();
    let prefix = format!("rl{id}-");
    let made = namespaces_with(&prefix);
    assert_eq!(made.len(), 7, "{made:?}");
    // The lab's key store: 0700 directories, 0600 keys.
    let keys = Path::new("/run/rampart/lab").join(&name).join("keys");
    for owner in ["hv1", "hv2", "laptop"] {
        let d = keys.join(owner);
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
        let k = d.join("cluster.key");
        let mode = std::fs::metadata(&k).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", k.display());
    }
    // wireguard-go runs in the two nodes and the client.
    let pids: Vec<u32> = made.iter().flat_map(|ns| pids_in(ns)).collect();
    assert!(pids.len() >= 3, "wireguard-go processes: {pids:?}");

    // Every intent holds, with real packets.
    let v = rampart(&["lab", "verify", site.to_str().unwrap(), "--name", &name]);
    let out = text(&v);
    assert!(v.status.success(), "{out}");
    assert!(out.contains("6 row(s)"), "{out}");
    assert!(
        out.contains("6 ok, 0 miss(es), 0 simulator/kernel disagreement(s)"),
        "{out}"
    );
    // Side by side: expected, the simulator, the kernel, the deciding line.
    let row = |start: &str| {
        out.lines()
            .find(|l| l.starts_with("ok") && l.contains(start))
            .unwrap_or_else(|| panic!("no ok row `{start}` in:\n{out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        row("laptop over the VPN -> hv1 ssh")
            .ends_with("tcp/22 reachable reachable reachable hv1 cluster.fw:6"),
        "{out}"
    );
    assert!(
        row("internet -> hv1 ssh")
            .ends_with("tcp/22 unreachable unreachable unreachable (drop) hv1 auto:policy_in DROP"),
        "{out}"
    );

    // An intent the site does not keep is a miss, and verify fails.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("lab-mesh");
    std::fs::create_dir_all(wrong.join("firewall")).unwrap();
    for f in ["firewall/cluster.fw", "firewall/100.fw"] {
        std::fs::copy(site.join(f), wrong.join(f)).unwrap();
    }
    let toml = std::fs::read_to_string(site.join("site.toml")).unwrap();
    let flipped = toml.replacen(
        "name = \"vm101 -> vm100 ssh\"\nfrom = \"vm101\"\nto = \"vm100\"\nproto = \"tcp\"\nport = 22\nreachable = false",
        "name = \"vm101 -> vm100 ssh\"\nfrom = \"vm101\"\nto = \"vm100\"\nproto = \"tcp\"\nport = 22\nreachable = true",
        1,
    );
    assert_ne!(flipped, toml);
    std::fs::write(wrong.join("site.toml"), flipped).unwrap();
    let v = rampart(&["lab", "verify", wrong.to_str().unwrap(), "--name", &name]);
    let out = text(&v);
    assert_eq!(v.status.code(), Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("MISS") && l.contains("vm101 -> vm100 ssh")),
        "{out}"
    );

    // Down removes the namespaces, the processes and the state.
    let d = rampart(&["lab", "down", "--name", &name]);
    assert!(d.status.success(), "{}", text(&d));
    assert!(namespaces_with(&prefix).is_empty());
    for p in &pids {
        assert!(gone(*p), "process {p} still runs");
    }
    assert!(!Path::new("/run/rampart/lab").join(&name).exists());
    for ns in &made {
        assert!(!Path::new("/run/rampart-lab").join(ns).exists());
        assert!(
            !Path::new("/run/rampart/netns").join(ns).exists(),
            "/run/rampart/netns/{ns} left behind"
        );
    }
    // And again: nothing to do, still success.
    let d = rampart(&["lab", "down", "--name", &name]);
    assert!(d.status.success());
    assert!(text(&d).contains("nothing to do"), "{}", text(&d));
}

#[test]
fn two_labs_of_one_site_at_once() {
    if !can_run() {
        return;
    }
    let names: Vec<String> = (0..2)
        .map(|i| format!("t{}-two{i}", std::process::id()))
        .collect();
    let _guards: Vec<Down> = names.iter().map(|n| Down(n.clone())).collect();
    let site = fixture();
    let site = site.to_str().unwrap();
    let ups: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| s.spawn(move || rampart(&["lab", "up", site, "--name", n])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for u in &ups {
        assert!(u.status.success(), "{}", text(u));
    }
    let ids: Vec<String> = names
        .iter()
        .map(|n| state(n)["id"].as_str().unwrap().to_string())
        .collect();
    assert_ne!(ids[0], ids[1]);
    // Both answer their intents at the same time: same addresses, same
    // interface names, no interference.
    let vs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = names
            .iter()
            .map(|n| s.spawn(move || rampart(&["lab", "verify", site, "--name", n])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &vs {
        assert!(v.status.success(), "{}", text(v));
        assert!(text(v).contains("6 ok, 0 miss(es)"), "{}", text(v));
    }
    for n in &names {
        assert!(state(n)["complete"].as_bool().unwrap());
    }
    // Taking one down leaves the other whole.
    assert!(rampart(&["lab", "down", "--name", &names[0]])
        .status
        .success());
    assert!(namespaces_with(&format!("rl{}-", ids[0])).is_empty());
    assert_eq!(namespaces_with(&format!("rl{}-", ids[1])).len(), 7);
    let v = rampart(&["lab", "verify", site, "--name", &names[1]]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(rampart(&["lab", "down", "--name", &names[1]])
        .status
        .success());
    assert!(namespaces_with(&format!("rl{}-", ids[1])).is_empty());
}

#[test]
fn a_lab_name_is_taken_once() {
    if !can_run() {
        return;
    }
    let name = format!("t{}-dup", std::process::id());
    let _guard = Down(name.clone());
    let site = fixture();
    let site = site.to_str().unwrap();
    assert!(rampart(&["lab", "up", site, "--name", &name])
        .status
        .success());
    let again = rampart(&["lab", "up", site, "--name", &name]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again).contains("already up"), "{}", text(&again));
}

#[test]
fn verify_without_a_lab_says_so() {
    let o = rampart(&[
        "lab",
        "verify",
        fixture().to_str().unwrap(),
        "--name",
        "no-such-lab-here",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("no lab `no-such-lab-here` is up"),
        "{}",
        text(&o)
    );
    // The suggested `lab up` builds the lab this command looks for.
    assert!(
        text(&o).contains("--name no-such-lab-here` first"),
        "{}",
        text(&o)
    );
}

/// Every lab under labs/ builds, and where it states intents, the kernel
/// agrees with them and with the simulator.
#[test]
fn every_lab_passes_lab_verify() {
    if !can_run() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs");
    let mut labs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    labs.retain(|p| p.join("site.toml").exists());
    labs.sort();
    for lab in &labs {
        let name = format!(
            "t{}-{}",
            std::process::id(),
            lab.file_name().unwrap().to_string_lossy()
        );
        let _guard = Down(name.clone());
        let site = lab.to_str().unwrap();
        let up = rampart(&["lab", "up", site, "--name", &name]);
        assert!(up.status.success(), "{}: {}", lab.display(), text(&up));
        let v = rampart(&["lab", "verify", site, "--name", &name]);
        let out = text(&v);
        assert!(v.status.success(), "{}:\n{out}", lab.display());
        assert!(
            out.contains("0 miss(es), 0 simulator/kernel disagreement(s), 0 error(s)")
                || out.contains("nothing to verify"),
            "{}:\n{out}",
            lab.display()
        );
        eprintln!("{}: {}", lab.display(), out.lines().last().unwrap_or(""));
    }
}

/// A real disagreement survives the isolated re-probe: with hv1's rampart
/// table deleted behind the lab's back, the internet reaches hv1's SSH
/// although the simulator (and the intent) say it must not; verify reports
/// it as a BUG row, sent alone, and exits 1.
#[test]
fn a_kernel_that_differs_from_the_plan_is_a_bug_row() {
    if !can_run() {
        return;
    }
    let name = format!("t{}-bug", std::process::id());
    let _guard = Down(name.clone());
    let site = fixture();
    let up = rampart(&["lab", "up", site.to_str().unwrap(), "--name", &name]);
    assert!(up.status.success(), "{}", text(&up));
    let st = state(&name);
    let ns = st["zones"]["hv1"]["ns"].as_str().unwrap().to_string();
    let del = Command::new("ip")
        .args([
            "netns", "exec", &ns, "nft", "delete", "table", "inet", "rampart",
        ])
        .output()
        .unwrap();
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    let v = rampart(&["lab", "verify", site.to_str().unwrap(), "--name", &name]);
    let out = text(&v);
    assert_eq!(v.status.code(), Some(1), "{out}");
    let row = out
        .lines()
        .find(|l| l.contains("internet -> hv1 ssh"))
        .unwrap_or_else(|| panic!("no row in:\n{out}"));
    assert!(row.starts_with("BUG"), "{row}");
    assert!(row.contains("reachable (sent alone)"), "{row}");
}

#[test]
fn a_lab_with_preshared_keys_puts_each_pair_key_in_both_stores() {
    if !can_run() {
        return;
    }
    let name = format!("t{}-psk", std::process::id());
    let _guard = Down(name.clone());
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("lab-psk");
    std::fs::create_dir_all(site.join("firewall")).unwrap();
    for f in ["firewall/cluster.fw", "firewall/100.fw"] {
        std::fs::copy(fixture().join(f), site.join(f)).unwrap();
    }
    let toml = std::fs::read_to_string(fixture().join("site.toml")).unwrap();
    let with_psk = toml.replacen(
        "topology = \"mesh\"\n",
        "topology = \"mesh\"\npreshared_keys = true\n",
        1,
    );
    assert_ne!(with_psk, toml);
    std::fs::write(site.join("site.toml"), with_psk).unwrap();
    let up = rampart(&["lab", "up", site.to_str().unwrap(), "--name", &name]);
    assert!(up.status.success(), "{}", text(&up));
    // One key for the pair, in both members' stores, 0600; the road
    // warrior's pair has none.
    let keys = Path::new("/run/rampart/lab").join(&name).join("keys");
    let f1 = keys.join("hv1/psk/cluster/hv1--hv2.psk");
    let f2 = keys.join("hv2/psk/cluster/hv1--hv2.psk");
    let k1 = std::fs::read_to_string(&f1).unwrap();
    assert_eq!(k1, std::fs::read_to_string(&f2).unwrap());
    for f in [&f1, &f2] {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    assert!(!keys.join("hv1/psk/cluster/hv1--laptop.psk").exists());
    assert!(!text(&up).contains(k1.trim()), "the key was printed");
    // hv1's interface runs with it (wireguard-go's socket is private to the namespace).
    let ns = state(&name)["zones"]["hv1"]["ns"]
        .as_str()
        .unwrap()
        .to_string();
    let sock = Path::new("/run/rampart/netns").join(&ns).join("wireguard");
    let o = Command::new("ip")
        .args(["netns", "exec", &ns, "sh", "-c"])
        .arg(r#"mount --bind "$0" /var/run/wireguard && exec wg show wg0 preshared-keys"#)
        .arg(&sock)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains(k1.trim()), "hv1 runs without the pair's key");
    assert!(
        shown.contains("(none)"),
        "the road warrior's peer has no key"
    );
    // The mesh handshakes with it: hv2 reaches hv1 over the tunnel.
    let v = rampart(&["lab", "verify", site.to_str().unwrap(), "--name", &name]);
    let out = text(&v);
    assert!(v.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok") && l.contains("hv2 over the mesh -> hv1 ssh")),
        "{out}"
    );
}

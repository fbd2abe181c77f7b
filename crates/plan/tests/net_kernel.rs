//! The network side of apply, with real parts: two node namespaces apply
//! plans built by `rampart_plan::build` from one site (real nftables,
//! wireguard-go: this kernel has no WireGuard module), and a third
//! namespace plays a stranger holding a known key at a non-peer address.
//!
//! Proves: the tunnel passes traffic; the listen-port rule refuses the
//! stranger's handshake; a re-apply changes nothing; changed peers and
//! routes come back with `rollback` and with an unconfirmed `--confirm`;
//! a deleted interface shows in `status` and a re-apply repairs it; no key
//! material in the state directory. Namespaces get unique names and are
//! removed (with their wireguard-go processes) on drop.

use rampart_apply::{apply, rollback, status, ApplyOpts, HostSystem, Scheduler, System};
use rampart_plan::{build, PlanOpts};
use rampart_types::SiteFiles;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static N: AtomicUsize = AtomicUsize::new(0);
const PORT: u16 = 51999;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn have(prog: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {prog}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

struct Ns {
    name: String,
}

impl Ns {
    fn new(tag: &str) -> Ns {
        let name = format!(
            "spine-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }
    fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.exec(args);
        assert!(
            o.status.success(),
            "{args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn ip(&self, args: &[&str]) -> String {
        let mut a = vec!["ip"];
        a.extend_from_slice(args);
        self.ok(&a)
    }
    fn sys(&self) -> HostSystem {
        let mut s = HostSystem::in_netns(&self.name);
        s.scheduler = Scheduler::Detached;
        s
    }
    /// `wg ARGS` with this namespace's control sockets.
    fn wg(&self, args: &[&str]) -> String {
        self.sys()
            .net_run("wg", args, None, true)
            .unwrap_or_else(|e| panic!("wg {args:?} in {}: {e}", self.name))
    }
    /// A TCP connection to `addr:port` completes within 2 s.
    fn connects(&self, addr: &str, port: u16) -> bool {
        self.exec(&[
            "timeout",
            "2",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/{port}"),
        ])
        .status
        .success()
    }
    fn eventually_connects(&self, addr: &str, port: u16) -> bool {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if self.connects(addr, port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
    fn ifindex(&self, dev: &str) -> String {
        self.ip(&["-o", "link", "show", "dev", dev])
            .split(':')
            .next()
            .unwrap()
            .to_string()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        if let Ok(o) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
        let _ = std::fs::remove_dir_all(Path::new(rampart_apply::NETNS_WG_ROOT).join(&self.name));
    }
}

/// A TCP listener on `0.0.0.0:port` inside namespace `ns`: a thread that
/// enters the namespace and accepts (and closes) connections until the
/// test process ends.
fn listen_in(ns: &str, port: u16) {
    let path = format!("/var/run/netns/{ns}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("netns file");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind(("0.0.0.0", port)).expect("bind");
        tx.send(()).unwrap();
        for c in l.incoming() {
            drop(c);
        }
    });
    rx.recv_timeout(Duration::from_secs(5))
        .expect("listener up");
}

fn run(prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `(private, public)` from the real `wg` tool.
fn keypair() -> (String, String) {
    let private = run("wg", &["genkey"]).trim().to_string();
    let mut c = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    c.stdin
        .take()
        .unwrap()
        .write_all(private.as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    (
        private,
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

/// A key store with `net.key` (0700 / 0600).
fn key_dir(root: &Path, node: &str, private: &str) -> PathBuf {
    let d = root.join(format!("keys-{node}"));
    std::fs::DirBuilder::new().mode(0o700).create(&d).unwrap();
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(d.join("t.key"))
        .unwrap()
        .write_all(format!("{private}\n").as_bytes())
        .unwrap();
    d
}

/// Nodes a and b in a mesh; `extra` adds members (a third peer with a
/// routed subnet, to change a's peers and routes).
fn site(pa: &str, pb: &str, extra: &str) -> SiteFiles {
    let toml = format!(
        r#"[[node]]
name = "a"
endpoint = "192.0.2.1"
addresses = ["192.0.2.1/24"]

[[node]]
name = "b"
endpoint = "192.0.2.2"
addresses = ["192.0.2.2/24"]
backend = "iptables"

[[node]]
name = "x"
endpoint = "192.0.2.9"
addresses = ["192.0.2.9/24"]

[[wireguard]]
name = "t"
interface = "wgt0"
pool = ["10.77.0.0/24"]
listen_port = {PORT}
topology = "mesh"

[[wireguard.member]]
name = "a"
public_key = "{pa}"
address = ["10.77.0.1"]

[[wireguard.member]]
name = "b"
public_key = "{pb}"
address = ["10.77.0.2"]
{extra}"#
    );
    SiteFiles::new().with("site.toml", toml).with(
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\nIN ACCEPT -i wgt0 -p tcp -dport 7777\n",
    )
}

const EXTRA_PEER: &str = r#"
[[wireguard.member]]
name = "x"
public_key = "wkgab/3lR1l8Igy/kSc0J9ER5IVR75grSLUgTz5f9E4="
address = ["10.77.0.9"]
routes = ["10.88.0.0/24"]
"#;

fn plan_of(files: &SiteFiles, node: &str, keys: &Path) -> rampart_apply::Plan {
    let opts = PlanOpts {
        key_dir: keys.to_string_lossy().into_owned(),
        force: true,
        ..PlanOpts::default()
    };
    build(files, node, &opts).unwrap().plan
}

fn peers(ns: &Ns) -> usize {
    ns.wg(&["show", "wgt0", "peers"]).lines().count()
}

fn has_route(ns: &Ns, dest: &str) -> bool {
    ns.ip(&["route", "show", dest]).contains("wgt0")
}

#[test]
fn wireguard_plans_in_two_namespaces() {
    if !is_root() || !have("wireguard-go") || !have("wg") {
        eprintln!("skipped: needs root, wireguard-go and wg");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (Ns::new("a"), Ns::new("b"), Ns::new("c"));
    // a <-> b on 192.0.2.0/24; a <-> c (the stranger) on 198.51.100.0/24.
    let (ab, ba) = (
        format!("sab{}", N.load(Ordering::SeqCst)),
        format!("sba{}", N.load(Ordering::SeqCst)),
    );
    run(
        "ip",
        &[
            "link", "add", &ab, "netns", &a.name, "type", "veth", "peer", "name", &ba, "netns",
            &b.name,
        ],
    );
    let (ac, ca) = (
        format!("sac{}", N.load(Ordering::SeqCst)),
        format!("sca{}", N.load(Ordering::SeqCst)),
    );
    run(
        "ip",
        &[
            "link", "add", &ac, "netns", &a.name, "type", "veth", "peer", "name", &ca, "netns",
            &c.name,
        ],
    );
    for (ns, dev, addr) in [
        (&a, &ab, "192.0.2.1/24"),
        (&b, &ba, "192.0.2.2/24"),
        (&a, &ac, "198.51.100.1/24"),
        (&c, &ca, "198.51.100.2/24"),
    ] {
        ns.ip(&["addr", "add", addr, "dev", dev]);
        ns.ip(&["link", "set", dev, "up"]);
    }
    let (ka, pa) = keypair();
    let (kb, pb) = keypair();
    let (dir_a, dir_b) = (key_dir(tmp.path(), "a", &ka), key_dir(tmp.path(), "b", &kb));
    let files = site(&pa, &pb, "");
    let (plan_a, plan_b) = (plan_of(&files, "a", &dir_a), plan_of(&files, "b", &dir_b));
    // What apply loads is what compile prints: the listen port, for b only.
    assert!(
        plan_a
            .ruleset
            .contains(&format!("ip saddr 192.0.2.2 udp dport {PORT} return")),
        "{}",
        plan_a.ruleset
    );
    // b runs iptables: the same listen-port rule, as iptables-restore text.
    assert_eq!(plan_b.backend, rampart_apply::Backend::Iptables);
    assert!(
        plan_b.ruleset.contains(&format!(
            "-A RAMPART-HOST-IN -s 192.0.2.1/32 -p udp -m udp --dport {PORT}"
        )),
        "{}",
        plan_b.ruleset
    );
    let (st_a, st_b) = (tmp.path().join("state-a"), tmp.path().join("state-b"));
    let out_a = apply(&a.sys(), &plan_a, &ApplyOpts::new(&st_a)).unwrap();
    assert!(
        out_a.network.iter().any(|l| l.contains("wgt0: created")),
        "{:?}",
        out_a.network
    );
    apply(&b.sys(), &plan_b, &ApplyOpts::new(&st_b)).unwrap();
    listen_in(&a.name, 7777);
    listen_in(&b.name, 7777);

    // 1. The tunnel passes traffic.
    assert!(
        b.eventually_connects("10.77.0.1", 7777),
        "b cannot reach a over the tunnel"
    );
    assert!(a
        .ip(&["addr", "show", "dev", "wgt0"])
        .contains("10.77.0.1/24"));

    // 2. A stranger with b's key at a non-peer address: the listen-port
    // rule drops its handshake, so nothing passes.
    c.sys()
        .net_run(
            "env",
            &[
                "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                "wireguard-go",
                "wgt0",
            ],
            None,
            true,
        )
        .unwrap();
    let t = Instant::now();
    while c
        .sys()
        .net_run("wg", &["show", "wgt0"], None, true)
        .is_err()
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "stranger's wireguard-go"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wg(&[
        "set",
        "wgt0",
        "private-key",
        dir_b.join("t.key").to_str().unwrap(),
        "peer",
        &pa,
        "endpoint",
        &format!("198.51.100.1:{PORT}"),
        "allowed-ips",
        "10.77.0.0/24",
    ]);
    c.ip(&["addr", "add", "10.77.0.2/24", "dev", "wgt0"]);
    c.ip(&["link", "set", "wgt0", "up"]);
    assert!(!c.connects("10.77.0.1", 7777), "the stranger got through");
    assert!(!c.connects("10.77.0.1", 7777), "the stranger got through");
    let hs = c.wg(&["show", "wgt0", "latest-handshakes"]);
    assert!(hs.trim().ends_with("\t0"), "stranger shook hands: {hs}");
    // And the real peer still does.
    assert!(b.eventually_connects("10.77.0.1", 7777));

    // 3. Re-applying the same plan changes nothing.
    let idx = a.ifindex("wgt0");
    let before = a.wg(&["show", "wgt0", "dump"]);
    let again = apply(&a.sys(), &plan_a, &ApplyOpts::new(&st_a)).unwrap();
    assert!(again.network.is_empty(), "{:?}", again.network);
    assert_eq!(a.ifindex("wgt0"), idx);
    let after = a.wg(&["show", "wgt0", "dump"]);
    assert_eq!(before.lines().next(), after.lines().next());
    assert!(status(&a.sys(), &st_a).unwrap().network.is_empty());

    // 4. Change peers (a third member with a routed subnet) under a long
    // --confirm, then roll back to the last good plan.
    let files2 = site(&pa, &pb, EXTRA_PEER);
    let plan_a2 = plan_of(&files2, "a", &dir_a);
    let mut long = ApplyOpts::new(&st_a);
    long.confirm = Some(600);
    let ch = apply(&a.sys(), &plan_a2, &long).unwrap();
    assert!(
        ch.network
            .iter()
            .any(|l| l.contains("WireGuard configured")),
        "{:?}",
        ch.network
    );
    assert_eq!(peers(&a), 2);
    assert!(has_route(&a, "10.88.0.0/24"));
    let rb = rollback(&a.sys(), &ApplyOpts::new(&st_a)).unwrap();
    assert_eq!(peers(&a), 1, "{:?}", rb.network);
    assert!(!has_route(&a, "10.88.0.0/24"));
    assert_eq!(a.ifindex("wgt0"), idx, "rollback recreated the interface");
    assert!(b.eventually_connects("10.77.0.1", 7777));

    // 5. --confirm without a confirm: the revert restores the network too.
    let mut opts = ApplyOpts::new(&st_a);
    opts.confirm = Some(2);
    apply(&a.sys(), &plan_a2, &opts).unwrap();
    assert_eq!(peers(&a), 2);
    let t = Instant::now();
    while peers(&a) != 1 || has_route(&a, "10.88.0.0/24") {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the revert did not restore the network"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(b.eventually_connects("10.77.0.1", 7777));

    // 6. Drift: the interface deleted by hand shows in status; re-apply
    // repairs it.
    b.ip(&["link", "del", "dev", "wgt0"]);
    let st = status(&b.sys(), &st_b).unwrap();
    assert!(
        st.network
            .iter()
            .any(|l| l.contains("wgt0: interface missing")),
        "{:?}",
        st.network
    );
    let fix = apply(&b.sys(), &plan_b, &ApplyOpts::new(&st_b)).unwrap();
    assert!(
        fix.network.iter().any(|l| l.contains("wgt0: created")),
        "{:?}",
        fix.network
    );
    assert!(b.eventually_connects("10.77.0.1", 7777));
    assert!(status(&b.sys(), &st_b).unwrap().network.is_empty());

    // 7. No key material in the state directories.
    for dir in [&st_a, &st_b] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if let Ok(text) = std::fs::read_to_string(&p) {
                for k in [&ka, &kb] {
                    assert!(!text.contains(k.as_str()), "private key in {}", p.display());
                }
            }
        }
    }
}

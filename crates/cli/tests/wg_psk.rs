//! Preshared keys end to end, with real tunnels: `rampart wg enroll` on
//! two nodes, `rampart wg psk` puts one key per pair into both key stores,
//! `rampart apply` (in two network namespaces joined by a veth, wireguard-go)
//! uses them; the handshake works with the same key on both sides and
//! fails when one side's key differs. Needs root, wireguard-go and wg.

mod common;
use common::{is_root, Ns};

use std::net::UdpSocket;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env_remove("SSH_CONNECTION")
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

fn in_ns(ns: &Ns, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .args(args)
        .output()
        .unwrap()
}

/// `wg ARGS` in the namespace, with its userspace WireGuard control
/// sockets where rampart keeps them (private to the namespace).
fn wg(ns: &Ns, args: &[&str]) -> String {
    let dir = Path::new("/run/rampart/netns")
        .join(&ns.0)
        .join("wireguard");
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, "sh", "-c"])
        .arg(r#"mkdir -p "$0" /var/run/wireguard && mount --bind "$0" /var/run/wireguard && exec "$@""#)
        .arg(dir)
        .arg("wg")
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "wg {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
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

fn can_run() -> bool {
    let have_wg = Command::new("sh")
        .args(["-c", "command -v wireguard-go && command -v wg"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root() || !have_wg {
        eprintln!("skipped: needs root, wireguard-go and wg");
        return false;
    }
    true
}

const SITE: &str = r#"[[node]]
name = "hv1"
endpoint = "192.0.2.10"
bridges = { vmbr0 = ["192.0.2.10/24"] }

[[node]]
name = "hv2"
endpoint = "192.0.2.20"
bridges = { vmbr0 = ["192.0.2.20/24"] }

[[wireguard]]
name = "ops"
interface = "wgp0"
pool = ["10.67.0.0/24"]
listen_port = 51967
topology = "mesh"
preshared_keys = true

[[wireguard.member]]
name = "hv1"
public_key = "SA3KjzlBe4Eie688sw8DwPIXZUMt4Q/pnGcSTLftmX0="
address = ["10.67.0.1"]

[[wireguard.member]]
name = "hv2"
public_key = "y0u4RJIqkgxzXLc4fmHwHW+M6y1PgDUhvkEnEnBd/1U="
address = ["10.67.0.2"]
"#;

fn site() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::write(p.join("site.toml"), SITE).unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n\n[RULES]\nIN ACCEPT -p udp -dport 7777\n",
    )
    .unwrap();
    for n in ["hv1", "hv2"] {
        std::fs::create_dir_all(p.join("nodes").join(n)).unwrap();
        std::fs::write(
            p.join("nodes").join(n).join("host.fw"),
            "[OPTIONS]\nenable: 1\n",
        )
        .unwrap();
    }
    d
}

/// Run `f` on a thread that has entered namespace `ns`.
fn on_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns file");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// A UDP echo on port 7777 in `ns` until the flag is set.
fn echo(ns: &Ns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    on_ns(&ns.0, move || {
        let s = UdpSocket::bind("0.0.0.0:7777").expect("bind echo");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    })
}

/// A datagram through the tunnel answered within `secs` seconds of trying.
fn answered_within(from: &Ns, to: &str, secs: u64) -> bool {
    let to: std::net::SocketAddr = format!("{to}:7777").parse().unwrap();
    on_ns(&from.0, move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("bind client");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let t = Instant::now();
        let mut buf = [0u8; 64];
        while t.elapsed() < Duration::from_secs(secs) {
            // Refused while the tunnel has no handshake (no route answer): retry.
            let _ = s.send_to(b"psk?", to);
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                if &buf[..n] == b"psk?" {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    })
    .join()
    .unwrap()
}

fn psk_file(store: &Path) -> std::path::PathBuf {
    store.join("psk/ops/hv1--hv2.psk")
}

#[test]
fn preshared_keys_from_wg_psk_to_a_real_handshake() {
    if !can_run() {
        return;
    }
    let (a, b) = (Ns::new("pska"), Ns::new("pskb"));
    let (_ka, _kb) = (KillIn(a.0.clone()), KillIn(b.0.clone()));
    // A veth between the two namespaces (nothing in the root namespace).
    let st = Command::new("ip")
        .args([
            "-n", &a.0, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.0,
        ])
        .status()
        .unwrap();
    assert!(st.success());
    for (ns, dev, addr) in [(&a, "va", "192.0.2.10/24"), (&b, "vb", "192.0.2.20/24")] {
        assert!(in_ns(ns, &["ip", "addr", "add", addr, "dev", dev])
            .status
            .success());
        assert!(in_ns(ns, &["ip", "link", "set", dev, "up"])
            .status
            .success());
        assert!(in_ns(ns, &["ip", "link", "set", "lo", "up"])
            .status
            .success());
    }
    let stop = Arc::new(AtomicBool::new(false));
    let server = echo(&b, stop.clone());
    let s = site();
    let sp = s.path().to_str().unwrap();
    let (keys_a, keys_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Stores rampart creates itself (0700): the temporary directories may be 0755.
    let (store_a, store_b) = (keys_a.path().join("wg"), keys_b.path().join("wg"));
    let (ka, kb) = (store_a.to_str().unwrap(), store_b.to_str().unwrap());
    for (node, keys) in [("hv1", ka), ("hv2", kb)] {
        let o = rampart(&["wg", "enroll", sp, "--node", node, "--keys", keys]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let apply = |node: &str, keys: &str, state: &Path, ns: &Ns| {
        rampart(&[
            "apply",
            sp,
            "--node",
            node,
            "--keys",
            keys,
            "--state-dir",
            state.to_str().unwrap(),
            "--netns",
            &ns.0,
        ])
    };

    // Before `wg psk`: apply names the missing file and changes nothing.
    let o = apply("hv2", kb, state_b.path(), &b);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(&psk_file(&store_b).display().to_string()), "{t}");
    assert!(
        t.contains("is missing") && t.contains("rampart wg psk"),
        "{t}"
    );
    assert!(
        !in_ns(&b, &["nft", "list", "tables"])
            .stdout
            .windows(7)
            .any(|w| w == b"rampart"),
        "no ruleset was loaded"
    );

    // One command, both stores: the same key, 0600, never printed.
    let o = rampart(&[
        "wg",
        "psk",
        sp,
        "--store",
        &format!("hv1={ka}"),
        "--store",
        &format!("hv2={kb}"),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("network `ops`: pair (hv1, hv2): created"), "{t}");
    let (fa, fb) = (psk_file(&store_a), psk_file(&store_b));
    let psk = std::fs::read_to_string(&fa).unwrap();
    assert_eq!(psk, std::fs::read_to_string(&fb).unwrap());
    for f in [&fa, &fb] {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    assert!(!t.contains(psk.trim()), "the key was printed: {t}");
    // Again: nothing changes.
    let o = rampart(&[
        "wg",
        "psk",
        sp,
        "--store",
        &format!("hv1={ka}"),
        "--store",
        &format!("hv2={kb}"),
    ]);
    assert!(text(&o).contains("already in both stores"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&fb).unwrap(), psk);

    for (node, keys, state, ns) in [
        ("hv1", ka, state_a.path(), &a),
        ("hv2", kb, state_b.path(), &b),
    ] {
        let o = apply(node, keys, state, ns);
        assert!(o.status.success(), "{}", text(&o));
        assert!(!text(&o).contains(psk.trim()));
    }
    // The interface runs with the pair's key, and the tunnel carries packets.
    let shown = wg(&a, &["show", "wgp0", "preshared-keys"]);
    assert!(shown.contains(psk.trim()), "wg shows another preshared key");
    assert!(
        answered_within(&a, "10.67.0.2", 10),
        "no handshake with the same preshared key"
    );

    // One side's key differs: start both interfaces afresh (no session to
    // keep), and the handshake fails.
    for ns in [&a, &b] {
        assert!(in_ns(ns, &["ip", "link", "del", "wgp0"]).status.success());
    }
    let other = Command::new("wg").arg("genpsk").output().unwrap().stdout;
    std::fs::write(&fb, &other).unwrap();
    std::fs::set_permissions(&fb, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (node, keys, state, ns) in [
        ("hv1", ka, state_a.path(), &a),
        ("hv2", kb, state_b.path(), &b),
    ] {
        let o = apply(node, keys, state, ns);
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(
        !answered_within(&a, "10.67.0.2", 7),
        "a handshake with different preshared keys"
    );
    let hs = wg(&a, &["show", "wgp0", "latest-handshakes"]);
    assert!(hs.trim_end().ends_with("\t0"), "{hs}");

    // `wg psk` sees the two stores disagree and says so; --replace renews
    // both, and after applying both the tunnel is back.
    let o = rampart(&[
        "wg",
        "psk",
        sp,
        "--store",
        &format!("hv1={ka}"),
        "--store",
        &format!("hv2={kb}"),
    ]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("hold different keys"), "{}", text(&o));
    let o = rampart(&[
        "wg",
        "psk",
        sp,
        "--store",
        &format!("hv1={ka}"),
        "--store",
        &format!("hv2={kb}"),
        "--replace",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&fa).unwrap(),
        std::fs::read_to_string(&fb).unwrap()
    );
    for (node, keys, state, ns) in [
        ("hv1", ka, state_a.path(), &a),
        ("hv2", kb, state_b.path(), &b),
    ] {
        let o = apply(node, keys, state, ns);
        assert!(o.status.success(), "{}", text(&o));
    }
    assert!(
        answered_within(&a, "10.67.0.2", 15),
        "no handshake after --replace"
    );
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

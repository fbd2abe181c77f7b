//! The two hardening profiles with real tunnels (issue 4, "Proven with real
//! tunnels" 2 and 3): the labs of documents 000 and 004 built by `rampart
//! lab up` (namespaces, wireguard-go, every node's compiled plan applied by
//! rampart_apply), then real TCP connections that must and must not get
//! through. Needs root and wireguard-go.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// A lab that is taken down when dropped.
struct Lab {
    name: String,
    state: serde_json::Value,
}

impl Lab {
    fn up(site: &Path, tag: &str) -> Lab {
        let name = format!("profiles-{tag}-{}", std::process::id());
        let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["lab", "up"])
            .arg(site)
            .args(["--name", &name])
            .output()
            .unwrap();
        let mut lab = Lab {
            name: name.clone(),
            state: serde_json::Value::Null,
        };
        assert!(
            out.status.success(),
            "lab up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let p = Path::new("/run/rampart/lab").join(&name).join("lab.json");
        lab.state = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        lab
    }
    fn ns(&self, zone: &str) -> String {
        self.state["zones"][zone]["ns"]
            .as_str()
            .unwrap_or_else(|| panic!("no zone {zone}"))
            .to_string()
    }
    fn ip(&self, zone: &str, args: &[&str]) {
        let st = Command::new("ip")
            .args(["netns", "exec", &self.ns(zone), "ip"])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?} in {zone}");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["lab", "down", "--name", &self.name])
            .output();
    }
}

fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).expect("netns file");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// TCP servers in `ns` on `ports` that answer every connection with the
/// address they see it from; stopped when dropped.
struct Servers {
    stop: Arc<AtomicBool>,
}

impl Servers {
    fn start(ns: &str, ports: &[u16]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        for &port in ports {
            let stop = stop.clone();
            let ready = in_ns(ns, move || {
                let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
                l.set_nonblocking(true).unwrap();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((mut c, a)) => {
                                let _ = c.write_all(a.ip().to_string().as_bytes());
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                });
            });
            ready.join().unwrap();
        }
        Servers { stop }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Connect from `ns` to `dst`: the address the server saw, or `None`.
fn connect(ns: &str, dst: &str, port: u16) -> Option<String> {
    let dst: SocketAddr = format!("{dst}:{port}").parse().unwrap();
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&dst, Duration::from_millis(1500)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(buf)
    })
    .join()
    .unwrap()
}

fn lab_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../labs")
        .join(name)
}

/// Document 000: the admin reaches the hypervisor's SSH and HTTPS only
/// through the tunnel; not without it, not from anywhere else; OPNsense's
/// WAN admits only the WireGuard port.
#[test]
fn doc000_management_only_while_the_tunnel_is_up() {
    if !can_run() {
        return;
    }
    // The lab applies xcp1 with the nftables rendering of the lockdown (the
    // iptables rendering is checked against the kernel below).
    let dir = tempfile::tempdir().unwrap();
    for f in ["site.toml", "firewall/cluster.fw", "firewall/100.fw"] {
        let to = dir.path().join(f);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let text = std::fs::read_to_string(lab_dir("xcpng-opnsense-wireguard").join(f)).unwrap();
        std::fs::write(
            to,
            text.replace("backend = \"iptables\"", "backend = \"nftables\""),
        )
        .unwrap();
    }
    let lab = Lab::up(dir.path(), "000");
    let _hv = Servers::start(&lab.ns("xcp1"), &[22, 443, 8080]);
    let _fw = Servers::start(&lab.ns("vm100"), &[22, 443]);
    let laptop = lab.ns("admin-laptop");
    let mgmt = "198.51.100.10";

    // Tunnel up: SSH and HTTPS answer, and see the laptop's VPN address.
    for port in [22, 443] {
        assert_eq!(
            connect(&laptop, mgmt, port).as_deref(),
            Some("10.8.0.2"),
            "tcp/{port} through the tunnel"
        );
    }
    // Not a management service: refused even through the tunnel.
    assert_eq!(connect(&laptop, mgmt, 8080), None);
    // From the internet and from the VM behind the firewall: nothing.
    for port in [22, 443] {
        assert_eq!(
            connect(&lab.ns("internet"), mgmt, port),
            None,
            "internet tcp/{port}"
        );
        assert_eq!(
            connect(&lab.ns("vm101"), mgmt, port),
            None,
            "vm101 tcp/{port}"
        );
    }
    // OPNsense's WAN: the tunnel came up through udp/51820; nothing else.
    for port in [22, 443] {
        assert_eq!(
            connect(&lab.ns("internet"), "198.51.100.11", port),
            None,
            "OPNsense WAN tcp/{port}"
        );
    }
    // Tunnel down: the laptop's packets go out its own uplink, and fail.
    lab.ip("admin-laptop", &["link", "set", "wg0", "down"]);
    for port in [22, 443] {
        assert_eq!(
            connect(&laptop, mgmt, port),
            None,
            "tcp/{port} without the tunnel"
        );
    }
    // And up again: back.
    lab.ip("admin-laptop", &["link", "set", "wg0", "up"]);
    lab.ip(
        "admin-laptop",
        &["route", "replace", "198.51.100.10/32", "dev", "wg0"],
    );
    let mut back = None;
    for _ in 0..5 {
        back = connect(&laptop, mgmt, 22);
        if back.is_some() {
            break;
        }
    }
    assert_eq!(back.as_deref(), Some("10.8.0.2"));
}

/// The iptables rendering of document 000's lockdown (what an XCP-ng host
/// keeps in /etc/sysconfig/iptables) loads into a real kernel.
#[test]
fn doc000_iptables_file_loads() {
    if !common::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["compile"])
        .arg(lab_dir("xcpng-opnsense-wireguard"))
        .args(["--all", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |f: &str| std::fs::read_to_string(dir.path().join("xcp1").join(f)).unwrap();
    let v4 = read("iptables.rules");
    let v6 = read("ip6tables.rules");
    let sets = read("ipset.conf");
    assert!(v4.contains("-j RAMPART-LOCKDOWN"), "{v4}");
    let ns = common::Ns::new("profiles-ipt");
    let run = |cmd: &[&str], input: &str| {
        let mut c = Command::new("ip")
            .args(["netns", "exec", &ns.0])
            .args(cmd)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&["ipset", "restore"], &sets);
    run(&["iptables-restore"], &v4);
    run(&["ip6tables-restore"], &v6);
    // Loaded: the lockdown chain holds the VPN path of site.toml:76.
    let o = Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables", "-S", "RAMPART-LOCKDOWN"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(listed.contains("-s 10.8.0.0/24 -i xenbr0"), "{listed}");
}

/// Document 004: the guest reaches the internet only through the gateway
/// (which masquerades it); neither the guest nor the tunnel peer reaches
/// the hypervisor.
#[test]
fn doc004_guest_egress_only_through_the_gateway() {
    if !can_run() {
        return;
    }
    let lab = Lab::up(&lab_dir("kvm-transparent-egress"), "004");
    let inet = lab.ns("internet");
    let _net = Servers::start(&inet, &[80]);
    let _hv = Servers::start(&lab.ns("kvm1"), &[22, 8080]);
    let guest = lab.ns("vm139");
    let internet_addr = "203.0.113.254";

    // The internet sees the gateway's address, not the guest's.
    let mut seen = None;
    for _ in 0..5 {
        seen = connect(&guest, internet_addr, 80);
        if seen.is_some() {
            break;
        }
    }
    assert_eq!(seen.as_deref(), Some("203.0.113.50"));
    // The guest cannot reach the hypervisor, on any of its addresses.
    for a in ["192.168.100.1", "192.0.2.20", "10.0.3.2"] {
        for port in [22, 8080] {
            assert_eq!(connect(&guest, a, port), None, "guest -> {a}:{port}");
        }
    }
    // Nor can the tunnel's other end.
    for port in [22, 8080] {
        assert_eq!(
            connect(&lab.ns("cloudgw"), "10.0.3.2", port),
            None,
            "tunnel -> hv:{port}"
        );
    }
    // The home LAN still manages the host (the listener is there).
    assert_eq!(
        connect(&inet, "192.0.2.20", 22).as_deref(),
        Some("192.0.2.254")
    );
    // Only through the gateway: with the tunnel down nothing leaks out the
    // host's own uplink.
    lab.ip("kvm1", &["link", "set", "wg1", "down"]);
    assert_eq!(connect(&guest, internet_addr, 80), None);
}

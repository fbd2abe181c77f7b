//! XCP-ng's file (issue 14, item 6): `rampart apply` on an iptables-backend
//! node whose site names `iptables_file`, `ip6tables_file` and `ipset_file`
//! writes them (0600, the previous file kept as a backup, the recovery
//! commands printed); the files loaded the way an XCP-ng host boots
//! (`ipset restore`, then `iptables-restore`) into a fresh namespace give
//! the same verdicts to real TCP connections; a failed apply leaves them
//! untouched; the agent writes them too. Needs root; every namespace is
//! the test's own.

mod common;
use common::{is_root, Ns};

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

fn sh_in(ns: &Ns, script: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &ns.0, "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Run `f` on a thread that has entered namespace `ns`.
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

/// TCP servers in `ns` on `ports`, answering every connection with "hi";
/// stopped when dropped.
struct Servers(Arc<AtomicBool>);

impl Servers {
    fn start(ns: &str, ports: &[u16]) -> Servers {
        let stop = Arc::new(AtomicBool::new(false));
        for &port in ports {
            let stop = stop.clone();
            in_ns(ns, move || {
                let l = TcpListener::bind(("0.0.0.0", port)).expect("bind");
                l.set_nonblocking(true).unwrap();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((mut c, _)) => {
                                let _ = c.write_all(b"hi");
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                });
            })
            .join()
            .unwrap();
        }
        Servers(stop)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether a TCP connection from `ns` to `dst:port` gets the server's answer.
fn connects(ns: &Ns, dst: &str, port: u16) -> bool {
    let dst: SocketAddr = format!("{dst}:{port}").parse().unwrap();
    in_ns(&ns.0, move || {
        let Ok(mut s) = TcpStream::connect_timeout(&dst, Duration::from_millis(800)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).is_ok() && buf == "hi"
    })
    .join()
    .unwrap()
}

/// A node and two clients: `mgmt` (198.51.100.5, in the management set)
/// and `stranger` (203.0.113.66), each on its own veth to the node.
struct Net {
    node: Ns,
    mgmt: Ns,
    stranger: Ns,
    _servers: Servers,
}

impl Net {
    fn new(tag: &str) -> Net {
        let node = Ns::new(&format!("{tag}n"));
        let mgmt = Ns::new(&format!("{tag}m"));
        let stranger = Ns::new(&format!("{tag}s"));
        for (dev, peer, mine, theirs) in [
            ("vm", &mgmt, "198.51.100.1/24", "198.51.100.5/24"),
            ("vs", &stranger, "203.0.113.1/24", "203.0.113.66/24"),
        ] {
            let o = sh_in(
                &node,
                &format!(
                    "ip link add {dev} type veth peer name eth0 netns {p} && ip addr add {mine} dev {dev} \
                     && ip link set {dev} up && ip link set lo up",
                    p = peer.0
                ),
            );
            assert!(o.status.success(), "{}", text(&o));
            let o = sh_in(
                peer,
                &format!(
                    "ip addr add {theirs} dev eth0 && ip link set eth0 up && ip link set lo up"
                ),
            );
            assert!(o.status.success(), "{}", text(&o));
        }
        let servers = Servers::start(&node.0, &[22, 80, 8080]);
        Net {
            node,
            mgmt,
            stranger,
            _servers: servers,
        }
    }

    /// (mgmt -> ssh, stranger -> ssh, stranger -> http, mgmt -> 8080)
    fn verdicts(&self) -> [bool; 4] {
        [
            connects(&self.mgmt, "198.51.100.1", 22),
            connects(&self.stranger, "203.0.113.1", 22),
            connects(&self.stranger, "203.0.113.1", 80),
            connects(&self.mgmt, "198.51.100.1", 8080),
        ]
    }
}

fn site(files: &Path) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::create_dir_all(p.join("nodes/xcp1")).unwrap();
    std::fs::write(
        p.join("site.toml"),
        format!(
            "[[node]]\nname = \"xcp1\"\nplatform = \"xcpng\"\nbridges = {{ xenbr0 = [\"192.0.2.10/24\"] }}\n\
             ipset_file = \"{f}/ipset\"\niptables_file = \"{f}/iptables\"\nip6tables_file = \"{f}/ip6tables\"\n",
            f = files.display()
        ),
    )
    .unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n\n[RULES]\nIN HTTP(ACCEPT)\n",
    )
    .unwrap();
    std::fs::write(p.join("nodes/xcp1/host.fw"), "[OPTIONS]\nenable: 1\n").unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn backups(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".rampart-"))
        .collect();
    v.sort();
    v
}

const EXPECTED: [bool; 4] = [true, false, true, false];

#[test]
fn apply_writes_xcpng_files_that_boot_into_the_same_verdicts() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let sysconfig = files.path().join("sysconfig");
    std::fs::create_dir(&sysconfig).unwrap();
    // What the host had: an open policy, as a fresh install keeps it.
    let old = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    let v4 = sysconfig.join("iptables");
    std::fs::write(&v4, old).unwrap();
    std::fs::set_permissions(&v4, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = site(&sysconfig);
    let sp = s.path().to_str().unwrap();
    let state = tempfile::tempdir().unwrap();
    let st = state.path().to_str().unwrap();

    let net = Net::new("xcf");
    assert_eq!(net.verdicts(), [true; 4], "open before the apply");
    let o = rampart(&[
        "apply",
        sp,
        "--node",
        "xcp1",
        "--state-dir",
        st,
        "--netns",
        &net.node.0,
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(net.verdicts(), EXPECTED, "the applied ruleset");

    // The three files, 0600; the old iptables file kept; the recovery printed.
    for f in ["ipset", "iptables", "ip6tables"] {
        let p = sysconfig.join(f);
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        assert!(t.contains(&format!("saved: {}", p.display())), "{t}");
    }
    let saved = backups(&sysconfig);
    assert_eq!(saved.len(), 1, "{saved:?}");
    let backup = sysconfig.join(&saved[0]);
    assert!(saved[0].starts_with("iptables.rampart-"), "{saved:?}");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);
    assert!(
        t.contains(&format!("iptables-restore < {}", backup.display())),
        "{t}"
    );
    // Sets first, as the boot loads them.
    let (p_set, p_v4) = (
        t.find(&format!("saved: {}/ipset", sysconfig.display()))
            .unwrap(),
        t.find(&format!("saved: {}/iptables", sysconfig.display()))
            .unwrap(),
    );
    assert!(p_set < p_v4, "{t}");
    let v4_text = std::fs::read_to_string(&v4).unwrap();
    assert!(
        v4_text.contains("--match-set"),
        "the rules use the ipsets: {v4_text}"
    );

    // A fresh host boots from the files: ipset restore, then
    // iptables-restore and ip6tables-restore. Same verdicts.
    let fresh = Net::new("xcb");
    assert_eq!(fresh.verdicts(), [true; 4]);
    let boot = format!(
        "ipset restore < {d}/ipset && iptables-restore < {d}/iptables && ip6tables-restore < {d}/ip6tables",
        d = sysconfig.display()
    );
    let o = sh_in(&fresh.node, &boot);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fresh.verdicts(), EXPECTED, "booted from the saved files");
    drop(fresh);

    // Applying the same plan again writes nothing and keeps no new backup.
    let o = rampart(&[
        "apply",
        sp,
        "--node",
        "xcp1",
        "--state-dir",
        st,
        "--netns",
        &net.node.0,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(backups(&sysconfig).len(), 1);

    // A failed apply (a WireGuard key the node's store does not have: refused
    // before the switch) leaves the files and the kernel as they were.
    let before: Vec<Vec<u8>> = ["ipset", "iptables", "ip6tables"]
        .iter()
        .map(|f| std::fs::read(sysconfig.join(f)).unwrap())
        .collect();
    let mut toml = std::fs::read_to_string(s.path().join("site.toml")).unwrap();
    toml = toml.replace(
        "platform = \"xcpng\"\n",
        "platform = \"xcpng\"\nendpoint = \"198.51.100.1\"\n",
    );
    toml.push_str(
        "\n[[node]]\nname = \"xcp2\"\nplatform = \"xcpng\"\nendpoint = \"203.0.113.1\"\n\n\
         [[wireguard]]\nname = \"ops\"\ninterface = \"wgx0\"\npool = [\"10.68.0.0/24\"]\nlisten_port = 51968\n\n\
         [[wireguard.member]]\nname = \"xcp1\"\npublic_key = \"SA3KjzlBe4Eie688sw8DwPIXZUMt4Q/pnGcSTLftmX0=\"\n\n\
         [[wireguard.member]]\nname = \"xcp2\"\npublic_key = \"y0u4RJIqkgxzXLc4fmHwHW+M6y1PgDUhvkEnEnBd/1U=\"\n",
    );
    std::fs::write(s.path().join("site.toml"), toml).unwrap();
    std::fs::write(
        s.path().join("nodes/xcp1/host.fw"),
        "[OPTIONS]\nenable: 1\n\n[RULES]\nIN SSH(ACCEPT)\n",
    )
    .unwrap();
    let nokeys = files.path().join("nokeys");
    let o = rampart(&[
        "apply",
        sp,
        "--node",
        "xcp1",
        "--state-dir",
        st,
        "--netns",
        &net.node.0,
        "--keys",
        nokeys.to_str().unwrap(),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("nothing was changed") && t.contains("private key"),
        "{t}"
    );
    let after: Vec<Vec<u8>> = ["ipset", "iptables", "ip6tables"]
        .iter()
        .map(|f| std::fs::read(sysconfig.join(f)).unwrap())
        .collect();
    assert_eq!(after, before, "a failed apply changed a saved file");
    assert_eq!(backups(&sysconfig).len(), 1, "{:?}", backups(&sysconfig));
    assert_eq!(
        net.verdicts(),
        EXPECTED,
        "a failed apply changed the kernel"
    );
}

#[test]
fn the_agent_writes_the_files_when_it_applies() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let s = site(files.path());
    let state = tempfile::tempdir().unwrap();
    let ns = Ns::new("xca");
    let o = rampart(&[
        "agent",
        "--site",
        s.path().to_str().unwrap(),
        "--node",
        "xcp1",
        "--once",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--netns",
        &ns.0,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["ipset", "iptables", "ip6tables"] {
        let p = files.path().join(f);
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    // What it wrote is what runs.
    let saved = Command::new("ip")
        .args(["netns", "exec", &ns.0, "iptables-save"])
        .output()
        .unwrap();
    let running = String::from_utf8_lossy(&saved.stdout);
    let file = std::fs::read_to_string(files.path().join("iptables")).unwrap();
    for chain in file.lines().filter(|l| l.starts_with(':')) {
        let name = chain.split_whitespace().next().unwrap();
        assert!(running.contains(name), "{name} not running:\n{running}");
    }
}

#[test]
fn file_options_need_an_iptables_node_and_an_absolute_path() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\n\n[IPSET management]\n198.51.100.5\n",
    )
    .unwrap();
    std::fs::write(
        p.join("site.toml"),
        "[[node]]\nname = \"pve1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\niptables_file = \"/etc/sysconfig/iptables\"\n\n\
         [[node]]\nname = \"xcp1\"\nplatform = \"xcpng\"\nipset_file = \"etc/ipset\"\n",
    )
    .unwrap();
    let o = rampart(&["check", p.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("node `pve1` uses the nftables backend"), "{t}");
    assert!(t.contains("site.toml:4:17"), "{t}");
    assert!(
        t.contains("`ipset_file` = `etc/ipset`: not an absolute path"),
        "{t}"
    );
    assert!(t.contains("site.toml:9:14"), "{t}");
}

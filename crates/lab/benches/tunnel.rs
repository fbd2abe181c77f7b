//! WireGuard (Debian's wireguard-go) against plain veth, in two network
//! namespaces on this machine: TCP bulk throughput, UDP round trip, and the
//! time a fresh tunnel takes from its configuration to the first reply.
//! Prints figures and ratios (medians of interleaved rounds: the machine is
//! shared). Root only; without root or wireguard-go it says so and exits.
//!
//! `cargo bench -p rampart-lab --bench tunnel` (or `bash bench/tunnel.sh`);
//! `RAMPART_BENCH_ROUNDS` (default 5) and `RAMPART_BENCH_SECS` (seconds per
//! throughput run, default 2) change the work.
//!
//! Both ends are configured from rampart's own output: keys from a rampart
//! key store per node, the site's `[[wireguard]]` network compiled by
//! `rampart_wg::check`, each end fed its `wg setconf` text, its private key
//! from the key store (`wg set … private-key FILE`), its addresses and
//! routes from the plan. Each wireguard-go gets its own `/var/run/wireguard`
//! (`Netns::wg`: the socket directory is not per network namespace).
//!
//! The sender, receiver and echo programs are threads of this process whose
//! sockets were created inside the namespaces (`setns` on the creating
//! thread), so no iperf or ping is needed.

use rampart_keystore::KeyStore;
use rampart_lab::netns::{unique_prefix, Netns};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NET: &str = "bench";
const IFACE: &str = "wg0";
const A_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const TCP_PORT: u16 = 5201;
const UDP_PORT: u16 = 5202;
const PINGS: usize = 200;

fn env_num(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `f` on a thread that has entered network namespace `ns`: sockets it
/// creates live there (and keep working from any thread afterwards).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("netns file");
        nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in namespace")
}

fn check(c: &mut Command) {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Wg {
    ns: Netns,
    child: Child,
    store: KeyStore,
    plan: rampart_wg::InterfacePlan,
    setconf: std::path::PathBuf,
}

impl Drop for Wg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wg {
    fn wg(&self, args: &[&str]) {
        let mut c = self.ns.wg("wg").expect("wg dir");
        c.args(args);
        check(&mut c);
    }
    /// Feed the plan's `wg setconf` text (which replaces every peer, and
    /// with them any session) and then the key store's private key.
    fn configure(&self) {
        self.wg(&["setconf", IFACE, self.setconf.to_str().unwrap()]);
        let key = self.store.key_path(NET);
        self.wg(&["set", IFACE, "private-key", key.to_str().unwrap()]);
    }
    /// Drop every peer (and its session): the next configure starts fresh.
    fn forget_peers(&self) {
        for p in &self.plan.peers {
            self.wg(&["set", IFACE, "peer", &p.public_key.to_base64(), "remove"]);
        }
    }
}

/// Bytes per second of one TCP connection from `from` to `to` over `secs`.
fn tcp_throughput(from: &str, to: &str, addr: IpAddr, secs: f64) -> f64 {
    let l = in_ns(to, move || {
        TcpListener::bind((addr, TCP_PORT)).expect("listen")
    });
    let rx = std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        let mut first: Option<Instant> = None;
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    first.get_or_insert_with(Instant::now);
                    got += n as u64;
                }
            }
        }
        (got, first.map(|t| t.elapsed()).unwrap_or_default())
    });
    let mut c = in_ns(from, move || {
        TcpStream::connect_timeout(&SocketAddr::new(addr, TCP_PORT), Duration::from_secs(5))
            .expect("connect")
    });
    let buf = vec![0x5au8; 128 * 1024];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        c.write_all(&buf).expect("send");
    }
    drop(c);
    let (bytes, took) = rx.join().expect("receiver");
    bytes as f64 / took.as_secs_f64()
}

/// A UDP echo server in `ns` on `addr` until `stop`.
fn echo_server(ns: &str, addr: IpAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let s = in_ns(ns, move || {
        UdpSocket::bind((addr, UDP_PORT)).expect("bind echo")
    });
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n], from);
            }
        }
    })
}

fn udp_client(ns: &str) -> UdpSocket {
    in_ns(ns, || UdpSocket::bind("0.0.0.0:0").expect("bind client"))
}

/// One echo: the time until the answer, resending every `retry`.
fn echo_once(s: &UdpSocket, to: SocketAddr, seq: u64, retry: Duration) -> Duration {
    s.set_read_timeout(Some(retry)).unwrap();
    let msg = seq.to_be_bytes();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        s.send_to(&msg, to).expect("send echo");
        loop {
            match s.recv_from(&mut buf) {
                Ok((8, _)) if buf[..8] == msg => return t.elapsed(),
                Ok(_) => continue, // a late answer to an earlier one
                Err(_) => break,
            }
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no echo from {to}");
    }
}

/// Median round trip of `PINGS` echoes (64 bytes' worth: an 8-byte payload).
fn rtt(s: &UdpSocket, to: IpAddr) -> Duration {
    let to = SocketAddr::new(to, UDP_PORT);
    let mut v: Vec<Duration> = (0..PINGS as u64)
        .map(|k| echo_once(s, to, k, Duration::from_millis(500)))
        .collect();
    v.sort();
    v[v.len() / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("tunnel bench: skipped (needs root for network namespaces)");
        return;
    }
    if !have("wireguard-go") || !have("wg") {
        eprintln!("tunnel bench: skipped (needs wireguard-go and wg: apt install wireguard-go wireguard-tools)");
        return;
    }
    let rounds = env_num("RAMPART_BENCH_ROUNDS", 5.0) as usize;
    let secs = env_num("RAMPART_BENCH_SECS", 2.0);
    rampart_lab::netns::sweep_stale();
    let prefix = unique_prefix();
    let a = Netns::create(&format!("{prefix}tun-a")).expect("netns a");
    let b = Netns::create(&format!("{prefix}tun-b")).expect("netns b");
    a.ip_batch(&[
        format!("link add eth0 type veth peer name eth0 netns {}", b.name()),
        format!("addr add {A_IP}/24 dev eth0"),
        "link set eth0 up".into(),
    ])
    .expect("veth");
    b.ip_batch(&[
        format!("addr add {B_IP}/24 dev eth0"),
        "link set eth0 up".into(),
    ])
    .expect("veth b");

    // rampart's side: key stores, the site, the plan.
    let tmp = tempfile::tempdir().unwrap();
    let stores: Vec<KeyStore> = ["a", "b"]
        .iter()
        .map(|n| KeyStore::open(tmp.path().join(format!("keys-{n}"))).expect("key store"))
        .collect();
    let pubs: Vec<_> = stores
        .iter()
        .map(|s| s.enroll(NET).expect("enroll"))
        .collect();
    let site = format!(
        "[[node]]\nname = \"a\"\nendpoint = \"{A_IP}\"\n[[node]]\nname = \"b\"\nendpoint = \"{B_IP}\"\n\
         [[wireguard]]\nname = \"{NET}\"\ninterface = \"{IFACE}\"\npool = [\"10.77.0.0/24\"]\nlisten_port = 51820\nmtu = 1420\n\
         [[wireguard.member]]\nname = \"a\"\npublic_key = \"{}\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"{}\"\n",
        pubs[0], pubs[1]
    );
    let (plan, diags) = rampart_wg::check(Default::default(), &site);
    assert!(!diags.has_errors(), "{diags:?}");
    let plan = plan.expect("plan");

    let mut ends = Vec::new();
    for (k, (ns, store)) in [a, b].into_iter().zip(stores).enumerate() {
        let owner = ["a", "b"][k];
        let ip = plan.get(NET, owner).expect("interface").clone();
        let setconf = tmp.path().join(format!("{owner}.setconf"));
        std::fs::write(&setconf, rampart_wg::wg_setconf(&ip)).unwrap();
        let mut c = ns.wg("wireguard-go").expect("wg dir");
        let child = c
            .args(["-f", IFACE])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wireguard-go");
        let w = Wg {
            ns,
            child,
            store,
            plan: ip,
            setconf,
        };
        let up = Instant::now();
        loop {
            let mut c = w.ns.wg("wg").unwrap();
            let ok = c
                .args(["show", IFACE])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                up.elapsed() < Duration::from_secs(10),
                "wireguard-go did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        w.configure();
        let mut lines: Vec<String> = w
            .plan
            .addresses
            .iter()
            .map(|a| format!("addr add {a} dev {IFACE}"))
            .collect();
        let mtu = w.plan.mtu.unwrap_or(1420);
        lines.push(format!("link set {IFACE} mtu {mtu} up"));
        lines.extend(
            w.plan
                .routes
                .iter()
                .map(|r| format!("route replace {} dev {}", r.dest, r.dev)),
        );
        w.ns.ip_batch(&lines).expect("tunnel addresses");
        ends.push(w);
    }
    let (wa, wb) = (&ends[0], &ends[1]);
    let (an, bn) = (wa.ns.name().to_string(), wb.ns.name().to_string());
    let b_tun = wb.plan.addresses[0].addr();
    let b_veth = IpAddr::V4(B_IP);

    let stop = Arc::new(AtomicBool::new(false));
    let servers = [
        echo_server(&bn, b_veth, stop.clone()),
        echo_server(&bn, b_tun, stop.clone()),
    ];
    let client = udp_client(&an);
    // Warm up: neighbours resolved, first handshake done.
    echo_once(
        &client,
        SocketAddr::new(b_veth, UDP_PORT),
        0,
        Duration::from_millis(200),
    );
    echo_once(
        &client,
        SocketAddr::new(b_tun, UDP_PORT),
        0,
        Duration::from_millis(200),
    );

    let (mut tp_veth, mut tp_tun, mut rtt_veth, mut rtt_tun) = (vec![], vec![], vec![], vec![]);
    let (mut cfg_to_reply, mut first_echo) = (vec![], vec![]);
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for r in 0..rounds {
        tp_veth.push(tcp_throughput(&an, &bn, b_veth, secs) * 8.0 / 1e9);
        tp_tun.push(tcp_throughput(&an, &bn, b_tun, secs) * 8.0 / 1e9);
        rtt_veth.push(rtt(&client, b_veth).as_secs_f64() * 1e3);
        rtt_tun.push(rtt(&client, b_tun).as_secs_f64() * 1e3);
        // A fresh tunnel: both ends forget the peer (and its session); the
        // responder is configured again; then, timed, the initiator's
        // configuration (`wg setconf` + `wg set private-key`, as apply
        // does) and its first echo, which waits for the handshake.
        wa.forget_peers();
        wb.forget_peers();
        wb.configure();
        let t = Instant::now();
        wa.configure();
        let t_cfg = t.elapsed();
        let first = echo_once(
            &client,
            SocketAddr::new(b_tun, UDP_PORT),
            1000 + r as u64,
            Duration::from_millis(1000),
        );
        cfg_to_reply.push((t_cfg + first).as_secs_f64() * 1e3);
        first_echo.push(first.as_secs_f64() * 1e3);
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        let _ = s.join();
    }

    let (tv, tt) = (median(tp_veth), median(tp_tun));
    let (rv, rt) = (median(rtt_veth), median(rtt_tun));
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let load = |s: &str| s.split_whitespace().next().unwrap_or("?").to_string();
    println!(
        "tunnel vs veth (wireguard-go, two namespaces; medians of {rounds} interleaved rounds, {secs} s per throughput run; \
         {cpus} CPUs, load average {} -> {}):",
        load(&load_before),
        load(&load_after)
    );
    println!(
        "  TCP throughput: tunnel {tt:.2} Gbit/s, veth {tv:.2} Gbit/s, ratio tunnel/veth {:.3}",
        tt / tv
    );
    println!(
        "  UDP round trip: tunnel {rt:.3} ms, veth {rv:.3} ms, ratio tunnel/veth {:.1}",
        rt / rv
    );
    println!(
        "  fresh tunnel: first echo including the handshake {:.2} ms ({:.1} x the tunnel's round trip); \
         from `wg setconf` + `wg set private-key` to that first reply {:.1} ms",
        median(first_echo.clone()),
        median(first_echo) / rt,
        median(cfg_to_reply)
    );
    println!("  (reference, dataplane-costs.md: 0.5 vs 15.8 Gbit/s; round trip 0.53 vs 0.05 ms; first ping incl. handshake 1.7 ms; `wg set` to first reply ~40 ms)");
    drop(client);
    drop(ends);
}

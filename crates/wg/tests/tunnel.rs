//! A real overlay: network namespaces joined by veth through a bridge,
//! wireguard-go in each, configured from rampart's generated `wg setconf`
//! text, keys from a rampart key store, routes from the plan; then UDP
//! echoes across the overlay between every pair, and from a road warrior
//! through its gateway to every member.
//!
//! wireguard-go's control socket directory (/var/run/wireguard) is not per
//! network namespace, so every instance runs in its own mount namespace with
//! a private tmpfs there; `wg` reaches it with `nsenter -m -n -t PID`.
//! Everything is created inside namespaces this test makes and removed on
//! drop, also on failure.
//!
//! No `ping` is assumed: the test binary re-executes itself inside a
//! namespace as a tiny UDP echo server or prober (see `zz_helper`).
mod common;

use rampart_keystore::KeyStore;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

const HELPER: &str = "RAMPART_WG_TEST_HELPER";
const PORT: u16 = 7777;

/// Not a test: the UDP echo server / prober the namespaces run.
#[test]
fn zz_helper() {
    let Ok(mode) = std::env::var(HELPER) else {
        return;
    };
    match mode.as_str() {
        "serve" => {
            let s = UdpSocket::bind(("::", PORT)).expect("bind echo");
            let mut buf = [0u8; 1500];
            loop {
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(&buf[..n], from);
                }
            }
        }
        "probe" => {
            let target: IpAddr = std::env::var("RAMPART_WG_TARGET").unwrap().parse().unwrap();
            let s = if target.is_ipv4() {
                UdpSocket::bind("0.0.0.0:0")
            } else {
                UdpSocket::bind("[::]:0")
            }
            .unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let to = SocketAddr::new(target, PORT);
            let mut buf = [0u8; 64];
            for _ in 0..20 {
                let _ = s.send_to(b"rampart", to);
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    if &buf[..n] == b"rampart" && from.ip().to_canonical() == target {
                        std::process::exit(0);
                    }
                }
            }
            std::process::exit(1);
        }
        "tcp-serve" => {
            let l = std::net::TcpListener::bind(("::", PORT + 1)).expect("bind tcp echo");
            for c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut c = c;
                    let mut buf = [0u8; 64];
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 || c.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        "tcp-stream" => {
            // One TCP connection, a message every 50 ms for the given time;
            // any error (reset, 10 s without an answer) fails.
            use std::io::{Read, Write};
            let target: IpAddr = std::env::var("RAMPART_WG_TARGET").unwrap().parse().unwrap();
            let secs: u64 = std::env::var("RAMPART_WG_SECS").unwrap().parse().unwrap();
            let to = SocketAddr::new(target, PORT + 1);
            let mut c = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5))
                .unwrap_or_else(|_| std::process::exit(2));
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let end = std::time::Instant::now() + Duration::from_secs(secs);
            let mut k: u64 = 0;
            while std::time::Instant::now() < end {
                let msg = k.to_be_bytes();
                let mut back = [0u8; 8];
                if c.write_all(&msg).is_err() || c.read_exact(&mut back).is_err() || back != msg {
                    std::process::exit(3);
                }
                k += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            std::process::exit(0);
        }
        other => panic!("unknown helper mode {other}"),
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

impl Lab {
    fn netns(&mut self, name: &str) {
        run(&["ip", "netns", "add", name]);
        self.namespaces.push(name.to_string());
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
    }

    /// wireguard-go in the foreground, in its own mount namespace; returns its pid.
    fn wireguard_go(&mut self, ns: &str, iface: &str) -> u32 {
        let script = format!("mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m 0700 /run/wireguard && exec wireguard-go -f {iface}");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
            ])
            .env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wireguard-go");
        let pid = child.id();
        self.children.push(child);
        // Wait for the control socket.
        for _ in 0..100 {
            let ok = Command::new("nsenter")
                .args(["-t", &pid.to_string(), "-m", "-n", "wg", "show", iface])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return pid;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wireguard-go in {ns} did not come up");
    }

    fn helper(&mut self, ns: &str, mode: &str, target: Option<&str>) -> Command {
        let exe = std::env::current_exe().unwrap();
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(exe).args([
            "--exact",
            "zz_helper",
            "--nocapture",
            "--test-threads=1",
        ]);
        c.env(HELPER, mode);
        if let Some(t) = target {
            c.env("RAMPART_WG_TARGET", t);
        }
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    }
}

/// `wg-quick strip` of our `.conf` (file named after the interface, 0600).
fn wg_quick_strip(dir: &std::path::Path, owner: &str, iface: &rampart_wg::InterfacePlan) -> String {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.join(format!("quick-{owner}"));
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join(format!("{}.conf", iface.interface));
    std::fs::write(&f, rampart_wg::wg_quick_conf(iface)).unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("wg-quick")
        .arg("strip")
        .arg(&f)
        .output()
        .expect("wg-quick");
    assert!(
        out.status.success(),
        "wg-quick strip: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[Peer]") && !text.contains("Table") && !text.contains("PostUp"),
        "{text}"
    );
    text
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

#[test]
fn three_node_mesh_and_a_road_warrior_talk_over_wireguard_go() {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return;
    }
    let id = format!(
        "{}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let nodes = ["hv1", "hv2", "hv3", "laptop"];
    let ns = |n: &str| format!("rwg{id}{n}");
    let mut lab = Lab {
        namespaces: Vec::new(),
        children: Vec::new(),
    };
    let sw = format!("rwg{id}sw");
    lab.netns(&sw);
    run(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
    run(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
    for (i, n) in nodes.iter().enumerate() {
        let name = ns(n);
        lab.netns(&name);
        let v = format!("v{i}");
        run(&[
            "ip", "-n", &sw, "link", "add", &v, "type", "veth", "peer", "name", "eth0", "netns",
            &name,
        ]);
        run(&["ip", "-n", &sw, "link", "set", &v, "master", "br0", "up"]);
        run(&[
            "ip",
            "-n",
            &name,
            "addr",
            "add",
            &format!("192.0.2.{}/24", i + 1),
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &name, "link", "set", "eth0", "up"]);
    }

    // Keys: one store per participant; only public keys go into the site.
    let tmp = tempfile::tempdir().unwrap();
    let mut pubs = Vec::new();
    let mut stores = Vec::new();
    for n in &nodes {
        let ks = KeyStore::open(tmp.path().join(n)).unwrap();
        pubs.push(ks.enroll("core").unwrap());
        stores.push(ks);
    }
    let mut site = String::new();
    for (i, n) in nodes[..3].iter().enumerate() {
        site.push_str(&format!(
            "[[node]]\nname = \"{n}\"\nendpoint = \"192.0.2.{}\"\n",
            i + 1
        ));
    }
    site.push_str("[[wireguard]]\nname = \"core\"\ninterface = \"wg0\"\npool = [\"10.99.0.0/24\", \"fd99::/64\"]\nlisten_port = 51820\nmtu = 1420\n");
    for (i, n) in nodes[..3].iter().enumerate() {
        site.push_str(&format!(
            "[[wireguard.member]]\nname = \"{n}\"\npublic_key = \"{}\"\n",
            pubs[i]
        ));
    }
    site.push_str(&format!(
        "[[client]]\nnetwork = \"core\"\nname = \"laptop\"\npublic_key = \"{}\"\nvia = [\"hv1\"]\n",
        pubs[3]
    ));
    let (plan, diags) = rampart_wg::check(Default::default(), &site);
    assert!(!diags.has_errors(), "{diags:?}");
    let plan = plan.unwrap();

    // Bring every interface up from the plan.
    let mut pids = Vec::new();
    for (k, n) in nodes.iter().enumerate() {
        let name = ns(n);
        let iface = plan.get("core", n).unwrap();
        let pid_n = lab.wireguard_go(&name, &iface.interface);
        pids.push(pid_n);
        let pid = pid_n.to_string();
        let conf = tmp.path().join(format!("{n}.setconf"));
        // Odd ones are configured from the wg-quick `.conf` through
        // `wg-quick strip` (proving wg-quick reads it), even ones from our
        // `wg setconf` text.
        let text = if k % 2 == 1 {
            wg_quick_strip(tmp.path(), n, iface)
        } else {
            rampart_wg::wg_setconf(iface)
        };
        std::fs::write(&conf, text).unwrap();
        let key = stores[k].key_path("core");
        run(&[
            "nsenter",
            "-t",
            &pid,
            "-m",
            "-n",
            "wg",
            "setconf",
            &iface.interface,
            conf.to_str().unwrap(),
        ]);
        run(&[
            "nsenter",
            "-t",
            &pid,
            "-m",
            "-n",
            "wg",
            "set",
            &iface.interface,
            "private-key",
            key.to_str().unwrap(),
        ]);
        for a in &iface.addresses {
            run(&[
                "ip",
                "-n",
                &name,
                "addr",
                "add",
                &a.to_string(),
                "dev",
                &iface.interface,
                "nodad",
            ]);
        }
        run(&[
            "ip",
            "-n",
            &name,
            "link",
            "set",
            &iface.interface,
            "mtu",
            "1420",
            "up",
        ]);
        for r in &iface.routes {
            run(&[
                "ip",
                "-n",
                &name,
                "route",
                "replace",
                &r.dest.to_string(),
                "dev",
                &r.dev,
            ]);
        }
        // hv1 forwards for the road warrior (sysctls are per namespace).
        if *n == "hv1" {
            let sh = "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding";
            run(&["ip", "netns", "exec", &name, "sh", "-c", sh]);
        }
        let server = lab.helper(&name, "serve", None).spawn().unwrap();
        lab.children.push(server);
        // The plan's private key never appears in what we fed wg.
        let secret = stores[k].load("core").unwrap().expose_base64();
        assert!(!std::fs::read_to_string(&conf).unwrap().contains(&secret));
    }
    std::thread::sleep(Duration::from_millis(300));

    let mut failures = Vec::new();
    for from in &nodes {
        for to in &nodes {
            if from == to {
                continue;
            }
            for a in &plan.get("core", to).unwrap().addresses {
                let ok = lab
                    .helper(&ns(from), "probe", Some(&a.addr().to_string()))
                    .status()
                    .unwrap()
                    .success();
                if !ok {
                    failures.push(format!("{from} -> {to} ({})", a.addr()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "no echo over the overlay: {failures:?}"
    );

    // Remove hv3 from the site, recompile, setconf the others: hv1 and hv2
    // no longer accept hv3, while hv1 <-> hv2 keeps working.
    let without = site.replace(
        &format!(
            "[[wireguard.member]]\nname = \"hv3\"\npublic_key = \"{}\"\n",
            pubs[2]
        ),
        "",
    );
    assert_ne!(without, site);
    let (plan2, d2) = rampart_wg::check(Default::default(), &without);
    assert!(!d2.has_errors(), "{d2:?}");
    let plan2 = plan2.unwrap();
    // hv1 learns it as a diff (`wg set ... peer K remove`, sessions kept);
    // hv2 by a full `wg setconf`, which also resets the private key.
    {
        let (old, new) = (
            plan.get("core", "hv1").unwrap(),
            plan2.get("core", "hv1").unwrap(),
        );
        assert!(new.peers.iter().all(|p| p.name != "hv3"));
        let d = rampart_wg::diff(Some(old), new);
        assert!(
            d.peers
                .iter()
                .any(|c| matches!(c, rampart_wg::PeerChange::Remove(_))),
            "{d:?}"
        );
        let pid = pids[0].to_string();
        let mut args = vec![
            "nsenter".to_string(),
            "-t".into(),
            pid,
            "-m".into(),
            "-n".into(),
            "wg".into(),
        ];
        args.extend(d.wg_set_args(&new.interface));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        run(&args);
    }
    {
        let iface = plan2.get("core", "hv2").unwrap();
        let conf = tmp.path().join("hv2.setconf2");
        std::fs::write(&conf, rampart_wg::wg_setconf(iface)).unwrap();
        let pid = pids[1].to_string();
        let ifc = iface.interface.as_str();
        run(&[
            "nsenter",
            "-t",
            &pid,
            "-m",
            "-n",
            "wg",
            "setconf",
            ifc,
            conf.to_str().unwrap(),
        ]);
        let key = stores[1].key_path("core");
        run(&[
            "nsenter",
            "-t",
            &pid,
            "-m",
            "-n",
            "wg",
            "set",
            ifc,
            "private-key",
            key.to_str().unwrap(),
        ]);
    }
    let hv1 = plan.get("core", "hv1").unwrap().addresses[0]
        .addr()
        .to_string();
    assert!(
        !lab.helper(&ns("hv3"), "probe", Some(&hv1))
            .status()
            .unwrap()
            .success(),
        "hv1 still accepts removed hv3"
    );
    let hv2 = plan.get("core", "hv2").unwrap().addresses[0]
        .addr()
        .to_string();
    assert!(
        !lab.helper(&ns("hv3"), "probe", Some(&hv2))
            .status()
            .unwrap()
            .success(),
        "hv2 still accepts removed hv3"
    );
    assert!(
        lab.helper(&ns("hv2"), "probe", Some(&hv1))
            .status()
            .unwrap()
            .success(),
        "hv2 lost hv1"
    );

    // Control: an address outside the overlay's AllowedIPs is not reachable
    // through it (the plan gave laptop only the pool through hv1).
    let ok = lab
        .helper(&ns("laptop"), "probe", Some("10.98.0.1"))
        .status()
        .unwrap()
        .success();
    assert!(!ok);

    // Key rotation of hv1 under continuous TCP traffic (hv2 -> hv1 and the
    // laptop -> hv2 through hv1): hv1 makes a next key, its public key goes
    // into the site, the peers apply the diff (old key removed, new key
    // added with the same AllowedIPs) and hv1 promotes the key at the same
    // time. No connection may be lost.
    for n in ["hv1", "hv2"] {
        let tcp = lab.helper(&ns(n), "tcp-serve", None).spawn().unwrap();
        lab.children.push(tcp);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut streams = Vec::new();
    for (from, to) in [("hv2", "hv1"), ("laptop", "hv2")] {
        let target = plan2.get("core", to).unwrap().addresses[0]
            .addr()
            .to_string();
        let mut c = lab.helper(&ns(from), "tcp-stream", Some(&target));
        c.env("RAMPART_WG_SECS", "4");
        streams.push((from, to, c.spawn().unwrap()));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let old_key = pubs[0];
    let next = stores[0].rotate("core").unwrap();
    assert_ne!(next, old_key);
    let rotated = without.replace(&old_key.to_base64(), &next.to_base64());
    let (plan3, d3) = rampart_wg::check(Default::default(), &rotated);
    assert!(!d3.has_errors(), "{d3:?}");
    let plan3 = plan3.unwrap();
    // The peers first (they now accept the new key), then hv1 switches.
    for (k, n) in nodes.iter().enumerate() {
        if *n == "hv1" || *n == "hv3" {
            continue;
        }
        let d = rampart_wg::diff(plan2.get("core", n), plan3.get("core", n).unwrap());
        assert!(
            d.peers
                .iter()
                .any(|c| matches!(c, rampart_wg::PeerChange::Remove(key) if *key == old_key)),
            "{n}: {d:?}"
        );
        let pid = pids[k].to_string();
        let mut args = vec![
            "nsenter".to_string(),
            "-t".into(),
            pid,
            "-m".into(),
            "-n".into(),
            "wg".into(),
        ];
        args.extend(d.wg_set_args("wg0"));
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        run(&args);
    }
    assert_eq!(stores[0].promote("core").unwrap(), next);
    let key = stores[0].key_path("core");
    let pid = pids[0].to_string();
    run(&[
        "nsenter",
        "-t",
        &pid,
        "-m",
        "-n",
        "wg",
        "set",
        "wg0",
        "private-key",
        key.to_str().unwrap(),
    ]);
    for (from, to, mut c) in streams {
        let st = c.wait().unwrap();
        assert!(
            st.success(),
            "TCP connection {from} -> {to} lost during the rotation: {st}"
        );
    }
    // And the new key is what hv2 now knows hv1 by.
    let out = Command::new("nsenter")
        .args([
            "-t",
            &pids[1].to_string(),
            "-m",
            "-n",
            "wg",
            "show",
            "wg0",
            "peers",
        ])
        .output()
        .unwrap();
    let peers = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        peers.contains(&next.to_base64()) && !peers.contains(&old_key.to_base64()),
        "{peers}"
    );
}

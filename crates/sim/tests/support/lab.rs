//! A node built for real in network namespaces: the host namespace with
//! its bridges and the plan loaded, a namespace per guest on a veth named
//! like its NIC, and an outside namespace on the first bridge that is also
//! the node's router. Packets are sent for real and the kernel's answer read.

#![allow(dead_code)]

use super::common::NetNs;
use rampart_nft::Plan;
use rampart_resolve::ir::Site;
use rampart_sim::{Packet, Zone};
use rampart_types::Proto;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};

const PROBE: &str = r#"
import socket, sys, struct, time, errno
mode = sys.argv[1]
if mode == 'serve':
    proto, addr, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
    t = socket.SOCK_STREAM if proto == 'tcp' else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET6 if ':' in addr else socket.AF_INET, t)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    if proto == 'tcp':
        s.listen(16)
    print('ready', flush=True)
    while True:
        if proto == 'tcp':
            c, _ = s.accept(); c.close()
        else:
            d, a = s.recvfrom(100); s.sendto(d, a)
proto, src, dst, port, sport, timeout = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
def refused(e):
    return e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES)
try:
    if proto == 'tcp':
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, sport)); s.settimeout(timeout)
        s.connect((dst, port)); print('ACCEPT')
    elif proto == 'udp':
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((src, sport)); s.connect((dst, port)); s.settimeout(timeout)
        try:
            s.send(b'x')
        except PermissionError:
            # Stopped in the node's own output path: a REJECT still
            # delivers its ICMP error to the socket, a DROP does not.
            pass
        s.recv(100); print('ACCEPT')
    else:
        v6 = fam == socket.AF_INET6
        s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
        s.bind((src, 0))
        ident = 0x4242
        if v6:
            pkt = struct.pack('!BBHHH', 128, 0, 0, ident, 1) + b'rampart!'
        else:
            h = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'rampart!'
            sm = sum(struct.unpack('!%dH' % (len(h) // 2), h + (b'\0' if len(h) % 2 else b'')))
            sm = (sm >> 16) + (sm & 0xffff); sm += sm >> 16
            pkt = struct.pack('!BBHHH', 8, 0, (~sm) & 0xffff, ident, 1) + b'rampart!'
        s.sendto(pkt, (dst, 0))
        end = time.time() + timeout
        verdict = 'DROP'
        while time.time() < end:
            s.settimeout(max(0.01, end - time.time()))
            try:
                d, a = s.recvfrom(2000)
            except socket.timeout:
                break
            if not v6:
                d = d[(d[0] & 0xf) * 4:]
            ty = d[0]
            if (v6 and ty == 129) or (not v6 and ty == 0):
                verdict = 'ACCEPT'; break
            if (v6 and ty == 1) or (not v6 and ty == 3):
                verdict = 'REJECT'; break
        print(verdict)
except socket.timeout:
    print('DROP')
except OSError as e:
    print('REJECT' if refused(e) else 'ERR %s' % e)
"#;

pub struct Lab {
    pub host: NetNs,
    pub outside: NetNs,
    pub guests: BTreeMap<u32, NetNs>,
    probe: String,
}

fn router(net: &ipnet::IpNet) -> IpAddr {
    match net {
        ipnet::IpNet::V4(n) => IpAddr::V4((u32::from(n.broadcast()) - 1).into()),
        ipnet::IpNet::V6(n) => IpAddr::V6((u128::from(n.network()) + 0xfffe).into()),
    }
}

impl Lab {
    pub fn build(site: &Site, plan: &Plan) -> Lab {
        let node = site.node(&plan.node).unwrap();
        let host = NetNs::new("h");
        let outside = NetNs::new("o");
        let sh = |ns: &NetNs, cmd: &str| {
            let argv: Vec<&str> = cmd.split_whitespace().collect();
            ns.ok(&argv);
        };
        for k in [
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ] {
            sh(&host, &format!("sysctl -qw {k}"));
        }
        for b in &node.bridges {
            sh(&host, &format!("ip link add {} type bridge", b.name));
            sh(&host, &format!("ip link set {} up", b.name));
            for a in &b.addresses {
                sh(&host, &format!("ip addr add {a} dev {} nodad", b.name));
            }
        }
        // The outside machine on the first bridge; it is also the router
        // the node's default route points to.
        let b0 = &node.bridges[0];
        sh(
            &host,
            &format!(
                "ip link add outside type veth peer name eth0 netns {}",
                outside.name
            ),
        );
        sh(&host, &format!("ip link set outside master {} up", b0.name));
        sh(&outside, "ip link set eth0 up");
        for a in &b0.addresses {
            sh(
                &outside,
                &format!(
                    "ip addr add {}/{} dev eth0 nodad",
                    router(a),
                    a.prefix_len()
                ),
            );
            let fam = if a.addr().is_ipv4() { "-4" } else { "-6" };
            sh(
                &host,
                &format!("ip {fam} route add default via {}", router(a)),
            );
            // Networks on the node's other bridges are reached through the node.
            for b in node.bridges.iter().skip(1) {
                for n in b
                    .addresses
                    .iter()
                    .filter(|n| n.addr().is_ipv4() == a.addr().is_ipv4())
                {
                    sh(
                        &outside,
                        &format!("ip {fam} route add {} via {}", n.trunc(), a.addr()),
                    );
                }
            }
        }
        let mut guests = BTreeMap::new();
        for g in site.guests_on(&node.name) {
            let ns = NetNs::new(&format!("g{}", g.id));
            for (i, nic) in g.nics.iter().enumerate() {
                let eth = format!("eth{i}");
                sh(
                    &host,
                    &format!(
                        "ip link add {} type veth peer name {eth} netns {}",
                        nic.ifname, ns.name
                    ),
                );
                sh(
                    &host,
                    &format!("ip link set {} master {} up", nic.ifname, nic.bridge),
                );
                if let Some(m) = nic.mac {
                    sh(
                        &ns,
                        &format!(
                            "ip link set {eth} address {}",
                            rampart_nft::print::mac_str(&m)
                        ),
                    );
                }
                sh(&ns, &format!("ip link set {eth} up"));
                for a in &nic.addresses {
                    sh(&ns, &format!("ip addr add {a} dev {eth} nodad"));
                    if i != 0 {
                        continue;
                    }
                    // Default route: the outside router on the first bridge,
                    // the node itself on the others.
                    let fam = if a.addr().is_ipv4() { "-4" } else { "-6" };
                    let same = |n: &&ipnet::IpNet| n.addr().is_ipv4() == a.addr().is_ipv4();
                    let gw = if nic.bridge == b0.name {
                        b0.addresses.iter().find(same).map(router)
                    } else {
                        node.bridges
                            .iter()
                            .find(|b| b.name == nic.bridge)
                            .and_then(|b| b.addresses.iter().find(same))
                            .map(|n| n.addr())
                    };
                    if let Some(gw) = gw {
                        sh(&ns, &format!("ip {fam} route add default via {gw}"));
                    }
                }
            }
            guests.insert(g.id, ns);
        }
        for s in plan
            .sysctls
            .iter()
            .filter(|s| s.key.starts_with("net.bridge."))
        {
            sh(&host, &format!("sysctl -qw {}={}", s.key, s.value));
        }
        if let Err(e) = host.nft_load(&plan.script) {
            panic!("loading the plan failed:\n{e}");
        }
        let probe = std::env::temp_dir().join(format!("{}.py", host.name));
        std::fs::write(&probe, PROBE).unwrap();
        Lab {
            host,
            outside,
            guests,
            probe: probe.to_string_lossy().into_owned(),
        }
    }

    fn ns(&self, z: &Zone) -> &NetNs {
        match z {
            Zone::Host => &self.host,
            Zone::Outside | Zone::Node(_) => &self.outside,
            Zone::Guest { id, .. } => &self.guests[id],
        }
    }

    /// Put `addr` on the zone's machine if it lacks it (outside sources,
    /// spoofed guest sources); already present is fine.
    fn ensure(&self, z: &Zone, addr: IpAddr) {
        let dev = match z {
            Zone::Host => return,
            Zone::Guest { nic, .. } => format!("eth{}", nic.unwrap_or(0)),
            _ => "eth0".to_string(),
        };
        let plen = if addr.is_ipv4() { 32 } else { 128 };
        let o = self.ns(z).exec(&[
            "ip",
            "addr",
            "add",
            &format!("{addr}/{plen}"),
            "dev",
            &dev,
            "nodad",
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || (err.contains("File exists") || err.contains("already assigned")),
            "adding {addr} in {z:?}: {err}"
        );
    }

    fn serve(&self, ns: &NetNs, proto: &str, addr: IpAddr, port: u16) -> Child {
        let mut c = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.name,
                "python3",
                &self.probe,
                "serve",
                proto,
                &addr.to_string(),
                &port.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        c
    }

    pub fn send(&self, p: &Packet, src: IpAddr, dst: IpAddr) -> String {
        self.ensure(&p.from, src);
        self.ensure(&p.to, dst);
        let proto = match p.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            _ => "icmp",
        };
        let dport = p.dport.unwrap_or(0);
        // Each packet starts from empty neighbour caches: an address
        // resolution still pending from an earlier packet's source (say a
        // blacklisted one, whose solicitations the firewall drops) would be
        // retried from that source and fail this packet too.
        for z in [&p.from, &p.to] {
            if !matches!(z, Zone::Host) {
                self.ns(z).exec(&["ip", "neigh", "flush", "all"]);
            }
        }
        let server = if proto == "icmp" {
            None
        } else {
            Some(self.serve(self.ns(&p.to), proto, dst, dport))
        };
        let o = self.ns(&p.from).exec(&[
            "python3",
            &self.probe,
            "probe",
            proto,
            &src.to_string(),
            &dst.to_string(),
            &dport.to_string(),
            &p.sport.unwrap_or(0).to_string(),
            "1.0",
        ]);
        if let Some(mut s) = server {
            let _ = s.kill();
            let _ = s.wait();
        }
        let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if out.starts_with("ERR") {
            let a = self.ns(&p.from).exec(&["ip", "addr"]);
            return format!("{out} (addresses: {})", String::from_utf8_lossy(&a.stdout));
        }
        if out.is_empty() {
            return format!("probe failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        out
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.probe);
    }
}

//! Benchmark: new TCP connections per second through a node whose policy
//! has 10,000 rules and a 100,000-entry blacklist, against no firewall.
//! Target: rampart's ruleset >= 0.9 of the rate with no firewall. The same
//! ratio is printed for a naive layout (one linear `ip saddr X drop` rule
//! per blacklist/policy address) to show the difference. Prints figures;
//! not a timed test. Needs root (network namespaces); says so and exits
//! otherwise.
//!
//! `cargo bench -p rampart-nft --bench dataplane` (or `bash bench/dataplane.sh`)
//! `RAMPART_DP_RULES` (10000), `_BLACKLIST` (100000), `_ROUNDS` (9),
//! `_SECS` (2.0 per measurement) change the size; `_VARIANTS` (`abcd`)
//! picks the configurations ((a) is always measured); `_PLAN=FILE` measures
//! a hand-edited plan as (b); `_DUMP=DIR` writes the site and the plan;
//! `_DEBUG` prints each round and the node's conntrack entry count and
//! nonzero `conntrack -S` counters before and after it.
//!
//! Setup: two namespaces joined by a veth pair, `client` (198.51.100.2) and
//! `node` (198.51.100.1). The node runs the firewall under test and a TCP
//! listener on port 8080; the client connects from one thread, closes each
//! connection with a reset (no TIME_WAIT, so ports never run out) and counts.
//! The site is generated as text (`site.toml`, `firewall/cluster.fw` with the
//! `blacklist` ipset, `nodes/bench/host.fw` with the rules) and goes through
//! the same path as `rampart compile`: parse, resolve, compile. No rule and
//! no blacklist entry matches the test traffic; the last rule accepts port
//! 8080, so every new connection walks the whole host-in chain.
//!
//! The rules come in blocks of 100 lines of one shape and verdict (what a
//! generated policy looks like: per-source accepts with one port, per-source
//! drops with their own port, subnet + port range accepts, per-port
//! rejects), the blocks alternating between ACCEPT and DROP/REJECT.
//!
//! Configurations, measured in interleaved rounds (each loaded afresh in
//! every round, the order rotating from round to round), reported as the
//! median (and range) of the per-round ratios to (a) — for the rate and
//! for this process's CPU time per connection, which other load on the
//! machine disturbs less:
//! (a) no firewall: the node has no ruleset at all;
//! (b) rampart: the compiled plan's `nft -f` script;
//! (c) naive: `table inet` with conntrack first, then one `ip saddr X drop`
//!     per blacklist entry and per policy address, then accept 8080;
//! (d) conntrack only: `ct state established,related accept`, accept 8080 —
//!     the least any stateful firewall does, to tell the cost of the rules
//!     from the cost of connection tracking itself.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PORT: u16 = 8080;
const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn run(args: &[&str], stdin: Option<&str>) -> Result<(), String> {
    let mut c = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if let Some(s) = stdin {
        c.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(c.stdin.take());
    let out = c.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two namespaces, deleted on drop.
struct Lab {
    client: String,
    node: String,
}

impl Lab {
    fn new() -> Lab {
        let tag = format!("rampart-dp-{}", std::process::id());
        let lab = Lab {
            client: format!("{tag}-client"),
            node: format!("{tag}-node"),
        };
        for ns in [&lab.client, &lab.node] {
            run(&["ip", "netns", "add", ns], None).expect("ip netns add");
            run(&["ip", "-n", ns, "link", "set", "lo", "up"], None).expect("lo up");
        }
        run(
            &[
                "ip",
                "netns",
                "exec",
                &lab.node,
                "sysctl",
                "-qw",
                "net.core.somaxconn=65535",
            ],
            None,
        )
        .expect("somaxconn");
        run(
            &[
                "ip",
                "-n",
                &lab.client,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                "vmbr0",
                "netns",
                &lab.node,
            ],
            None,
        )
        .expect("veth");
        for (ns, dev, addr) in [
            (&lab.client, "eth0", format!("{CLIENT_IP}/24")),
            (&lab.node, "vmbr0", format!("{NODE_IP}/24")),
        ] {
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", dev], None).expect("addr");
            run(&["ip", "-n", ns, "link", "set", dev, "up"], None).expect("up");
        }
        lab
    }

    fn nft(&self, script: &str) {
        run(
            &["ip", "netns", "exec", &self.node, "nft", "-f", "-"],
            Some(script),
        )
        .unwrap_or_else(|e| panic!("nft -f in the node: {e}"));
    }

    /// The node's conntrack entry count and the nonzero per-CPU counters
    /// of `conntrack -S` summed (debug output).
    fn ct_stats(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.node, "sh", "-c"])
            .arg("cat /proc/sys/net/netfilter/nf_conntrack_count; conntrack -S 2>/dev/null")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let mut lines = out.lines();
        let count = lines.next().unwrap_or("?").to_string();
        let mut sums: Vec<(String, u64)> = Vec::new();
        for l in lines {
            for kv in l.split_whitespace().skip(1) {
                if let Some((k, v)) = kv.split_once('=') {
                    let v: u64 = v.parse().unwrap_or(0);
                    match sums.iter_mut().find(|(n, _)| n == k) {
                        Some(e) => e.1 += v,
                        None => sums.push((k.to_string(), v)),
                    }
                }
            }
        }
        let nz: Vec<String> = sums
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("count={count} {}", nz.join(" "))
    }

    /// Remove the tables this bench loads (no firewall).
    fn clear(&self) {
        let mut s = String::new();
        for t in ["inet rampart", "bridge rampart", "inet rampart_naive"] {
            let _ = writeln!(s, "table {t}\ndelete table {t}");
        }
        self.nft(&s);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.node] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
    }
}

/// Move the calling thread into namespace `ns` (network only).
fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// New connections per second from the client for `secs` seconds, and this
/// process's CPU time per connection in µs (client and listener threads and
/// the kernel work done on their behalf: a figure the other load on the
/// machine disturbs much less than the rate).
fn measure(client_ns: &str, secs: f64) -> (f64, f64) {
    let ns = client_ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        let to = SocketAddr::V4(SocketAddrV4::new(NODE_IP, PORT));
        let connect = || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            let r = s.connect_timeout(&to.into(), Duration::from_secs(1));
            if let Err(e) = &r {
                if std::env::var_os("RAMPART_DP_DEBUG").is_some() {
                    eprintln!("connect: {e}");
                }
            }
            let ok = r.is_ok();
            // A reset instead of FIN: no TIME_WAIT, the ports never run out.
            let _ = s.set_linger(Some(Duration::ZERO));
            ok
        };
        // Warm up (a fresh link, ARP, the listener's first accepts).
        let t = Instant::now();
        let mut ok = 0;
        while t.elapsed() < Duration::from_millis(300) || ok == 0 {
            if connect() {
                ok += 1;
            } else {
                assert!(
                    t.elapsed() < Duration::from_secs(10),
                    "the client cannot connect to the node"
                );
            }
        }
        let (t, c) = (Instant::now(), cpu_s());
        let mut n = 0u64;
        let mut failed = 0u64;
        while t.elapsed().as_secs_f64() < secs {
            if connect() {
                n += 1;
            } else {
                failed += 1;
            }
        }
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_s() - c);
        assert!(failed == 0, "{failed} connections failed");
        (n as f64 / wall, cpu * 1e6 / n.max(1) as f64)
    })
    .join()
    .expect("client thread")
}

/// The generated site: (files, policy source addresses as nft text).
fn site(rules: usize, blacklist: usize) -> (rampart_types::SiteFiles, Vec<String>) {
    let toml = format!(
        "[[node]]\nname = \"bench\"\nendpoint = \"{NODE_IP}\"\nbridges = {{ vmbr0 = [\"{NODE_IP}/24\"] }}\n"
    );
    let mut cluster = String::from("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET blacklist]\n");
    // 100.64.0.0/10 (shared address space), never the client.
    for i in 0..blacklist as u32 {
        let a = Ipv4Addr::from(0x6440_0000u32 + i * 3 + 1);
        let _ = writeln!(cluster, "{a}");
    }
    let mut host = String::from("[OPTIONS]\nenable: 1\n\n[RULES]\n");
    let mut addrs = Vec::new();
    // 10.0.0.0/8, never the client.
    for i in 0..rules as u32 {
        let block = i / 100;
        let a = Ipv4Addr::from(0x0a00_0000u32 + i * 16);
        let line = match block % 4 {
            0 => {
                addrs.push(a.to_string());
                format!("IN ACCEPT -source {a} -p tcp -dport 22")
            }
            1 => {
                addrs.push(a.to_string());
                format!("IN DROP -source {a} -p tcp -dport {}", 1000 + i % 1000)
            }
            2 => {
                addrs.push(format!("{a}/28"));
                format!(
                    "IN ACCEPT -source {a}/28 -p udp -dport {}:{}",
                    5000 + i % 100 * 10,
                    5005 + i % 100 * 10
                )
            }
            _ => {
                addrs.push(a.to_string());
                format!("IN REJECT -source {a} -p tcp -dport 9000")
            }
        };
        let _ = writeln!(host, "{line}");
    }
    let _ = writeln!(host, "IN ACCEPT -p tcp -dport {PORT} # the test traffic");
    let files = rampart_types::SiteFiles::new()
        .with("site.toml", toml)
        .with("firewall/cluster.fw", cluster)
        .with("nodes/bench/host.fw", host);
    (files, addrs)
}

/// The least a stateful firewall does: conntrack, then accept the port.
const CONNTRACK_ONLY: &str = "table inet rampart_naive
delete table inet rampart_naive
table inet rampart_naive {
\tchain input {
\t\ttype filter hook input priority 0; policy accept;
\t\tct state established,related accept
\t\tct state invalid drop
\t\ttcp dport 8080 accept
\t\tdrop
\t}
}
";

fn naive(blacklist: usize, addrs: &[String]) -> String {
    let mut s = String::with_capacity((blacklist + addrs.len()) * 40);
    s.push_str("table inet rampart_naive\ndelete table inet rampart_naive\n");
    s.push_str("table inet rampart_naive {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n");
    s.push_str("\t\tct state established,related accept\n\t\tct state invalid drop\n\t\tiifname \"lo\" accept\n");
    for i in 0..blacklist as u32 {
        let a = Ipv4Addr::from(0x6440_0000u32 + i * 3 + 1);
        let _ = writeln!(s, "\t\tip saddr {a} drop");
    }
    for a in addrs {
        let _ = writeln!(s, "\t\tip saddr {a} drop");
    }
    let _ = writeln!(s, "\t\ttcp dport {PORT} accept\n\t\tdrop\n\t}}\n}}");
    s
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("dataplane: skipped (needs root for network namespaces)");
        return;
    }
    let rules: usize = env("RAMPART_DP_RULES", 10_000);
    let blacklist: usize = env("RAMPART_DP_BLACKLIST", 100_000);
    let rounds: usize = env("RAMPART_DP_ROUNDS", 9usize).max(1);
    let secs: f64 = env("RAMPART_DP_SECS", 2.0);

    let (files, addrs) = site(rules, blacklist);
    let t = Instant::now();
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    let plan = rampart_nft::compile(&site, "bench").expect("compiles");
    let compile_s = t.elapsed().as_secs_f64();
    let inet = plan.ruleset.table(rampart_nft::model::TableFamily::Inet);
    let host_in = inet
        .and_then(|t| t.chain("host-in"))
        .map_or(0, |c| c.rules.len());
    let kernel_rules: usize = plan
        .ruleset
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum();
    let naive = naive(blacklist, &addrs);
    // RAMPART_DP_PLAN=FILE: measure a hand-edited plan as (b) instead.
    let plan_script = match std::env::var("RAMPART_DP_PLAN") {
        Ok(p) => std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")),
        Err(_) => plan.script.clone(),
    };
    if let Ok(dir) = std::env::var("RAMPART_DP_DUMP") {
        for (path, bytes) in &files.files {
            let p = std::path::Path::new(&dir).join(path);
            std::fs::create_dir_all(p.parent().unwrap()).expect("dump dir");
            std::fs::write(p, bytes).expect("dump site");
        }
        std::fs::write(std::path::Path::new(&dir).join("bench.nft"), &plan.script)
            .expect("dump plan");
    }

    let lab = Lab::new();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let ns = lab.node.clone();
        let stop = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = std::thread::spawn(move || {
            enter(&ns);
            // A deep accept queue: on a loaded machine this thread may be
            // scheduled late, and an overflowing queue drops SYNs.
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            s.set_reuse_address(true).expect("reuseaddr");
            s.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT)).into())
                .expect("bind");
            s.listen(65535).expect("listen");
            let l: TcpListener = s.into();
            tx.send(()).unwrap();
            for c in l.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                drop(c);
            }
        });
        rx.recv().expect("listener up");
        h
    };

    let names = ["no firewall", "rampart", "naive", "conntrack only"];
    let variants: String = env("RAMPART_DP_VARIANTS", "abcd".to_string());
    let chosen: Vec<usize> = (0..4)
        .filter(|&i| i == 0 || variants.contains((b'a' + i as u8) as char))
        .collect();
    let debug = std::env::var_os("RAMPART_DP_DEBUG").is_some();
    let letter = |i: usize| (b'a' + i as u8) as char;
    // Per configuration: one (rate, CPU µs per connection) per round.
    let mut rates: [Vec<(f64, f64)>; 4] = Default::default();
    let mut load_s: [Vec<f64>; 4] = Default::default();
    let load_before = loadavg();
    let (t0, c0) = (Instant::now(), cpu_s());
    for round in 0..rounds {
        // Interleaved, and the order rotates every round so that each
        // configuration follows each other one equally often (what one
        // leaves behind, e.g. conntrack entries, is shared out fairly).
        for k in 0..chosen.len() {
            let i = chosen[(k + round) % chosen.len()];
            let t = Instant::now();
            lab.clear();
            match i {
                0 => {}
                1 => lab.nft(&plan_script),
                2 => lab.nft(&naive),
                _ => lab.nft(CONNTRACK_ONLY),
            }
            load_s[i].push(t.elapsed().as_secs_f64());
            if debug {
                eprintln!("round {round} ({}) before: {}", letter(i), lab.ct_stats());
            }
            rates[i].push(measure(&lab.client, secs));
            if debug {
                let (r, c) = rates[i].last().unwrap();
                eprintln!(
                    "round {round} ({}) {r:.0}/s, {c:.1} µs CPU/conn, after: {}",
                    letter(i),
                    lab.ct_stats()
                );
            }
        }
    }
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_s() - c0);
    let load_after = loadavg();
    stop.store(true, Ordering::Relaxed);
    // Wake the listener so it sees `stop`.
    lab.clear();
    let _ = measure_once(&lab.client);
    let _ = server.join();

    let rate = |i: usize| -> Vec<f64> { rates[i].iter().map(|r| r.0).collect() };
    let cpu_per = |i: usize| -> Vec<f64> { rates[i].iter().map(|r| r.1).collect() };
    let m: Vec<f64> = (0..4).map(|i| median(rate(i))).collect();
    let mc: Vec<f64> = (0..4).map(|i| median(cpu_per(i))).collect();
    // Ratios round by round, each against the same round's "no firewall":
    // steadier on a shared machine than the ratio of the medians.
    // (median, min, max)
    let per_round = |i: usize, f: &dyn Fn(usize, usize) -> f64| -> (f64, f64, f64) {
        let mut v: Vec<f64> = (0..rates[i].len().min(rates[0].len()))
            .map(|r| f(i, r))
            .collect();
        if v.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN);
        }
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (median(v.clone()), v[0], v[v.len() - 1])
    };
    let rate_ratio = |i: usize, r: usize| rates[i][r].0 / rates[0][r].0;
    // CPU per connection of no firewall / of this configuration: the same
    // sense as the rate ratio (1.0 = costs nothing).
    let cpu_ratio = |i: usize, r: usize| rates[0][r].1 / rates[i][r].1;
    println!(
        "dataplane (new TCP connections/s, one client thread, {rounds} rounds of {secs} s, configurations interleaved in rotating order):"
    );
    println!(
        "  policy: {rules} rules in host.fw, blacklist of {blacklist} entries; rampart compiled {kernel_rules} kernel rules ({host_in} in host-in) in {compile_s:.2} s; naive: {} linear rules",
        blacklist + addrs.len() + 4
    );
    println!("  load average: {load_before} before, {load_after} after");
    println!(
        "  {:<20} {:>9} {:>17}  {:>8}  {:>22}  {:>22}",
        "", "median/s", "(min-max)", "µs CPU", "per-round rate ratio", "per-round CPU ratio"
    );
    for &i in &chosen {
        let mut r = rate(i);
        r.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (rm, rlo, rhi) = per_round(i, &rate_ratio);
        let (cm, clo, chi) = per_round(i, &cpu_ratio);
        println!(
            "  ({}) {:<16} {:>9.0} {:>17}  {:>8.1}  {:>22}  {:>22}",
            letter(i),
            names[i],
            m[i],
            format!("({:.0}-{:.0})", r[0], r[r.len() - 1]),
            mc[i],
            format!("{rm:.2} ({rlo:.2}-{rhi:.2})"),
            format!("{cm:.2} ({clo:.2}-{chi:.2})"),
        );
    }
    let (b, _, _) = per_round(1, &rate_ratio);
    if chosen.contains(&1) {
        println!(
            "  rampart / no firewall = {b:.2}, median of per-round ratios (target >= 0.9: {}); ratio of medians {:.2}; rampart / conntrack only {:.2}",
            if b >= 0.9 { "met" } else { "NOT met" },
            m[1] / m[0],
            m[1] / m[3],
        );
    }
    println!(
        "  (µs CPU: this process's CPU time per connection, median of rounds; CPU ratio = no firewall's µs / this one's)"
    );
    println!(
        "  ruleset load time per round (median): {}",
        chosen
            .iter()
            .map(|&i| format!("({}) {:.2} s", letter(i), median(load_s[i].clone())))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  {wall:.1} s wall, {cpu:.1} s CPU (this process)");
}

/// One connection attempt from the client (to wake the listener).
fn measure_once(client_ns: &str) -> bool {
    let ns = client_ns.to_string();
    std::thread::spawn(move || {
        enter(&ns);
        std::net::TcpStream::connect_timeout(
            &SocketAddr::V4(SocketAddrV4::new(NODE_IP, PORT)),
            Duration::from_secs(1),
        )
        .is_ok()
    })
    .join()
    .unwrap_or(false)
}

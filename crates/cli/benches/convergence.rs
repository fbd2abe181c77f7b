//! Convergence: a site pushed to etcd reaches 20 agents, each in its own
//! network namespace — time from `rampart push` until `rampart status
//! --etcd` says every node runs the new revision. Target < 1 s.
//! `cargo bench -p rampart-cli --bench convergence` (root; etcd-server).
//!
//! Each round changes one line of the cluster's `management` IP set (every
//! node's ruleset changes), runs `rampart push` (a process: full check,
//! one etcd transaction) and then watches the nodes' status records from
//! this process (a range read every 5 ms; a `rampart status` process per
//! poll would cost 20-50 ms itself) until every agent reports the pushed
//! revision; `rampart status --etcd` then confirms (exit 0), untimed.
//! Printed: push, first and last agent, and what the agents' logs say one
//! apply cost them (compile, kernel, total).

use rampart_store::SiteStore;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_rampart");
const AGENTS: usize = 20;
const ROUNDS: usize = 7;

struct Ns(String);
impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_site(p: &Path, marker: &str) {
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    let mut toml = String::new();
    for i in 0..AGENTS {
        let n = format!("hv{i}");
        std::fs::create_dir_all(p.join(format!("nodes/{n}"))).unwrap();
        std::fs::write(
            p.join(format!("nodes/{n}/host.fw")),
            "[OPTIONS]\nenable: 1\n",
        )
        .unwrap();
        toml.push_str(&format!(
            "[[node]]\nname = \"{n}\"\nbridges = {{ vmbr0 = [\"192.0.2.{}/24\"] }}\n",
            10 + i
        ));
    }
    std::fs::write(p.join("site.toml"), toml).unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        format!("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n{marker}\n\n[RULES]\nIN HTTP(ACCEPT)\n"),
    )
    .unwrap();
}

/// The log without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\x1b' {
            for d in it.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn run(args: &[&str]) -> bool {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn main() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("convergence: skipped (needs root for namespaces)");
        return;
    }
    let etcd = rampart_store::testing::Etcd::start();
    let url = etcd.endpoint();
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let site_s = site.to_str().unwrap().to_string();
    write_site(&site, "203.0.113.1");
    assert!(run(&[
        "push", &site_s, "--etcd", &url, "--prefix", "/bench"
    ]));
    let mut nss = Vec::new();
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let ns = Ns(format!("rproofs-conv-{}-{i}", std::process::id()));
        assert!(Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success());
        let state = tmp.path().join(format!("state{i}"));
        agents.push(Proc(
            Command::new(BIN)
                .args([
                    "agent",
                    "--etcd",
                    &url,
                    "--prefix",
                    "/bench",
                    "--node",
                    &format!("hv{i}"),
                ])
                .arg("--state-dir")
                .arg(&state)
                .args(["--netns", &ns.0, "--interval", "60"])
                .env("RAMPART_LOG", "info")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(tmp.path().join(format!("agent{i}.log"))).unwrap())
                .spawn()
                .unwrap(),
        ));
        nss.push(ns);
    }
    let store = rampart_store::EtcdStore::connect(vec![url.clone()], "/bench").expect("etcd");
    // Seconds since `t` until every agent reports `rev`; also when the first did.
    let wait_all = |rev: &str, t: Instant, limit: Duration| -> Option<(Duration, Duration)> {
        let mut first = None;
        loop {
            if let Ok(st) = store.statuses() {
                let n = st
                    .values()
                    .filter(|s| s.applied_revision.as_deref() == Some(rev) && s.errors.is_empty())
                    .count();
                if n > 0 && first.is_none() {
                    first = Some(t.elapsed());
                }
                if n == AGENTS {
                    return Some((first.unwrap(), t.elapsed()));
                }
            }
            if t.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let status_ok = || run(&["status", "--etcd", &url, "--prefix", "/bench"]);
    let rev0 = store.load().expect("site").revision;
    assert!(
        wait_all(&rev0, Instant::now(), Duration::from_secs(120)).is_some(),
        "agents never converged"
    );
    assert!(
        status_ok(),
        "rampart status disagrees after the first convergence"
    );
    let (mut push_t, mut first_t, mut all_t) = (Vec::new(), Vec::new(), Vec::new());
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for r in 0..ROUNDS {
        write_site(&site, &format!("203.0.113.{}", r + 2));
        let t = Instant::now();
        assert!(run(&[
            "push", &site_s, "--etcd", &url, "--prefix", "/bench"
        ]));
        push_t.push(t.elapsed());
        let rev = store.load().expect("site").revision;
        let (first, all) = wait_all(&rev, t, Duration::from_secs(60))
            .unwrap_or_else(|| panic!("round {r}: the agents never reported revision {rev}"));
        first_t.push(first);
        all_t.push(all);
        assert!(status_ok(), "round {r}: rampart status disagrees");
        // Let the machine settle between rounds.
        std::thread::sleep(Duration::from_millis(300));
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let med = |mut v: Vec<Duration>| {
        v.sort();
        (ms(v[v.len() / 2]), ms(v[0]), ms(v[v.len() - 1]))
    };
    let (all_m, all_min, all_max) = med(all_t);
    let cpus = std::thread::available_parallelism().map_or(1, |c| c.get());
    let load = |s: &str| s.split_whitespace().next().unwrap_or("?").to_string();
    println!(
        "convergence: push -> all {AGENTS} agents report the revision: median {all_m:.0} ms (min {all_min:.0}, max {all_max:.0}) over {ROUNDS} pushes (target < 1000 ms); \
         {cpus} CPUs, load average {} -> {}",
        load(&load_before),
        load(&load_after)
    );
    println!(
        "  of which: `rampart push` {:.0} ms; first agent reports at {:.0} ms (medians)",
        med(push_t).0,
        med(first_t).0
    );
    // The agents' own account of each apply (their `applied` log lines).
    let (mut plan_ms, mut kernel_ms, mut total_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..AGENTS {
        let log = strip_ansi(
            &std::fs::read_to_string(tmp.path().join(format!("agent{i}.log"))).unwrap_or_default(),
        );
        for l in log.lines().filter(|l| l.contains("applied")) {
            let field = |k: &str| -> Option<f64> {
                let at = l.find(&format!("{k}="))? + k.len() + 1;
                l[at..]
                    .split(|c: char| c.is_whitespace())
                    .next()?
                    .parse()
                    .ok()
            };
            if let (Some(p), Some(k), Some(t)) =
                (field("plan_ms"), field("kernel_ms"), field("total_ms"))
            {
                plan_ms.push(p);
                kernel_ms.push(k);
                total_ms.push(t);
            }
        }
    }
    if !total_ms.is_empty() {
        let m = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        println!(
            "  one agent's apply (its log, median of {}): compile+guard {:.0} ms, kernel {:.0} ms, total {:.0} ms; \
             {AGENTS} agents share {cpus} CPUs",
            total_ms.len(),
            m(plan_ms),
            m(kernel_ms),
            m(total_ms)
        );
    }
    drop(agents);
}

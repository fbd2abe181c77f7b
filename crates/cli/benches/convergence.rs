//! Convergence: a site pushed to etcd reaches 20 agents, each in its own
//! network namespace — time from `rampart push` until `rampart status
//! --etcd` says every node runs the new revision. Target < 1 s.
//! `cargo bench -p rampart-cli --bench convergence` (root; etcd-server).
//! The status poll itself costs ~20-50 ms per round on a loaded machine.

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
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        nss.push(ns);
    }
    let converged = || run(&["status", "--etcd", &url, "--prefix", "/bench"]);
    let t = Instant::now();
    while !converged() {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "agents never converged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut times = Vec::new();
    for r in 0..ROUNDS {
        write_site(&site, &format!("203.0.113.{}", r + 2));
        let t = Instant::now();
        assert!(run(&[
            "push", &site_s, "--etcd", &url, "--prefix", "/bench"
        ]));
        while !converged() {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "round {r} never converged"
            );
        }
        times.push(t.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "convergence: push -> all {AGENTS} agents report the revision: median {:.0} ms, max {:.0} ms, min {:.0} ms over {ROUNDS} pushes (target < 1000 ms)",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(times[0])
    );
    drop(agents);
}

//! `rampart agent` and `rampart push` against the real kernel (in network
//! namespaces the tests create) and a real etcd (rampart_store::testing).
//! Every agent started here is killed on drop; every namespace removed.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{is_root, Ns};

impl Ns {
    fn lo_up(&self) {
        assert!(Command::new("ip")
            .args(["-n", &self.0, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
    }
    fn table(&self) -> Option<String> {
        let o = self.nft(&["-s", "list", "table", "inet", "rampart"]);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
    }
    /// Rule lines with a verdict: an empty (flushed) table has none.
    fn rules(&self) -> usize {
        self.table()
            .map(|t| {
                t.lines()
                    .filter(|l| l.contains("accept") || l.contains("drop") || l.contains("jump"))
                    .filter(|l| !l.contains("policy"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// A running `rampart agent`, killed on drop.
struct AgentProc(Child);
impl AgentProc {
    fn term(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let t = Instant::now();
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "agent did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .env("RAMPART_LOG", "info")
        .output()
        .unwrap()
}

fn spawn_agent(args: &[&str]) -> AgentProc {
    AgentProc(
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .arg("agent")
            .args(args)
            .env("RAMPART_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A site with nodes `hv1` (and `hv2`); `marker` is an extra address in the
/// management set, so each revision's ruleset is recognisable.
fn write_site(p: &Path, nodes: &[&str], marker: &str) {
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    let mut toml = String::new();
    for (i, n) in nodes.iter().enumerate() {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET /metrics on 127.0.0.1:port inside network namespace `ns` (the agent
/// binds its metrics port in the namespace it manages).
fn metrics_in(ns: Option<&str>, port: u16) -> String {
    use std::io::{Read, Write};
    let connect = || std::net::TcpStream::connect(("127.0.0.1", port));
    let conn = match ns {
        None => connect(),
        Some(ns) => {
            let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
            std::thread::scope(|sc| {
                sc.spawn(|| {
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                    connect()
                })
                .join()
                .unwrap()
            })
        }
    };
    let Ok(mut s) = conn else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn once_applies_refuses_bad_edits_and_keeps_the_ruleset_when_the_site_goes() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("once");
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site, &["hv1"], "203.0.113.7");
    let args = |extra: &str| {
        vec![
            "agent".to_owned(),
            "--site".into(),
            site.to_str().unwrap().into(),
            "--node".into(),
            "hv1".into(),
            "--state-dir".into(),
            state.path().to_str().unwrap().into(),
            "--netns".into(),
            ns.0.clone(),
            "--once".into(),
            extra.into(),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
    };
    let run = |extra: &str| {
        let a = args(extra);
        rampart(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let o = run("");
    assert!(o.status.success(), "{}", text(&o));
    let applied = ns.table().expect("the agent applied the table");
    assert!(applied.contains("203.0.113.7"), "{applied}");
    // The status went to the state dir.
    let st = std::fs::read_to_string(state.path().join("status/hv1.json")).unwrap();
    assert!(st.contains("plan_hash"), "{st}");

    // An invalid edit: refused (exit 1), the old table stays.
    std::fs::write(
        site.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolciy_in: DROP\n",
    )
    .unwrap();
    let o = run("");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not applied"), "{}", text(&o));
    assert_eq!(ns.table().as_deref(), Some(applied.as_str()));
    let st = std::fs::read_to_string(state.path().join("status/hv1.json")).unwrap();
    assert!(st.contains("error"), "the refusal is in the status: {st}");

    // A lock-out (management blacklisted): the guard refuses, table stays.
    write_site(&site, &["hv1"], "203.0.113.8");
    let mut fw = std::fs::read_to_string(site.join("firewall/cluster.fw")).unwrap();
    fw.push_str("\n[IPSET blacklist]\n198.51.100.0/24\n");
    std::fs::write(site.join("firewall/cluster.fw"), fw).unwrap();
    let o = run("");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("lock out"), "{}", text(&o));
    assert_eq!(ns.table().as_deref(), Some(applied.as_str()));

    // The site directory disappears: failure (exit 2), never "firewall off".
    std::fs::remove_dir_all(&site).unwrap();
    let o = run("");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(ns.table().as_deref(), Some(applied.as_str()));
}

#[test]
fn the_loop_follows_edits_repairs_drift_and_leaves_the_ruleset_on_exit() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("loop");
    ns.lo_up();
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site, &["hv1"], "203.0.113.7");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut agent = spawn_agent(&[
        "--site",
        site.to_str().unwrap(),
        "--node",
        "hv1",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--netns",
        &ns.0,
        "--interval",
        "0.5",
        "--metrics-listen",
        &listen,
    ]);
    wait_until(Duration::from_secs(20), "first apply", || {
        ns.table().is_some_and(|t| t.contains("203.0.113.7"))
            && state.path().join("last-good.plan").exists()
    });
    let full = ns.rules();
    assert!(full > 0);

    // An edit is applied.
    write_site(&site, &["hv1"], "203.0.113.9");
    wait_until(Duration::from_secs(20), "edit applied", || {
        ns.table().is_some_and(|t| t.contains("203.0.113.9"))
    });

    // A broken edit is not; the last good ruleset stays.
    std::fs::write(
        site.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolciy_in: DROP\n",
    )
    .unwrap();
    wait_until(Duration::from_secs(20), "refusal counted", || {
        metrics_in(Some(&ns.0), port).contains("rampart_refusals_total 1")
    });
    assert!(ns.table().is_some_and(|t| t.contains("203.0.113.9")));

    // Drift: someone flushes the table; the loop repairs it.
    assert!(ns
        .nft(&["flush", "table", "inet", "rampart"])
        .status
        .success());
    assert_eq!(ns.rules(), 0);
    wait_until(Duration::from_secs(20), "drift repaired", || {
        ns.rules() == full
    });
    // The kernel runs the repaired table before the apply returns and counts.
    wait_until(Duration::from_secs(10), "repair counted", || {
        metrics_in(Some(&ns.0), port).contains("rampart_drift_repairs_total 1")
    });
    let m = metrics_in(Some(&ns.0), port);
    assert!(m.contains("rampart_applies_total 3"), "{m}");
    assert!(m.contains("rampart_plan_info{hash=\""), "{m}");
    assert!(m.contains("rampart_last_apply_duration_seconds"), "{m}");

    // The site disappears: the ruleset stays.
    std::fs::remove_dir_all(&site).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(ns.table().is_some_and(|t| t.contains("203.0.113.9")));

    // SIGTERM: a clean exit that leaves the ruleset in place.
    let st = agent.term();
    assert!(st.success(), "{st:?}");
    assert!(ns.table().is_some_and(|t| t.contains("203.0.113.9")));
}

#[test]
fn etcd_push_two_agents_converge_and_survive_an_etcd_outage() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut etcd = rampart_store::testing::Etcd::start();
    let url = etcd.endpoint().to_string();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site, &["hv1", "hv2"], "203.0.113.7");

    // push refuses a site with errors and writes nothing.
    let bad = dir.path().join("bad");
    write_site(&bad, &["hv1"], "203.0.113.7");
    std::fs::write(
        bad.join("firewall/cluster.fw"),
        "[OPTIONS]\npolciy_in: DROP\n",
    )
    .unwrap();
    let o = rampart(&[
        "push",
        bad.to_str().unwrap(),
        "--etcd",
        &url,
        "--prefix",
        "/t",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = rampart(&[
        "push",
        site.to_str().unwrap(),
        "--etcd",
        &url,
        "--prefix",
        "/t",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let nss = [Ns::new("e1"), Ns::new("e2")];
    let states = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut agents: Vec<AgentProc> = ["hv1", "hv2"]
        .iter()
        .enumerate()
        .map(|(i, node)| {
            spawn_agent(&[
                "--etcd",
                &url,
                "--prefix",
                "/t",
                "--node",
                node,
                "--state-dir",
                states[i].path().to_str().unwrap(),
                "--netns",
                &nss[i].0,
                "--interval",
                "1",
            ])
        })
        .collect();
    for ns in &nss {
        wait_until(Duration::from_secs(30), "agent applied", || {
            ns.table().is_some_and(|t| t.contains("203.0.113.7"))
        });
    }
    let status = || rampart(&["status", "--etcd", &url, "--prefix", "/t"]);
    wait_until(Duration::from_secs(20), "both report the revision", || {
        status().status.success()
    });
    let t = text(&status());
    assert!(t.contains("hv1") && t.contains("hv2"), "{t}");

    // etcd stops: the rulesets stay.
    etcd.stop();
    std::thread::sleep(Duration::from_secs(3));
    for ns in &nss {
        assert!(ns.table().is_some_and(|t| t.contains("203.0.113.7")));
    }
    // It comes back; a new revision reaches both agents.
    etcd.restart();
    write_site(&site, &["hv1", "hv2"], "203.0.113.77");
    wait_until(Duration::from_secs(20), "push after restart", || {
        rampart(&[
            "push",
            site.to_str().unwrap(),
            "--etcd",
            &url,
            "--prefix",
            "/t",
        ])
        .status
        .success()
    });
    for ns in &nss {
        wait_until(
            Duration::from_secs(30),
            "agent converged after outage",
            || ns.table().is_some_and(|t| t.contains("203.0.113.77")),
        );
    }
    wait_until(
        Duration::from_secs(20),
        "both report the new revision",
        || status().status.success(),
    );
    for a in &mut agents {
        assert!(a.term().success());
    }
}

#[test]
fn sighup_reloads_and_repairs_now_and_remove_on_exit_removes() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("hup");
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site, &["hv1"], "203.0.113.7");
    let mut agent = spawn_agent(&[
        "--site",
        site.to_str().unwrap(),
        "--node",
        "hv1",
        "--state-dir",
        state.path().to_str().unwrap(),
        "--netns",
        &ns.0,
        "--interval",
        "3600",
        "--remove-on-exit",
    ]);
    // Applied and recorded (the kernel shows the new sets a moment before
    // the apply ends: they are staged first, then switched to).
    wait_until(Duration::from_secs(20), "first apply", || {
        ns.table().is_some_and(|t| t.contains("203.0.113.7"))
            && state.path().join("last-good.plan").exists()
    });
    let full = ns.rules();
    assert!(ns
        .nft(&["flush", "table", "inet", "rampart"])
        .status
        .success());
    // No drift check for an hour, unless SIGHUP asks for one now.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(ns.rules(), 0);
    let _ = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status();
    wait_until(Duration::from_secs(10), "SIGHUP repaired the drift", || {
        ns.rules() == full
    });
    // --remove-on-exit: the explicit choice removes rampart's table.
    assert!(agent.term().success());
    assert!(ns.table().is_none(), "table removed on exit");
}

#[test]
fn kill_9_leaves_the_ruleset_and_a_restarted_agent_does_not_reapply() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("k9");
    ns.lo_up();
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site, &["hv1"], "203.0.113.7");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let st = state.path().to_str().unwrap().to_owned();
    let args = [
        "--site",
        site.to_str().unwrap(),
        "--node",
        "hv1",
        "--state-dir",
        &st,
        "--netns",
        &ns.0,
        "--interval",
        "0.5",
        "--remove-on-exit",
        "--metrics-listen",
        &listen,
    ];
    let mut agent = spawn_agent(&args);
    wait_until(Duration::from_secs(20), "first apply", || {
        metrics_in(Some(&ns.0), port).contains("rampart_applies_total 1")
    });
    let before = ns.table().unwrap();
    // kill -9: no exit handler runs, not even --remove-on-exit.
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    assert_eq!(ns.table().as_deref(), Some(before.as_str()));
    // A new agent finds the same plan running: nothing re-applied.
    let _agent2 = spawn_agent(&args);
    wait_until(Duration::from_secs(20), "second agent up", || {
        metrics_in(Some(&ns.0), port).contains("rampart_plan_info")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let m = metrics_in(Some(&ns.0), port);
    assert!(m.contains("rampart_applies_total 0"), "{m}");
    assert_eq!(ns.table().as_deref(), Some(before.as_str()));
}

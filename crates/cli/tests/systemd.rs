//! `rampart agent` as systemd runs it: readiness, watchdog and reload
//! notifications to a `NOTIFY_SOCKET` the test binds, plain-text logs when
//! stderr is not a terminal, journal fields (through the journal's native
//! socket, bind-mounted from the test in a private mount namespace), and
//! the node name taken from the host name. Real kernel, in namespaces.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{is_root, journal_fields, under_journald, Ns};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_site(p: &Path, node: &str) {
    std::fs::create_dir_all(p.join("firewall")).unwrap();
    std::fs::create_dir_all(p.join(format!("nodes/{node}"))).unwrap();
    std::fs::write(
        p.join("site.toml"),
        format!("[[node]]\nname = \"{node}\"\nbridges = {{ vmbr0 = [\"192.0.2.10/24\"] }}\n"),
    )
    .unwrap();
    std::fs::write(
        p.join(format!("nodes/{node}/host.fw")),
        "[OPTIONS]\nenable: 1\n",
    )
    .unwrap();
    std::fs::write(
        p.join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n\n[RULES]\nIN HTTP(ACCEPT)\n",
    )
    .unwrap();
}

fn recv(rx: &UnixDatagram, deadline: Instant) -> Option<String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    rx.set_read_timeout(Some(left)).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = rx.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Messages until one satisfies `f` (returned with those before it).
fn until(rx: &UnixDatagram, limit: Duration, f: impl Fn(&str) -> bool) -> (Vec<String>, String) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    while let Some(m) = recv(rx, deadline) {
        if f(&m) {
            return (seen, m);
        }
        seen.push(m);
    }
    panic!("timed out; received {seen:?}");
}

#[test]
fn notify_socket_gets_ready_watchdog_and_reloading_then_ready_on_sighup() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("sdnotify");
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_site(&site, "hv1");
    let sock = tmp.path().join("notify");
    let rx = UnixDatagram::bind(&sock).unwrap();
    let mut agent = Killed(
        Command::new(env!("CARGO_BIN_EXE_rampart"))
            .args(["agent", "--site", site.to_str().unwrap(), "--node", "hv1"])
            .args(["--state-dir", tmp.path().join("state").to_str().unwrap()])
            .args(["--netns", &ns.0, "--interval", "3600"])
            .env("NOTIFY_SOCKET", &sock)
            // WatchdogSec=1s: a ping every 500 ms.
            .env("WATCHDOG_USEC", "1000000")
            .env_remove("WATCHDOG_PID")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until(&rx, Duration::from_secs(30), |m| m == "READY=1");
    // Pings keep coming at half the interval.
    let t = Instant::now();
    for _ in 0..3 {
        until(&rx, Duration::from_millis(1500), |m| m == "WATCHDOG=1");
    }
    assert!(
        t.elapsed() < Duration::from_millis(3000),
        "{:?}",
        t.elapsed()
    );

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1.
    let _ = Command::new("kill")
        .args(["-HUP", &agent.0.id().to_string()])
        .status();
    let (_, reloading) = until(&rx, Duration::from_secs(10), |m| {
        m.starts_with("RELOADING=1")
    });
    let usec: u64 = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"))
        .parse()
        .unwrap();
    assert!(usec > 0);
    let (between, _) = until(&rx, Duration::from_secs(10), |m| m == "READY=1");
    assert!(
        between.iter().all(|m| m == "WATCHDOG=1"),
        "between RELOADING and READY: {between:?}"
    );
    let _ = Command::new("kill")
        .args(["-TERM", &agent.0.id().to_string()])
        .status();
    until(&rx, Duration::from_secs(10), |m| m == "STOPPING=1");
    let _ = agent.0.wait();
}

#[test]
fn logs_have_no_ansi_escapes_when_stderr_is_not_a_terminal() {
    // A refused site: logged at error level (coloured on a terminal), no
    // kernel needed.
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_site(&site, "hv1");
    std::fs::write(
        site.join("firewall/cluster.fw"),
        "[OPTIONS]\npolciy_in: DROP\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args([
            "agent",
            "--site",
            site.to_str().unwrap(),
            "--node",
            "hv1",
            "--once",
        ])
        .args(["--state-dir", tmp.path().join("state").to_str().unwrap()])
        .env_remove("NO_COLOR")
        .env_remove("JOURNAL_STREAM")
        .env("RAMPART_LOG", "info")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("ERROR") && err.contains("not applied"),
        "{err}"
    );
    assert!(
        !err.contains('\x1b'),
        "ANSI escapes in piped stderr: {err:?}"
    );
}

#[test]
fn under_journald_logs_carry_node_and_revision_fields() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("journal");
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_site(&site, "hv1");
    let jdir = tmp.path().join("journal");
    std::fs::create_dir(&jdir).unwrap();
    let rx = UnixDatagram::bind(jdir.join("socket")).unwrap();
    let state = tmp.path().join("state");
    let o = under_journald(&jdir, &tmp.path().join("stderr"))
        .args([
            "agent",
            "--site",
            site.to_str().unwrap(),
            "--node",
            "hv1",
            "--once",
        ])
        .args(["--state-dir", state.to_str().unwrap(), "--netns", &ns.0])
        .output()
        .unwrap();
    let stderr = std::fs::read_to_string(tmp.path().join("stderr")).unwrap();
    assert!(o.status.success(), "{o:?} {stderr}");
    rx.set_nonblocking(true).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut entries = Vec::new();
    while let Ok(n) = rx.recv(&mut buf) {
        entries.push(journal_fields(&buf[..n]));
    }
    let applied = entries
        .iter()
        .find(|e| e.iter().any(|f| f.starts_with("MESSAGE=applied")))
        .unwrap_or_else(|| panic!("no 'applied' entry in {entries:?}"));
    let has = |f: &str| applied.iter().any(|x| x == f);
    assert!(has("NODE=hv1"), "{applied:?}");
    assert!(has("SYSLOG_IDENTIFIER=rampart"), "{applied:?}");
    assert!(has("PRIORITY=6"), "{applied:?}");
    let rev = applied
        .iter()
        .find_map(|l| l.strip_prefix("REVISION="))
        .unwrap_or_else(|| panic!("no REVISION= in {applied:?}"));
    assert_eq!(rev.len(), 64, "{rev}");
    // The journal has it all: nothing went to stderr as well.
    assert!(!stderr.contains("applied"), "{stderr}");
}

#[test]
fn without_node_the_agent_is_the_host_named_node() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = Ns::new("hostname");
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    write_site(&site, "pve7");
    let state = tmp.path().join("state");
    // A host name of its own (UTS namespace): pve7.example.org is node pve7.
    let o = Command::new("unshare")
        .args([
            "--uts",
            "--",
            "sh",
            "-c",
            "hostname pve7.example.org && exec \"$@\"",
            "sh",
        ])
        .arg(env!("CARGO_BIN_EXE_rampart"))
        .args(["agent", "--site", site.to_str().unwrap(), "--once"])
        .args(["--state-dir", state.to_str().unwrap(), "--netns", &ns.0])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("node `pve7`: the host name"), "{err}");
    assert!(state.join("status/pve7.json").exists());
    let t = ns.nft(&["list", "table", "inet", "rampart"]);
    assert!(t.status.success(), "no table applied for pve7");
}

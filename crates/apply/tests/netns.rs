//! Real-kernel tests. Each test creates its own network namespaces (unique
//! names, removed on drop, also on failure) and never touches the root
//! namespace's ruleset, interfaces or routes.

use rampart_apply::{
    apply, confirm, rollback, status, ApplyOpts, Backend, Drift, Error, HostSystem, IpFamily, Plan,
    System, TableRef,
};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!(
            "rampart-ap-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        sh("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    fn try_exec(&self, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn sys(&self) -> HostSystem {
        HostSystem::in_netns(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rules(port: u16) -> String {
    format!(
        "table inet rampart {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    tcp dport {port} counter drop comment \"test rule {port}\"\n  }}\n}}\n"
    )
}

fn plan(port: u16) -> Plan {
    let mut p = Plan::nftables("node1".parse().unwrap(), rules(port));
    p.meta.origin_revision = format!("rev-{port}");
    p
}

fn listing(ns: &Netns) -> String {
    ns.exec(&["nft", "list", "table", "inet", "rampart"])
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn apply_in_namespace_reads_back_and_leaves_other_tables_alone() {
    let ns = Netns::new("rb");
    ns.exec(&["nft", "add", "table", "inet", "other"]);
    ns.exec(&["nft", "add", "chain", "inet", "other", "keep"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("missing/state");
    let out = apply(&ns.sys(), &plan(2222), &ApplyOpts::new(&dir)).unwrap();
    assert!(listing(&ns).contains("tcp dport 2222"));
    assert!(ns
        .exec(&["nft", "list", "tables"])
        .contains("table inet other"));
    assert!(ns
        .exec(&["nft", "list", "table", "inet", "other"])
        .contains("chain keep"));
    // Re-apply with another port: replaced, not appended.
    apply(&ns.sys(), &plan(2223), &ApplyOpts::new(&dir)).unwrap();
    let l = listing(&ns);
    assert!(
        l.contains("tcp dport 2223") && !l.contains("tcp dport 2222"),
        "{l}"
    );
    // State: a missing dir is created 0700; records are 0600.
    assert_eq!(mode(&dir), 0o700);
    // An existing directory open to others is closed.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    status(&ns.sys(), &dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for f in ["current.plan", "last-good.plan", "previous.plan"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    let st = status(&ns.sys(), &dir).unwrap();
    let cur = st.current.unwrap();
    assert_eq!(cur.plan_hash, plan(2223).content_hash());
    assert_eq!(cur.plan.meta.origin_revision, "rev-2223");
    assert_eq!(st.drift, Drift::InSync);
    assert!(st.pending.is_none());
    assert_ne!(out.applied.plan_hash, cur.plan_hash);
}

#[test]
fn plan_touching_foreign_tables_is_refused() {
    let ns = Netns::new("fo");
    let tmp = tempfile::tempdir().unwrap();
    let mut p = plan(1);
    p.ruleset.push_str("flush ruleset\n");
    let e = apply(&ns.sys(), &p, &ApplyOpts::new(tmp.path())).unwrap_err();
    assert!(matches!(e, Error::InvalidPlan(_)), "{e}");
    let p = Plan::nftables("n".parse().unwrap(), "table ip filter { }\n");
    assert!(matches!(
        apply(&ns.sys(), &p, &ApplyOpts::new(tmp.path())),
        Err(Error::InvalidPlan(_))
    ));
    assert!(!ns.exec(&["nft", "list", "tables"]).contains("filter"));
}

#[test]
fn invalid_second_half_keeps_the_old_ruleset() {
    let ns = Netns::new("bad");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let before = listing(&ns);
    let current_before = std::fs::read(tmp.path().join("current.plan")).unwrap();

    // Through apply: caught by the check, nothing applied.
    let mut p = plan(2222);
    p.ruleset
        .push_str("add rule inet rampart input jump no_such_chain\n");
    let e = apply(&ns.sys(), &p, &opts).unwrap_err();
    assert!(matches!(e, Error::CheckFailed(_)), "{e}");
    assert_eq!(listing(&ns), before);
    assert_eq!(
        std::fs::read(tmp.path().join("current.plan")).unwrap(),
        current_before
    );

    // Straight to the kernel, no check: the transaction deletes the table,
    // recreates it, then fails in its second half. The kernel keeps the old one.
    let script = format!(
        "add table inet rampart\ndelete table inet rampart\n{}add rule inet rampart input jump no_such_chain\n",
        rules(2222)
    );
    assert!(ns.sys().nft_apply(&script).is_err());
    assert_eq!(listing(&ns), before);
}

/// The real system with one fault injected: the kernel step gets a broken
/// second half that the check never saw (`nft` failing mid-apply), or the
/// scheduled revert is lost (a reboot before the deadline).
struct Faulty(HostSystem, Fault);

#[derive(PartialEq)]
enum Fault {
    KernelFails,
    TimerLost,
}

impl System for Faulty {
    fn nft_check(&self, s: &str) -> Result<(), Error> {
        self.0.nft_check(s)
    }
    fn nft_apply(&self, s: &str) -> Result<(), Error> {
        if self.1 == Fault::KernelFails {
            self.0.nft_apply(&format!(
                "{s}add rule inet rampart input jump no_such_chain\n"
            ))
        } else {
            self.0.nft_apply(s)
        }
    }
    fn nft_tables(&self) -> Result<Vec<TableRef>, Error> {
        self.0.nft_tables()
    }
    fn nft_list_json(&self, a: &[&str]) -> Result<String, Error> {
        self.0.nft_list_json(a)
    }
    fn nft_list_table(&self, t: &TableRef) -> Result<String, Error> {
        self.0.nft_list_table(t)
    }
    fn ipt_check(&self, f: IpFamily, t: &str) -> Result<(), Error> {
        self.0.ipt_check(f, t)
    }
    fn ipt_restore(&self, f: IpFamily, t: &str) -> Result<(), Error> {
        self.0.ipt_restore(f, t)
    }
    fn ipt_save(&self, f: IpFamily) -> Result<String, Error> {
        self.0.ipt_save(f)
    }
    fn ipset_restore(&self, t: &str) -> Result<(), Error> {
        self.0.ipset_restore(t)
    }
    fn sysctl_get(&self, k: &str) -> Result<String, Error> {
        self.0.sysctl_get(k)
    }
    fn sysctl_set(&self, k: &str, v: &str) -> Result<(), Error> {
        self.0.sysctl_set(k, v)
    }
    fn exec_prefix(&self) -> Vec<String> {
        self.0.exec_prefix()
    }
    fn programs(&self) -> rampart_apply::Programs {
        self.0.programs()
    }
    fn schedule(&self, s: &Path, d: u64, u: &str) -> Result<String, Error> {
        if self.1 == Fault::TimerLost {
            return Ok("lost".into());
        }
        self.0.schedule(s, d, u)
    }
}

#[test]
fn kernel_failure_mid_apply_keeps_old_ruleset_sysctls_and_state() {
    let ns = Netns::new("kf");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let before = listing(&ns);
    let fwd = ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap();
    assert_eq!(fwd, "0");
    let mut p = plan(2222);
    // A tightening change would run before the ruleset; the opposite after.
    p.sysctls
        .insert("net.ipv4.conf.all.rp_filter".into(), "1".into());
    p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    let rp = ns.sys().sysctl_get("net.ipv4.conf.all.rp_filter").unwrap();
    let e = apply(&Faulty(ns.sys(), Fault::KernelFails), &p, &opts).unwrap_err();
    assert!(matches!(e, Error::ApplyFailed(_)), "{e}");
    assert_eq!(listing(&ns), before);
    assert_eq!(ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
    assert_eq!(
        ns.sys().sysctl_get("net.ipv4.conf.all.rp_filter").unwrap(),
        rp
    );
    let st = status(&ns.sys(), tmp.path()).unwrap();
    assert_eq!(st.current.unwrap().plan_hash, plan(1111).content_hash());
    assert_eq!(st.drift, Drift::InSync);
}

#[test]
fn sysctls_are_applied_and_restored_when_dropped() {
    let ns = Netns::new("sc");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    let mut p = plan(1);
    p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    let out = apply(&ns.sys(), &p, &opts).unwrap();
    assert_eq!(
        out.sysctls_after,
        vec![("net.ipv4.ip_forward".into(), "1".into())]
    );
    assert_eq!(ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let mut q = plan(1);
    q.sysctls.clear();
    let out = apply(&ns.sys(), &q, &opts).unwrap();
    // Dropping the key restores the value from before rampart, and closing
    // forwarding happens before the ruleset.
    assert_eq!(
        out.sysctls_before,
        vec![("net.ipv4.ip_forward".into(), "0".into())]
    );
    assert_eq!(ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
}

#[test]
fn rollback_returns_to_last_good() {
    let ns = Netns::new("rbk");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    assert!(matches!(rollback(&ns.sys(), &opts), Err(Error::NoLastGood)));
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    // An unconfirmed change is not "good": rollback goes back past it and
    // cancels its pending revert.
    let o = ApplyOpts {
        confirm: Some(5),
        ..opts.clone()
    };
    apply(&ns.sys(), &plan(2222), &o).unwrap();
    assert!(listing(&ns).contains("dport 2222"));
    assert!(status(&ns.sys(), tmp.path()).unwrap().pending.is_some());
    let out = rollback(&ns.sys(), &opts).unwrap();
    assert_eq!(out.applied.plan_hash, plan(1111).content_hash());
    assert!(listing(&ns).contains("dport 1111"));
    assert!(!listing(&ns).contains("dport 2222"));
    let st = status(&ns.sys(), tmp.path()).unwrap();
    assert!(st.pending.is_none());
    assert_eq!(st.current.unwrap().plan_hash, plan(1111).content_hash());
}

#[test]
fn drift_is_reported_after_a_manual_flush() {
    let ns = Netns::new("dr");
    let tmp = tempfile::tempdir().unwrap();
    apply(&ns.sys(), &plan(1111), &ApplyOpts::new(tmp.path())).unwrap();
    // Counters moving is not drift.
    ns.try_exec(&[
        "timeout",
        "0.5",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/1111",
    ]);
    assert!(
        !listing(&ns).contains("counter packets 0 "),
        "{}",
        listing(&ns)
    );
    assert_eq!(status(&ns.sys(), tmp.path()).unwrap().drift, Drift::InSync);
    ns.exec(&["nft", "flush", "table", "inet", "rampart"]);
    let st = status(&ns.sys(), tmp.path()).unwrap();
    assert!(matches!(st.drift, Drift::Drifted { .. }), "{:?}", st.drift);
    // Re-applying repairs it.
    apply(&ns.sys(), &plan(1111), &ApplyOpts::new(tmp.path())).unwrap();
    assert_eq!(status(&ns.sys(), tmp.path()).unwrap().drift, Drift::InSync);
}

fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Not a test on its own: the body of the child process that applies with
/// `--confirm` and is then killed with SIGKILL by its parent.
#[test]
fn child_apply_helper() {
    let Ok(args) = std::env::var("RAMPART_APPLY_CHILD") else {
        return;
    };
    let v: Vec<&str> = args.split('\u{1f}').collect();
    let (ns, dir, plan_path, secs) = (v[0], v[1], v[2], v[3]);
    let p: Plan = serde_json::from_slice(&std::fs::read(plan_path).unwrap()).unwrap();
    let opts = ApplyOpts {
        confirm: Some(secs.parse().unwrap()),
        ..ApplyOpts::new(dir)
    };
    apply(&HostSystem::in_netns(ns), &p, &opts).unwrap();
    println!("RAMPART-APPLIED");
    std::thread::sleep(Duration::from_secs(120));
}

/// Apply from a child process with `--confirm secs`, then kill -9 the
/// child's whole process group as soon as apply returned (what a dying SSH
/// session does to the commands it started, only harsher).
fn apply_in_child_and_kill(ns: &Netns, dir: &Path, p: &Plan, secs: u64) -> Instant {
    let plan_path = dir.with_extension("plan.json");
    std::fs::write(&plan_path, serde_json::to_vec(p).unwrap()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_apply_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            "RAMPART_APPLY_CHILD",
            format!(
                "{}\u{1f}{}\u{1f}{}\u{1f}{secs}",
                ns.name,
                dir.display(),
                plan_path.display()
            ),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut applied = false;
    for line in BufReader::new(out).lines() {
        if line.unwrap().contains("RAMPART-APPLIED") {
            applied = true;
            break;
        }
    }
    let t = Instant::now();
    let group = format!("-{}", child.id());
    sh("kill", &["-KILL", "--", &group]);
    child.wait().unwrap();
    assert!(applied, "child did not apply");
    t
}

#[test]
fn confirm_timeout_reverts_after_the_applier_is_killed() {
    let ns = Netns::new("rv");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    apply(&ns.sys(), &plan(1111), &ApplyOpts::new(&dir)).unwrap();
    let mut p = plan(2222);
    p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    let killed = apply_in_child_and_kill(&ns, &dir, &p, 2);
    assert!(listing(&ns).contains("dport 2222"));
    assert_eq!(ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let st = status(&ns.sys(), &dir).unwrap();
    let pending = st.pending.expect("pending confirmation");
    assert_eq!(pending.plan_hash, p.content_hash());
    wait_until(Duration::from_secs(5), || {
        listing(&ns).contains("dport 1111")
    })
    .expect("previous ruleset restored");
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(3500),
        "took {took:?} after the kill"
    );
    assert!(!listing(&ns).contains("dport 2222"));
    assert_eq!(ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
    wait_until(Duration::from_secs(2), || {
        status(&ns.sys(), &dir).unwrap().last_reverted.is_some()
    })
    .expect("revert recorded");
    let st = status(&ns.sys(), &dir).unwrap();
    assert!(st.pending.is_none());
    assert_eq!(st.current.unwrap().plan_hash, plan(1111).content_hash());
    assert_eq!(st.drift, Drift::InSync);
    assert!(matches!(
        confirm(&dir, Some("new")),
        Err(Error::AlreadyReverted(_))
    ));
}

#[test]
fn confirm_timeout_on_first_apply_removes_the_tables() {
    let ns = Netns::new("rv0");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts {
        confirm: Some(1),
        ..ApplyOpts::new(tmp.path())
    };
    apply(&ns.sys(), &plan(2222), &opts).unwrap();
    assert!(listing(&ns).contains("dport 2222"));
    wait_until(Duration::from_secs(4), || {
        !ns.exec(&["nft", "list", "tables"]).contains("rampart")
    })
    .expect("tables removed");
    wait_until(Duration::from_secs(2), || {
        status(&ns.sys(), tmp.path()).unwrap().current.is_none()
    })
    .expect("no current plan after revert");
}

#[test]
fn confirm_cancels_the_revert() {
    let ns = Netns::new("cf");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    apply(&ns.sys(), &plan(1111), &ApplyOpts::new(&dir)).unwrap();
    let opts = ApplyOpts {
        confirm: Some(2),
        session: Some("10.0.0.9 50000 10.0.0.1 22".into()),
        ..ApplyOpts::new(&dir)
    };
    let out = apply(&ns.sys(), &plan(2222), &opts).unwrap();
    let pending = out.pending.unwrap();
    assert!(pending.deadline >= pending.applied_at + 2);
    // The revert's files are private: script 0700, the rest (its log too) 0600.
    let id = &pending.id;
    assert_eq!(mode(&dir.join(format!("revert-{id}.sh"))), 0o700);
    for f in ["rules", "current", "sh.log"] {
        assert_eq!(mode(&dir.join(format!("revert-{id}.{f}"))), 0o600, "{f}");
    }
    assert_eq!(mode(&dir.join(format!("pending-{id}.json"))), 0o600);
    // A second apply waits for the first to be settled.
    assert!(matches!(
        apply(&ns.sys(), &plan(3333), &ApplyOpts::new(&dir)),
        Err(Error::PendingConfirmation { .. })
    ));
    // Same SSH connection: refused.
    assert!(matches!(
        confirm(&dir, Some("10.0.0.9 50000 10.0.0.1 22")),
        Err(Error::SameSession(_))
    ));
    let c = confirm(&dir, Some("10.0.0.9 50001 10.0.0.1 22")).unwrap();
    assert_eq!(c.plan_hash, plan(2222).content_hash());
    std::thread::sleep(Duration::from_millis(3000));
    assert!(listing(&ns).contains("dport 2222"));
    let st = status(&ns.sys(), &dir).unwrap();
    assert!(st.pending.is_none() && st.last_reverted.is_none());
    assert_eq!(st.last_good_hash.unwrap(), plan(2222).content_hash());
    assert!(matches!(confirm(&dir, None), Err(Error::NothingPending)));
}

/// Client namespace + node namespace joined by a veth pair; a TCP listener on
/// the node's port 22.
struct Pair {
    client: Netns,
    node: Netns,
    listener: std::process::Child,
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = self.listener.kill();
        let _ = self.listener.wait();
    }
}

fn pair() -> Pair {
    let client = Netns::new("cl");
    let node = Netns::new("nd");
    let id = COUNTER.fetch_add(1, Ordering::SeqCst);
    let (a, b) = (
        format!("rpc{}{id}", std::process::id() % 10000),
        format!("rpn{}{id}", std::process::id() % 10000),
    );
    client.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    client.exec(&["ip", "link", "set", &b, "netns", &node.name]);
    client.exec(&["ip", "addr", "add", "10.250.0.1/24", "dev", &a]);
    client.exec(&["ip", "link", "set", &a, "up"]);
    node.exec(&["ip", "addr", "add", "10.250.0.2/24", "dev", &b]);
    node.exec(&["ip", "link", "set", &b, "up"]);
    let listener = Command::new("ip")
        .args(["netns", "exec", &node.name, "python3", "-c"])
        .arg(
            "import socket,threading\n\
             def serve(port):\n  s=socket.socket()\n  s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             \x20 s.bind(('10.250.0.2',port))\n  s.listen(4096)\n  while True:\n    c,_=s.accept()\n    c.close()\n\
             threading.Thread(target=serve,args=(23,),daemon=True).start()\nserve(22)\n",
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let p = Pair {
        client,
        node,
        listener,
    };
    wait_until(Duration::from_secs(5), || p.ssh_works()).expect("listener up");
    p
}

impl Pair {
    fn ssh_works(&self) -> bool {
        self.client.try_exec(&[
            "timeout",
            "1",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.250.0.2/22",
        ])
    }
}

#[test]
fn lockout_with_confirm_comes_back_by_itself() {
    let p = pair();
    let tmp = tempfile::tempdir().unwrap();
    let allow = Plan::nftables(
        "node".parse().unwrap(),
        "table inet rampart {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n  ct state established,related accept\n  tcp dport 22 accept\n }\n}\n",
    );
    apply(&p.node.sys(), &allow, &ApplyOpts::new(tmp.path())).unwrap();
    assert!(p.ssh_works(), "ssh allowed before the lock-out");
    let lockout = Plan::nftables(
        "node".parse().unwrap(),
        "table inet rampart {\n chain input {\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n  ct state established,related accept\n  tcp dport 22 drop\n }\n}\n",
    );
    let opts = ApplyOpts {
        confirm: Some(3),
        ..ApplyOpts::new(tmp.path())
    };
    let t0 = Instant::now();
    apply(&p.node.sys(), &lockout, &opts).unwrap();
    assert!(!p.ssh_works(), "the lock-out blocks the client");
    let back = wait_until(Duration::from_secs(8), || p.ssh_works()).expect("access came back");
    let total = t0.elapsed();
    assert!(
        total >= Duration::from_secs(2),
        "came back too early: {total:?}"
    );
    assert!(
        total < Duration::from_secs(6),
        "took {total:?} ({back:?} of polling)"
    );
    let st = status(&p.node.sys(), tmp.path()).unwrap();
    assert_eq!(st.current.unwrap().plan_hash, allow.content_hash());
}

#[test]
fn iptables_plan_with_legacy_file_backup_and_recovery_command() {
    let ns = Netns::new("ipt");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sysconfig-iptables");
    let old = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 1111 -j DROP\nCOMMIT\n";
    std::fs::write(&file, old).unwrap();
    ns.exec(&[
        "sh",
        "-c",
        &format!("iptables-restore < {}", file.display()),
    ]);
    let new = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -s 192.0.2.10/32 -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    let p = Plan {
        backend: Backend::Iptables,
        ..Plan::nftables("node".parse().unwrap(), new)
    };
    let opts = ApplyOpts {
        legacy_file: Some(file.clone()),
        ..ApplyOpts::new(tmp.path().join("state"))
    };
    let out = apply(&ns.sys(), &p, &opts).unwrap();
    let saved = ns.exec(&["iptables-save"]);
    assert!(
        saved.contains("192.0.2.10/32") && saved.contains(":INPUT DROP"),
        "{saved}"
    );
    let lw = out.legacy.into_iter().next().unwrap();
    let backup = lw.backup.unwrap();
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), old);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), new);
    let first = lw.recovery.lines().next().unwrap().to_string();
    assert_eq!(first, format!("iptables-restore < {}", backup.display()));
    assert_eq!(
        status(&ns.sys(), tmp.path().join("state")).unwrap().drift,
        Drift::InSync
    );
    // The printed recovery command works from a console.
    ns.exec(&["sh", "-c", &first]);
    let saved = ns.exec(&["iptables-save"]);
    assert!(
        saved.contains("--dport 1111") && !saved.contains("192.0.2.10"),
        "{saved}"
    );
    assert!(matches!(
        status(&ns.sys(), tmp.path().join("state")).unwrap().drift,
        Drift::Drifted { .. }
    ));
}

#[test]
fn iptables_confirm_timeout_restores_rules_and_file() {
    let ns = Netns::new("iptc");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("iptables");
    let old = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 1111 -j DROP\nCOMMIT\n";
    std::fs::write(&file, old).unwrap();
    ns.exec(&[
        "sh",
        "-c",
        &format!("iptables-restore < {}", file.display()),
    ]);
    let new = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p tcp -m tcp --dport 2222 -j DROP\nCOMMIT\n";
    let p = Plan {
        backend: Backend::Iptables,
        ..Plan::nftables("node".parse().unwrap(), new)
    };
    let opts = ApplyOpts {
        legacy_file: Some(file.clone()),
        confirm: Some(1),
        ..ApplyOpts::new(tmp.path().join("state"))
    };
    apply(&ns.sys(), &p, &opts).unwrap();
    assert!(ns.exec(&["iptables-save"]).contains("--dport 2222"));
    wait_until(Duration::from_secs(4), || {
        ns.exec(&["iptables-save"]).contains("--dport 1111")
    })
    .expect("rules restored");
    wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(&file).unwrap() == old
    })
    .expect("file restored");
    assert!(!ns.exec(&["iptables-save"]).contains("--dport 2222"));
}

#[test]
fn state_lock_refuses_a_live_holder_and_takes_over_a_dead_one() {
    let ns = Netns::new("lk");
    let tmp = tempfile::tempdir().unwrap();
    let state = rampart_apply::StateDir::open(tmp.path()).unwrap();
    {
        let _held = state.lock().unwrap();
        assert!(matches!(
            apply(&ns.sys(), &plan(1), &ApplyOpts::new(tmp.path())),
            Err(Error::Busy(_))
        ));
    }
    // A lock left by a process killed mid-apply (pid no longer exists).
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    std::fs::write(tmp.path().join("lock"), format!("{pid}\n")).unwrap();
    apply(&ns.sys(), &plan(1), &ApplyOpts::new(tmp.path())).unwrap();
    // A lock file naming a live, unrelated process (pid 1, as after a
    // reboot) does not block either: only a held flock does.
    std::fs::write(tmp.path().join("lock"), "1\n").unwrap();
    apply(&ns.sys(), &plan(2), &ApplyOpts::new(tmp.path())).unwrap();
    assert!(listing(&ns).contains("dport 2"));
}

#[test]
fn state_lock_held_by_another_process_refuses_until_it_is_killed() {
    let ns = Netns::new("lk2");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1), &opts).unwrap();
    // Another process holds the lock (flock(1) takes the same advisory
    // lock apply does).
    let lock = tmp.path().join("lock");
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sh", "-c", "echo locked; exec sleep 60"])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let e = apply(&ns.sys(), &plan(2), &opts).unwrap_err();
    assert!(matches!(e, Error::Busy(_)), "{e}");
    assert!(listing(&ns).contains("dport 1 "), "{}", listing(&ns));
    // kill -9 of the holder (flock and the command it runs, which shares
    // the locked file) frees the lock at once.
    sh("kill", &["-KILL", "--", &format!("-{}", holder.id())]);
    holder.wait().unwrap();
    apply(&ns.sys(), &plan(2), &opts).unwrap();
    assert!(listing(&ns).contains("dport 2 "), "{}", listing(&ns));
}

#[test]
fn overdue_pending_change_is_reverted_by_the_next_apply() {
    let ns = Netns::new("od");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let o = ApplyOpts {
        confirm: Some(1),
        ..opts.clone()
    };
    apply(&Faulty(ns.sys(), Fault::TimerLost), &plan(2222), &o).unwrap();
    // Before the deadline (+ grace) another apply is refused.
    assert!(matches!(
        apply(&ns.sys(), &plan(3333), &opts),
        Err(Error::PendingConfirmation { .. })
    ));
    std::thread::sleep(Duration::from_millis(4200));
    // The revert never ran (timer lost): the lock-out still runs...
    assert!(listing(&ns).contains("dport 2222"));
    // ...until the next apply, which reverts it first, then applies.
    apply(&ns.sys(), &plan(3333), &opts).unwrap();
    assert!(listing(&ns).contains("dport 3333"));
    let st = status(&ns.sys(), tmp.path()).unwrap();
    assert_eq!(
        st.last_reverted.unwrap().plan_hash,
        plan(2222).content_hash()
    );
    let prev: rampart_apply::Applied =
        serde_json::from_slice(&std::fs::read(tmp.path().join("previous.plan")).unwrap()).unwrap();
    assert_eq!(prev.plan_hash, plan(1111).content_hash());
}

/// Atomicity under load: while a prober in the client namespace opens new
/// connections to an allowed port (22) and a forbidden one (23, which also
/// has a listener), the node re-applies changing rulesets. Not one forbidden
/// connection may succeed and not one allowed connection may fail.
/// Rounds: `RAMPART_ATOMIC_ROUNDS` (default 100; CI runs 500).
#[test]
fn reapplying_changing_rulesets_never_opens_or_closes_the_host() {
    let p = pair();
    let tmp = tempfile::tempdir().unwrap();
    let ruleset = |i: usize| {
        Plan::nftables(
            "node".parse().unwrap(),
            format!(
                "table inet rampart {{\n set noise {{ type ipv4_addr; elements = {{ 192.0.2.{} }} }}\n\
                 chain input {{\n  type filter hook input priority 0; policy drop;\n  iif lo accept\n\
                 ct state established,related accept\n  ip saddr @noise drop\n\
                 tcp dport 22 accept\n  tcp dport 23 reject with tcp reset\n  tcp dport {} drop\n }}\n}}\n",
                i % 250 + 1,
                1000 + i
            ),
        )
    };
    let mut opts = ApplyOpts::new(tmp.path());
    opts.record_kernel_hash = false;
    apply(&p.node.sys(), &ruleset(0), &opts).unwrap();
    let stop = tmp.path().join("stop");
    let prober = Command::new("ip")
        .args(["netns", "exec", &p.client.name, "python3", "-c"])
        .arg(
            "import socket,os,sys,struct,time\nstop=sys.argv[1]\nc={'ok22':0,'bad22':0,'ok23':0,'bad23':0}\n\
             def probe(port):\n  s=socket.socket()\n  s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0))\n\
             \x20 s.settimeout(1.0)\n  try:\n    s.connect(('10.250.0.2',port))\n    return True\n\
             \x20 except Exception as e:\n    if port == 22: sys.stderr.write('probe %d at %.3f: %r\\n' % (port, time.time(), e))\n    return False\n  finally:\n    s.close()\n\
             while not os.path.exists(stop):\n  c['ok22' if probe(22) else 'bad22']+=1\n  c['ok23' if probe(23) else 'bad23']+=1\n\
             print(c['ok22'],c['bad22'],c['ok23'],c['bad23'])\n",
        )
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let rounds: usize = std::env::var("RAMPART_ATOMIC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for i in 1..=rounds {
        apply(&p.node.sys(), &ruleset(i), &opts).unwrap();
    }
    std::fs::write(&stop, "").unwrap();
    let out = prober.wait_with_output().unwrap();
    let counts: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (ok22, bad22, ok23, bad23) = (counts[0], counts[1], counts[2], counts[3]);
    assert!(
        ok22 > rounds as u64 / 4,
        "too few probes to mean anything: {counts:?}"
    );
    assert_eq!(bad22, 0, "allowed connections failed: {counts:?}");
    assert_eq!(ok23, 0, "forbidden connections succeeded: {counts:?}");
    assert_eq!(bad23, ok22 + bad22, "{counts:?}");
    eprintln!("{rounds} applies; probes allowed ok={ok22} forbidden refused={bad23}");
}

#[test]
fn tables_dropped_from_the_plan_disappear_in_the_same_transaction() {
    let ns = Netns::new("br");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    let both = format!(
        "{}table bridge rampart {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    ether type arp accept\n  }}\n}}\n",
        rules(1111)
    );
    apply(
        &ns.sys(),
        &Plan::nftables("n".parse().unwrap(), both),
        &opts,
    )
    .unwrap();
    let tables = ns.exec(&["nft", "list", "tables"]);
    assert!(tables.contains("table bridge rampart") && tables.contains("table inet rampart"));
    ns.exec(&["nft", "add", "table", "ip", "keepme"]);
    apply(&ns.sys(), &plan(2222), &opts).unwrap();
    let tables = ns.exec(&["nft", "list", "tables"]);
    assert!(!tables.contains("bridge rampart"), "{tables}");
    assert!(tables.contains("table ip keepme"), "{tables}");
    assert!(listing(&ns).contains("dport 2222"));
    assert_eq!(status(&ns.sys(), tmp.path()).unwrap().drift, Drift::InSync);
    // A stray rampart table someone added by hand is drift, and the next
    // --confirm apply (which lists the kernel's tables) removes it.
    ns.exec(&["nft", "add", "table", "ip", "rampart-stray"]);
    assert!(matches!(
        status(&ns.sys(), tmp.path()).unwrap().drift,
        Drift::Drifted { .. }
    ));
    let o = ApplyOpts {
        confirm: Some(30),
        ..opts.clone()
    };
    apply(&ns.sys(), &plan(3333), &o).unwrap();
    confirm(tmp.path(), None).unwrap();
    let tables = ns.exec(&["nft", "list", "tables"]);
    assert!(!tables.contains("rampart-stray"), "{tables}");
    assert_eq!(status(&ns.sys(), tmp.path()).unwrap().drift, Drift::InSync);
}

/// The body of a child that applies two plans in turn until killed.
#[test]
fn child_apply_loop_helper() {
    let Ok(args) = std::env::var("RAMPART_APPLY_LOOP") else {
        return;
    };
    let (ns, dir) = args.split_once('\u{1f}').unwrap();
    let sys = HostSystem::in_netns(ns);
    for i in 0.. {
        apply(
            &sys,
            &plan(if i % 2 == 0 { 1111 } else { 2222 }),
            &ApplyOpts::new(dir),
        )
        .unwrap();
        if i == 0 {
            println!("RAMPART-LOOPING");
        }
    }
}

/// Fault: the applier is killed with SIGKILL at random points of an apply.
/// Afterwards the kernel runs exactly the old or the new ruleset, never none
/// and never a mix, and the next apply goes through (stale lock taken over).
#[test]
fn killed_mid_apply_leaves_old_or_new_never_none() {
    let ns = Netns::new("km");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    // Compared: the policy the hooks reach (a kill between the staging and
    // the switch leaves unreachable staged objects, one between the switch
    // and the clean-up unreachable old ones; neither is in force).
    let in_force = |ns: &Netns| rampart_apply::twophase::in_force(&listing(ns));
    apply(&ns.sys(), &plan(1111), &ApplyOpts::new(&dir)).unwrap();
    let a = in_force(&ns);
    apply(&ns.sys(), &plan(2222), &ApplyOpts::new(&dir)).unwrap();
    let b = in_force(&ns);
    assert_ne!(a, b);
    for round in 0..8u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_apply_loop_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "RAMPART_APPLY_LOOP",
                format!("{}\u{1f}{}", ns.name, dir.display()),
            )
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        for line in BufReader::new(out).lines() {
            if line.unwrap().contains("RAMPART-LOOPING") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(13 * round + 7));
        sh("kill", &["-KILL", "--", &format!("-{}", child.id())]);
        child.wait().unwrap();
        let now = in_force(&ns);
        assert!(
            now == a || now == b,
            "round {round}: neither old nor new:\n{now}\n{}",
            listing(&ns)
        );
        // The state may lag the kernel by the one apply that was killed;
        // status says so (drift) rather than lying, and the next apply fixes it.
        apply(&ns.sys(), &plan(1111), &ApplyOpts::new(&dir)).unwrap();
        assert_eq!(in_force(&ns), a);
        // and nothing is left over
        assert_eq!(
            rampart_apply::twophase::unhash(&listing(&ns))
                .matches("\tchain ")
                .count(),
            2,
            "{}",
            listing(&ns)
        );
        assert_eq!(status(&ns.sys(), &dir).unwrap().drift, Drift::InSync);
    }
}

/// Timing of a one-rule change on a ruleset with a 100,000-element set and
/// 1,000 rules. `cargo test -p rampart-apply --test netns -- --ignored --nocapture large`
#[test]
#[ignore]
fn large_ruleset_apply_timing() {
    let ns = Netns::new("big");
    let tmp = tempfile::tempdir().unwrap();
    let mut elems = String::new();
    for i in 0..100_000u32 {
        if i > 0 {
            elems.push_str(", ");
        }
        elems.push_str(&format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255));
    }
    let big = |port: u16| {
        let mut r = String::new();
        for i in 0..1000u32 {
            r.push_str(&format!(
                "    tcp dport {} ip saddr 192.0.2.{} drop\n",
                20000 + i,
                i % 250
            ));
        }
        Plan::nftables(
            "n".parse().unwrap(),
            format!(
                "table inet rampart {{\n  set big {{ type ipv4_addr; elements = {{ {elems} }} }}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr @big drop\n{r}    tcp dport {port} drop\n  }}\n}}\n"
            ),
        )
    };
    apply(&ns.sys(), &big(1), &ApplyOpts::new(tmp.path())).unwrap();
    for (name, check, hash) in [
        ("check + apply + hash", true, true),
        ("check + apply", true, false),
        ("apply only", false, false),
    ] {
        let mut opts = ApplyOpts::new(tmp.path());
        opts.check = check;
        opts.record_kernel_hash = hash;
        let t = Instant::now();
        apply(&ns.sys(), &big(2), &opts).unwrap();
        let d = t.elapsed();
        apply(&ns.sys(), &big(1), &opts).unwrap();
        eprintln!("{name}: {d:?}");
    }
}

/// Sysctls are read and written in the system's own namespace (through
/// /proc/sys from a thread that joined it, no process): what `sysctl` run
/// inside the namespace sees, while a second namespace keeps its value;
/// both spellings of a key work; a key that does not exist is an error
/// naming its file.
#[test]
fn sysctls_are_read_and_written_in_the_namespace_itself() {
    let a = Netns::new("sca");
    let b = Netns::new("scb");
    assert_eq!(a.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "0");
    a.sys().sysctl_set("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(a.exec(&["sysctl", "-n", "net.ipv4.ip_forward"]).trim(), "1");
    assert_eq!(b.exec(&["sysctl", "-n", "net.ipv4.ip_forward"]).trim(), "0");
    assert_eq!(b.sys().sysctl_get("net/ipv4/ip_forward").unwrap(), "0");
    a.sys()
        .sysctl_set("net/ipv4/conf/lo/rp_filter", "2")
        .unwrap();
    assert_eq!(
        a.exec(&["sysctl", "-n", "net.ipv4.conf.lo.rp_filter"])
            .trim(),
        "2"
    );
    let e = a.sys().sysctl_get("net.ipv4.no_such_knob").unwrap_err();
    assert!(
        e.to_string().contains("/proc/sys/net/ipv4/no_such_knob"),
        "{e}"
    );
}

/// The body of a child that applies once. `RAMPART_APPLY_HANG`: namespace,
/// state dir, plan port, and (optional) an nft wrapper to use.
#[test]
fn child_apply_once_helper() {
    let Ok(args) = std::env::var("RAMPART_APPLY_ONCE") else {
        return;
    };
    let v: Vec<&str> = args.split('\u{1f}').collect();
    let mut sys = HostSystem::in_netns(v[0]);
    if let Some(w) = v.get(3) {
        sys.programs.nft = (*w).to_owned();
    }
    let opts = ApplyOpts {
        incremental: false,
        ..ApplyOpts::new(v[1])
    };
    apply(&sys, &plan(v[2].parse().unwrap()), &opts).unwrap();
    println!("RAMPART-APPLIED");
}

fn apply_once_in_child(
    ns: &Netns,
    dir: &Path,
    port: u16,
    nft: Option<&Path>,
) -> std::process::Child {
    let mut arg = format!("{}\u{1f}{}\u{1f}{port}", ns.name, dir.display());
    if let Some(w) = nft {
        arg.push_str(&format!("\u{1f}{}", w.display()));
    }
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_apply_once_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RAMPART_APPLY_ONCE", arg)
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap()
}

/// kill -9 between the staging and the switch transaction leaves the
/// script file in the temp directory and the staged objects in the kernel.
/// The next apply (a new process) removes both; the old policy stayed in
/// force throughout.
#[test]
fn killed_between_stage_and_switch_leaves_nothing_after_the_next_apply() {
    let ns = Netns::new("ks");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    apply(&ns.sys(), &plan(1111), &ApplyOpts::new(&dir)).unwrap();
    let before = rampart_apply::twophase::in_force(&listing(&ns));
    // nft, except that the transaction after the first committed one (the
    // switch, after the stage) hangs until killed.
    let mark = tmp.path().join("mark");
    std::fs::create_dir(&mark).unwrap();
    let wrapper = tmp.path().join("nft-hang");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nM={}\nif [ \"$1\" = -f ] && [ -e \"$M/staged\" ]; then echo \"$2\" > \"$M/hanging.tmp\"; mv \"$M/hanging.tmp\" \"$M/hanging\"; exec sleep 60; fi\nnft \"$@\"; rc=$?\nif [ \"$1\" = -f ] && [ $rc = 0 ]; then : > \"$M/staged\"; fi\nexit $rc\n",
            mark.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut child = apply_once_in_child(&ns, &dir, 2222, Some(&wrapper));
    let hanging = mark.join("hanging");
    wait_until(Duration::from_secs(20), || hanging.exists()).expect("switch reached");
    let script = std::fs::read_to_string(&hanging).unwrap().trim().to_owned();
    assert!(script.contains("/rampart-"), "{script}");
    sh("kill", &["-KILL", "--", &format!("-{}", child.id())]);
    child.wait().unwrap();
    // What the kill left: the script file, the staged objects (unreachable).
    assert!(Path::new(&script).exists(), "{script}");
    let l = listing(&ns);
    assert!(l.contains("dport 2222"), "staged objects expected:\n{l}");
    assert_eq!(rampart_apply::twophase::in_force(&l), before);
    // The next apply, in a new process, cleans both up.
    let mut next = apply_once_in_child(&ns, &dir, 1111, None);
    assert!(next.wait().unwrap().success());
    assert!(!Path::new(&script).exists(), "{script} left behind");
    let l = listing(&ns);
    assert!(!l.contains("dport 2222"), "staged leftovers:\n{l}");
    assert_eq!(rampart_apply::twophase::in_force(&l), before);
    assert_eq!(status(&ns.sys(), &dir).unwrap().drift, Drift::InSync);
}

/// A sysctl that exists but cannot be written (0444 here) is refused
/// before the switch: nothing changes, and the error says so.
#[test]
fn unwritable_sysctl_is_refused_before_the_switch() {
    let ns = Netns::new("sro");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let before = listing(&ns);
    let mut p = plan(2222);
    p.sysctls.insert(
        "net.ipv4.tcp_available_congestion_control".into(),
        "reno".into(),
    );
    let e = apply(&ns.sys(), &p, &opts).unwrap_err();
    assert!(matches!(e, Error::InvalidPlan(_)), "{e}");
    assert!(
        e.to_string().contains("tcp_available_congestion_control"),
        "{e}"
    );
    assert_eq!(listing(&ns), before);
    let st = status(&ns.sys(), tmp.path()).unwrap();
    assert_eq!(st.current.unwrap().plan_hash, plan(1111).content_hash());
    assert_eq!(st.drift, Drift::InSync);
}

/// A sysctl the kernel refuses after the switch (a value out of range for
/// a relaxing key): the error says the new ruleset is live and what failed;
/// the state records the new plan as running, incomplete, and status
/// agrees; the last good plan stays the old one.
#[test]
fn sysctl_failing_after_the_switch_is_reported_as_such() {
    let ns = Netns::new("saf");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let mut p = plan(2222);
    p.sysctls
        .insert("net.ipv4.ip_default_ttl".into(), "0".into());
    p.sysctls.insert("net.ipv4.ip_forward".into(), "1".into());
    let e = apply(&ns.sys(), &p, &opts).unwrap_err();
    let Error::AfterSwitch {
        plan_hash,
        done,
        failed,
        record,
    } = &e
    else {
        panic!("expected AfterSwitch, got {e}");
    };
    let text = e.to_string();
    assert!(
        text.contains("is live") && !text.contains("still in place"),
        "{text}"
    );
    assert_eq!(plan_hash, &p.content_hash());
    assert!(record.is_none(), "{text}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains("net.ipv4.ip_default_ttl"), "{failed:?}");
    assert!(
        done.iter().any(|d| d.contains("net.ipv4.ip_forward = 1")),
        "{done:?}"
    );
    // What the kernel runs: the new rules, forwarding on.
    assert!(listing(&ns).contains("dport 2222"));
    assert_eq!(ns.sys().sysctl_get("net.ipv4.ip_forward").unwrap(), "1");
    let st = status(&ns.sys(), tmp.path()).unwrap();
    let cur = st.current.unwrap();
    assert_eq!(cur.plan_hash, p.content_hash());
    assert!(cur.incomplete.as_ref().unwrap().contains("ip_default_ttl"));
    assert_eq!(st.drift, Drift::InSync);
    assert_eq!(st.last_good_hash.unwrap(), plan(1111).content_hash());
    // Fixing the plan completes it.
    p.sysctls
        .insert("net.ipv4.ip_default_ttl".into(), "64".into());
    apply(&ns.sys(), &p, &opts).unwrap();
    let st = status(&ns.sys(), tmp.path()).unwrap();
    assert!(st.current.unwrap().incomplete.is_none());
    assert_eq!(st.last_good_hash.unwrap(), p.content_hash());
}

/// A WireGuard key file open to others (0644) is refused before the
/// switch: the old ruleset stays, and so does the record.
#[test]
fn key_file_0644_is_refused_before_the_switch() {
    let ns = Netns::new("k644");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let opts = ApplyOpts::new(&dir);
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let before = listing(&ns);
    let key = tmp.path().join("wg0.key");
    std::fs::write(&key, format!("{}=\n", "A".repeat(43))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut p = plan(2222);
    p.wireguard.push(rampart_apply::WgIface {
        name: "wg0".parse().unwrap(),
        network: "mesh".parse().unwrap(),
        private_key_file: key.to_string_lossy().into_owned(),
        listen_port: Some(51820),
        addresses: vec!["10.99.0.1/24".into()],
        mtu: None,
        peers: vec![],
    });
    let e = apply(&ns.sys(), &p, &opts).unwrap_err();
    assert!(matches!(e, Error::Network { .. }), "{e}");
    assert!(
        e.to_string().contains("0644") || e.to_string().contains("644"),
        "{e}"
    );
    assert_eq!(listing(&ns), before);
    assert!(!ns.try_exec(&["ip", "link", "show", "wg0"]));
    let st = status(&ns.sys(), &dir).unwrap();
    assert_eq!(st.current.unwrap().plan_hash, plan(1111).content_hash());
    assert_eq!(st.drift, Drift::InSync);
}

/// A tmpfs of 64 KiB mounted on `path` (removed on drop, lazily, also on
/// failure).
struct TinyFs(std::path::PathBuf);

impl TinyFs {
    fn mount(path: &Path) -> TinyFs {
        std::fs::create_dir_all(path).unwrap();
        sh(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                "size=64k,mode=0700",
                "tmpfs",
                path.to_str().unwrap(),
            ],
        );
        TinyFs(path.to_owned())
    }

    /// Fill it up: every later write fails with ENOSPC.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).and_then(|()| f.sync_all()).is_ok() {}
        // and the last bytes of a page
        while f.write_all(&chunk[..1]).and_then(|()| f.flush()).is_ok() {}
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A full state disk refuses apply and rollback before the switch: the
/// kernel keeps its ruleset, the record stays, and the error is true.
#[test]
fn full_state_disk_refuses_apply_and_rollback_before_the_switch() {
    let ns = Netns::new("full");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let fs = TinyFs::mount(&dir);
    let opts = ApplyOpts::new(&dir);
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    apply(&ns.sys(), &plan(2222), &opts).unwrap();
    fs.fill();
    let before = listing(&ns);
    let e = apply(&ns.sys(), &plan(3333), &opts).unwrap_err();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{e}"
    );
    assert_eq!(listing(&ns), before);
    let st = status(&ns.sys(), &dir).unwrap();
    assert_eq!(st.current.unwrap().plan_hash, plan(2222).content_hash());
    assert_eq!(st.drift, Drift::InSync);
    // Rollback on a full disk: someone changed rampart's table by hand,
    // so a rollback to the last good plan would change the kernel; it is
    // refused before it does.
    ns.exec(&[
        "nft", "add", "rule", "inet", "rampart", "input", "tcp", "dport", "5555", "drop",
    ]);
    let before = listing(&ns);
    let e = rollback(&ns.sys(), &opts).unwrap_err();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{e}"
    );
    assert_eq!(listing(&ns), before, "rollback changed the kernel: {e}");
    // With room again, rollback goes through.
    std::fs::remove_file(dir.join("filler")).unwrap();
    rollback(&ns.sys(), &opts).unwrap();
    let l = listing(&ns);
    assert!(l.contains("dport 2222") && !l.contains("dport 5555"), "{l}");
    assert_eq!(status(&ns.sys(), &dir).unwrap().drift, Drift::InSync);
    // no temp files left behind
    let stray: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
}

/// A rollback refused by a full state disk leaves a pending confirmation
/// (and so its scheduled revert) as it was; with room it cancels it.
#[test]
fn rollback_refused_by_a_full_disk_keeps_the_pending_revert() {
    let ns = Netns::new("fullp");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let fs = TinyFs::mount(&dir);
    let opts = ApplyOpts::new(&dir);
    apply(&ns.sys(), &plan(1111), &opts).unwrap();
    let confirm_opts = ApplyOpts {
        confirm: Some(60),
        ..opts.clone()
    };
    let p = apply(&ns.sys(), &plan(2222), &confirm_opts)
        .unwrap()
        .pending
        .unwrap();
    fs.fill();
    let e = rollback(&ns.sys(), &opts).unwrap_err();
    assert!(
        matches!(&e, Error::Io { source, .. } if source.raw_os_error() == Some(28)),
        "{e}"
    );
    assert!(listing(&ns).contains("dport 2222"));
    let st = status(&ns.sys(), &dir).unwrap();
    assert_eq!(st.pending.map(|q| q.id), Some(p.id.clone()));
    assert!(dir.join(format!("revert-{}.sh", p.id)).exists());
    std::fs::remove_file(dir.join("filler")).unwrap();
    rollback(&ns.sys(), &opts).unwrap();
    assert!(listing(&ns).contains("dport 1111"));
    assert!(status(&ns.sys(), &dir).unwrap().pending.is_none());
}

//! The platform behind a trait. [`HostSystem`] runs the real tools, optionally
//! inside a network namespace (`nsenter --net=/run/netns/NS ...`; sysctls
//! through `/proc/sys` from a thread in the namespace; WireGuard tools under
//! `ip netns exec` with their own socket directory), so tests, labs and
//! production all take the same path.

use crate::error::Error;
use crate::nftscript::{parse_list_tables, TableRef};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// IP family of an iptables operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpFamily {
    V4,
    V6,
}

/// How a confirmation revert is scheduled so that it survives the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheduler {
    /// `systemd-run --on-active` when systemd runs this host and no network
    /// namespace is in use; a detached process otherwise.
    Auto,
    /// A new session (`setsid -f`), stdin/stdout/stderr detached: survives
    /// the death of the SSH session and of the process that applied.
    Detached,
    /// A transient systemd timer.
    SystemdRun,
}

/// Everything apply needs from the host.
pub trait System {
    /// `nft -c -f -`: check a script in the kernel without committing it.
    fn nft_check(&self, script: &str) -> Result<(), Error>;
    /// `nft -f -`: one kernel transaction.
    fn nft_apply(&self, script: &str) -> Result<(), Error>;
    /// One in-place transaction ([`crate::inplace`]), computed against
    /// ruleset generation `genid` (the kernel refuses it if another
    /// transaction came in between, where the system can tell). `Ok(true)`
    /// when it went to the kernel as rampart's own netlink batch,
    /// `Ok(false)` when through `nft -f`.
    fn nft_apply_in_place(
        &self,
        cmds: &[crate::inplace::Cmd],
        sets: &[crate::inplace::SetChange],
        genid: Option<u32>,
    ) -> Result<bool, Error> {
        let _ = genid;
        let mut script = crate::inplace::render(cmds);
        script.push_str(&crate::inplace::render_sets(sets));
        self.nft_apply(&script).map(|()| false)
    }
    /// The nftables ruleset generation (bumped by every committed
    /// transaction), when it can be read.
    fn nft_genid(&self) -> Option<String> {
        None
    }
    /// Handles of the rules of one chain, in order. Systems that cannot
    /// tell make apply stage a change instead of making it in place.
    fn nft_rule_handles(&self, table: &TableRef, chain: &str) -> Result<Vec<u64>, Error> {
        let _ = (table, chain);
        Err(Error::InvalidPlan(
            "rule handles are not available here".into(),
        ))
    }
    /// `nft -j ARGS` (a read-only listing, JSON). Systems that cannot list
    /// make apply replace rampart's tables in one transaction instead of
    /// staging them (see [`crate::twophase`]).
    fn nft_list_json(&self, args: &[&str]) -> Result<String, Error> {
        Err(Error::InvalidPlan(format!(
            "`nft -j {}` is not available here",
            args.join(" ")
        )))
    }
    /// `nft list tables`.
    fn nft_tables(&self) -> Result<Vec<TableRef>, Error>;
    /// `nft -s list table F N` (stateless: no counter values).
    fn nft_list_table(&self, table: &TableRef) -> Result<String, Error>;
    /// `iptables-restore --test` / `ip6tables-restore --test`.
    fn ipt_check(&self, fam: IpFamily, text: &str) -> Result<(), Error>;
    /// `iptables-restore` / `ip6tables-restore` (replaces the tables named in `text`).
    fn ipt_restore(&self, fam: IpFamily, text: &str) -> Result<(), Error>;
    /// `iptables-save` / `ip6tables-save`.
    fn ipt_save(&self, fam: IpFamily) -> Result<String, Error>;
    /// `ipset restore -exist`.
    fn ipset_restore(&self, text: &str) -> Result<(), Error>;
    /// Current value of a sysctl (trimmed).
    fn sysctl_get(&self, key: &str) -> Result<String, Error>;
    /// Current values of several sysctls, in order.
    fn sysctl_get_many(&self, keys: &[&str]) -> Result<Vec<String>, Error> {
        keys.iter().map(|k| self.sysctl_get(k)).collect()
    }
    /// Set a sysctl.
    fn sysctl_set(&self, key: &str, value: &str) -> Result<(), Error>;
    /// Whether every key can be written here (it exists and is not
    /// read-only), checked before the ruleset changes: a write that fails
    /// after the switch leaves the host half-applied.
    fn sysctl_writable(&self, keys: &[&str]) -> Result<(), Error> {
        let _ = keys;
        Ok(())
    }
    /// Argument vector prefix that runs a command where this system's commands
    /// run (e.g. `["ip","netns","exec","ns1"]`), for the revert script.
    fn exec_prefix(&self) -> Vec<String>;
    /// Program names used for the revert script: (nft, iptables-restore, ip6tables-restore, sysctl).
    fn programs(&self) -> Programs;
    /// Start `sh script delay` so that it outlives the caller; returns a
    /// description (pid or unit name).
    fn schedule(&self, script: &Path, delay_secs: u64, unit: &str) -> Result<String, Error>;
    /// Run a network tool (`ip`, `wg`, `wireguard-go`) where this system's
    /// commands run, with `stdin` on its standard input. `wg_sock`: with
    /// this system's WireGuard control socket directory as
    /// `/var/run/wireguard` (private per network namespace, so a userspace
    /// interface of one namespace is never confused with another's).
    fn net_run(
        &self,
        prog: &str,
        args: &[&str],
        stdin: Option<&str>,
        wg_sock: bool,
    ) -> Result<String, Error> {
        let _ = (args, stdin, wg_sock);
        Err(Error::InvalidPlan(format!(
            "this system cannot run `{prog}` (no network side)"
        )))
    }
    /// Argument vector prefix that runs a WireGuard tool where
    /// [`System::net_run`] with `wg_sock` runs it, for the revert script.
    fn wg_prefix(&self) -> Vec<String> {
        self.exec_prefix()
    }
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// Program names or paths.
#[derive(Clone, Debug)]
pub struct Programs {
    pub nft: String,
    pub iptables_restore: String,
    pub ip6tables_restore: String,
    pub iptables_save: String,
    pub ip6tables_save: String,
    pub ipset: String,
    pub sysctl: String,
}

impl Default for Programs {
    fn default() -> Self {
        Programs {
            nft: "nft".into(),
            iptables_restore: "iptables-restore".into(),
            ip6tables_restore: "ip6tables-restore".into(),
            iptables_save: "iptables-save".into(),
            ip6tables_save: "ip6tables-save".into(),
            ipset: "ipset".into(),
            sysctl: "sysctl".into(),
        }
    }
}

/// Where a namespaced [`HostSystem`] keeps each namespace's WireGuard
/// control sockets (`<root>/<netns>/wireguard`).
pub const NETNS_WG_ROOT: &str = "/run/rampart/netns";

/// The real host, or a network namespace of it.
#[derive(Clone, Debug)]
pub struct HostSystem {
    pub netns: Option<String>,
    pub programs: Programs,
    pub scheduler: Scheduler,
}

impl HostSystem {
    /// The host's own network namespace.
    pub fn host() -> Self {
        HostSystem {
            netns: None,
            programs: Programs::default(),
            scheduler: Scheduler::Auto,
        }
    }

    /// Run everything inside network namespace NAME (`/run/netns/NAME`).
    pub fn in_netns(name: impl Into<String>) -> Self {
        HostSystem {
            netns: Some(name.into()),
            ..Self::host()
        }
    }

    /// The WireGuard control socket directory of this namespace, bound on
    /// `/var/run/wireguard` for userspace WireGuard; `None` on the host.
    pub fn wg_sock_dir(&self) -> Option<PathBuf> {
        self.netns
            .as_ref()
            .map(|ns| Path::new(NETNS_WG_ROOT).join(ns).join("wireguard"))
    }

    fn wg_argv(&self) -> Vec<String> {
        match (&self.netns, self.wg_sock_dir()) {
            (Some(ns), Some(dir)) => vec![
                "ip".into(),
                "netns".into(),
                "exec".into(),
                ns.clone(),
                "sh".into(),
                "-c".into(),
                r#"mkdir -p "$0" /var/run/wireguard && mount --bind "$0" /var/run/wireguard && exec "$@""#.into(),
                dir.to_string_lossy().into_owned(),
            ],
            _ => vec![],
        }
    }

    /// `prog` in this system's network namespace. `nsenter --net` joins
    /// only the network namespace: nft, iptables, ipset, sysctl and ip need
    /// nothing else, and it costs about half of `ip netns exec` (no mount
    /// namespace, no sysfs remount), which counts when 20 agents on two
    /// cores apply at once (bench/README.md, convergence).
    fn command(&self, prog: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(prog);
                c
            }
            None => Command::new(prog),
        }
    }

    /// `/proc/sys/...` of `key` (`net.ipv4.ip_forward` or
    /// `net/ipv4/conf/eth0.1/rp_filter`, as sysctl(8) takes them), read or
    /// written in this system's network namespace without a process: a
    /// thread joins the namespace (setns affects only the calling thread)
    /// and opens the file there; `net.*` files answer for the opener's
    /// namespace.
    fn proc_sys(&self, key: &str, write: Option<&str>) -> Result<String, Error> {
        self.proc_sys_many(&[(key, write)])
            .map(|mut v| v.pop().unwrap_or_default())
    }

    /// [`Self::proc_sys`] for several keys in order, from one thread in
    /// the namespace (one setns, not one per key).
    fn proc_sys_many(&self, ops: &[(&str, Option<&str>)]) -> Result<Vec<String>, Error> {
        let path_of = |key: &str| {
            let rel = if key.contains('/') {
                key.to_owned()
            } else {
                key.replace('.', "/")
            };
            Path::new("/proc/sys").join(rel)
        };
        let run_all = || -> Result<Vec<String>, Error> {
            ops.iter()
                .map(|(key, write)| {
                    let path = path_of(key);
                    match write {
                        Some(v) => std::fs::write(&path, v).map(|_| String::new()),
                        None => std::fs::read_to_string(&path)
                            .map(|t| t.trim_end_matches('\n').to_owned()),
                    }
                    .map_err(|e| Error::io(&path, e))
                })
                .collect()
        };
        match &self.netns {
            None => run_all(),
            Some(ns) => {
                let p = format!("/run/netns/{ns}");
                let f = std::fs::File::open(&p).map_err(|e| Error::io(Path::new(&p), e))?;
                std::thread::scope(|sc| {
                    sc.spawn(|| {
                        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| Error::io(Path::new(&p), e.into()))?;
                        run_all()
                    })
                    .join()
                    .unwrap_or_else(|_| {
                        Err(Error::io(
                            Path::new(&p),
                            std::io::Error::other("netns thread panicked"),
                        ))
                    })
                })
            }
        }
    }

    /// Run `f` on a thread that joined this system's network namespace
    /// (the calling thread itself on the host).
    fn in_own_netns<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, Error> + Send,
    ) -> Result<T, Error> {
        match &self.netns {
            None => f(),
            Some(ns) => {
                let p = format!("/run/netns/{ns}");
                let file = std::fs::File::open(&p).map_err(|e| Error::io(Path::new(&p), e))?;
                std::thread::scope(|sc| {
                    sc.spawn(|| {
                        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| Error::io(Path::new(&p), e.into()))?;
                        f()
                    })
                    .join()
                    .unwrap_or_else(|_| {
                        Err(Error::io(
                            Path::new(&p),
                            std::io::Error::other("netns thread panicked"),
                        ))
                    })
                })
            }
        }
    }

    fn run(&self, prog: &str, args: &[&str], input: Option<&str>) -> Result<String, Error> {
        let mut cmd = self.command(prog);
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{prog} {}", args.join(" "));
        let mut child = cmd.spawn().map_err(|e| Error::Spawn {
            command: what.clone(),
            source: e,
        })?;
        if let Some(text) = input {
            // Write from a thread so a large script cannot deadlock against
            // a full stdout/stderr pipe.
            let mut stdin = child.stdin.take().expect("piped stdin");
            let text = text.to_owned();
            let writer = std::thread::spawn(move || {
                let _ = stdin.write_all(text.as_bytes());
            });
            let out = child.wait_with_output().map_err(|e| Error::Spawn {
                command: what.clone(),
                source: e,
            })?;
            let _ = writer.join();
            return finish(what, out);
        }
        let out = child.wait_with_output().map_err(|e| Error::Spawn {
            command: what.clone(),
            source: e,
        })?;
        finish(what, out)
    }

    fn use_systemd(&self) -> bool {
        match self.scheduler {
            Scheduler::Detached => false,
            Scheduler::SystemdRun => true,
            Scheduler::Auto => self.netns.is_none() && Path::new("/run/systemd/system").is_dir(),
        }
    }
}

/// Remove the script files (`rampart-PID-N.nft` in the temp directory) of
/// rampart processes that died before removing theirs (`kill -9` mid-apply
/// leaves a 2.7 MB file per script). Files of a live process are kept.
/// Returns how many were removed.
pub fn clean_stale_scripts() -> usize {
    let dir = std::env::temp_dir();
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let me = std::process::id().to_string();
    let mut n = 0;
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("rampart-")
            .and_then(|r| r.strip_suffix(".nft"))
            .and_then(|r| r.split_once('-'))
            .filter(|(pid, seq)| {
                !pid.is_empty()
                    && pid.bytes().all(|b| b.is_ascii_digit())
                    && !seq.is_empty()
                    && seq.bytes().all(|b| b.is_ascii_digit())
            })
            .map(|(pid, _)| pid.to_owned())
        else {
            continue;
        };
        // Only regular files (never follow a link someone planted).
        let regular = ent.file_type().is_ok_and(|t| t.is_file());
        if pid != me && regular && !Path::new("/proc").join(&pid).exists() {
            if std::fs::remove_file(ent.path()).is_ok() {
                n += 1;
            }
        }
    }
    n
}

/// A script in a private temp file (0600, removed on drop): `nft -f FILE`
/// loads a large script markedly faster than `nft -f -` from a pipe.
struct ScriptFile {
    path: String,
}

impl ScriptFile {
    fn new(script: &str) -> Result<ScriptFile, Error> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "rampart-{}-{}.nft",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        f.write_all(script.as_bytes())
            .map_err(|e| Error::io(&path, e))?;
        Ok(ScriptFile {
            path: path.to_string_lossy().into_owned(),
        })
    }

    fn path(&self) -> &str {
        &self.path
    }
}

impl Drop for ScriptFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl HostSystem {
    /// `nft -c --debug=mnl -f FILE`: nft builds the transaction against the
    /// kernel's cache and prints its netlink batch ([`crate::mnldump`]),
    /// but the batch never reaches the kernel: the spawning thread (whose
    /// seccomp filter `nsenter` and `nft` inherit) gets `sendmsg` refused,
    /// the call nft sends batches with (its cache requests use `sendto`).
    /// Checked and aborted by the kernel instead, the batch would cost an
    /// RCU grace period (15-50 ms here), and rampart sends its own batch
    /// right after anyway. Where the filter cannot be installed the kernel
    /// checks the batch (`-c`: never committed). An error when nft built no
    /// batch (the script does not compile): nft's message.
    fn nft_batch_dump(&self, path: &str) -> Result<String, Error> {
        let mut cmd = Command::new(&self.programs.nft);
        cmd.args(["-c", "--debug=mnl", "-f", path])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{} -c --debug=mnl -f {path}", self.programs.nft);
        // The thread joins the namespace itself (setns changes only the
        // calling thread; its children are born there): no nsenter.
        let netns = match &self.netns {
            Some(ns) => {
                let p = format!("/run/netns/{ns}");
                Some(std::fs::File::open(&p).map_err(|e| Error::io(Path::new(&p), e))?)
            }
            None => None,
        };
        let out = std::thread::scope(|s| {
            s.spawn(move || {
                if let Some(f) = &netns {
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)?;
                }
                let _ = deny_sendmsg();
                cmd.output()
            })
            .join()
        })
        .map_err(|_| Error::Command {
            command: what.clone(),
            status: None,
            stderr: "the thread running nft panicked".into(),
        })?
        .map_err(|e| Error::Spawn {
            command: what.clone(),
            source: e,
        })?;
        let dump = String::from_utf8_lossy(&out.stdout).into_owned();
        if crate::mnldump::batch(&dump).is_ok() {
            return Ok(dump);
        }
        Err(Error::Command {
            command: what,
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A seccomp filter on the calling thread (and what it spawns from now
/// on): `sendmsg` fails with EPERM, everything else is allowed.
fn deny_sendmsg() -> Result<(), String> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter};
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("{e:?}"))?;
    let filter = SeccompFilter::new(
        [(nix::libc::SYS_sendmsg, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(nix::libc::EPERM as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    let prog: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())?;
    seccompiler::apply_filter(&prog).map_err(|e| e.to_string())
}

fn finish(command: String, out: std::process::Output) -> Result<String, Error> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command,
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl System for HostSystem {
    fn nft_check(&self, script: &str) -> Result<(), Error> {
        let f = ScriptFile::new(script)?;
        self.run(&self.programs.nft, &["-c", "-f", f.path()], None)
            .map(|_| ())
    }
    fn nft_apply(&self, script: &str) -> Result<(), Error> {
        let f = ScriptFile::new(script)?;
        self.run(&self.programs.nft, &["-f", f.path()], None)
            .map(|_| ())
    }
    fn nft_apply_in_place(
        &self,
        cmds: &[crate::inplace::Cmd],
        sets: &[crate::inplace::SetChange],
        genid: Option<u32>,
    ) -> Result<bool, Error> {
        use crate::inplace::{render, render_sets, Cmd};
        let script = || {
            let mut s = render(cmds);
            s.push_str(&render_sets(sets));
            s
        };
        let netlink_err = |e: std::io::Error| Error::Command {
            command: "nftables transaction (netlink batch)".into(),
            status: None,
            stderr: e.to_string(),
        };
        // Set elements go in rampart's own messages: nft would fetch
        // every element of the table first (seconds at 100,000).
        let mut set_msgs = Vec::new();
        for s in sets {
            let fam = crate::netlink::nfproto(&s.table.family);
            match (fam, s.kernel()) {
                (Some(f), Ok((del, add))) => set_msgs.extend(crate::setelem::messages(
                    f,
                    &s.table.name,
                    &s.kname,
                    &del,
                    &add,
                )),
                _ => return self.nft_apply(&script()).map(|()| false),
            }
        }
        if cmds.is_empty() {
            return crate::netlink::nft_batch(self.netns.as_deref(), &set_msgs, genid)
                .map(|()| true)
                .map_err(netlink_err);
        }
        if sets.is_empty() && !cmds.iter().any(|c| matches!(c, Cmd::InsertBefore { .. })) {
            return self.nft_apply(&render(cmds)).map(|()| false);
        }
        // nft positions by handle only after fetching every rule: let it
        // compile the transaction with those rules prepended (its batch
        // never reaches the kernel), and send that batch with the positions
        // set.
        let f = ScriptFile::new(&crate::mnldump::check_script(cmds))?;
        let dump = self.nft_batch_dump(f.path())?;
        match crate::mnldump::in_place_batch(cmds, &dump) {
            Ok(mut msgs) => {
                msgs.extend(set_msgs);
                crate::netlink::nft_batch(self.netns.as_deref(), &msgs, genid)
                    .map(|()| true)
                    .map_err(netlink_err)
            }
            // A dump this code cannot read: the slow, sure way.
            Err(_) => self.nft_apply(&script()).map(|()| false),
        }
    }
    fn nft_genid(&self) -> Option<String> {
        crate::netlink::nft_generation(self.netns.as_deref()).ok()
    }
    fn nft_rule_handles(&self, table: &TableRef, chain: &str) -> Result<Vec<u64>, Error> {
        crate::netlink::nft_rule_handles(self.netns.as_deref(), &table.family, &table.name, chain)
            .map_err(|e| Error::InvalidPlan(format!("rule handles of {table} {chain}: {e}")))
    }
    fn nft_list_json(&self, args: &[&str]) -> Result<String, Error> {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        self.run(&self.programs.nft, &a, None)
    }
    fn nft_tables(&self) -> Result<Vec<TableRef>, Error> {
        Ok(parse_list_tables(&self.run(
            &self.programs.nft,
            &["list", "tables"],
            None,
        )?))
    }
    fn nft_list_table(&self, t: &TableRef) -> Result<String, Error> {
        self.run(
            &self.programs.nft,
            &["-s", "list", "table", &t.family, &t.name],
            None,
        )
    }
    fn ipt_check(&self, fam: IpFamily, text: &str) -> Result<(), Error> {
        let p = match fam {
            IpFamily::V4 => &self.programs.iptables_restore,
            IpFamily::V6 => &self.programs.ip6tables_restore,
        };
        self.run(p, &["--test"], Some(text)).map(|_| ())
    }
    fn ipt_restore(&self, fam: IpFamily, text: &str) -> Result<(), Error> {
        let p = match fam {
            IpFamily::V4 => &self.programs.iptables_restore,
            IpFamily::V6 => &self.programs.ip6tables_restore,
        };
        self.run(p, &[], Some(text)).map(|_| ())
    }
    fn ipt_save(&self, fam: IpFamily) -> Result<String, Error> {
        let p = match fam {
            IpFamily::V4 => &self.programs.iptables_save,
            IpFamily::V6 => &self.programs.ip6tables_save,
        };
        self.run(p, &[], None)
    }
    fn ipset_restore(&self, text: &str) -> Result<(), Error> {
        self.run(&self.programs.ipset, &["restore", "-exist"], Some(text))
            .map(|_| ())
    }
    fn sysctl_get(&self, key: &str) -> Result<String, Error> {
        if self.programs.sysctl == "sysctl" {
            return Ok(self.proc_sys(key, None)?.trim().to_owned());
        }
        Ok(self
            .run(&self.programs.sysctl, &["-n", key], None)?
            .trim()
            .to_owned())
    }
    fn sysctl_get_many(&self, keys: &[&str]) -> Result<Vec<String>, Error> {
        if self.programs.sysctl == "sysctl" {
            let ops: Vec<(&str, Option<&str>)> = keys.iter().map(|k| (*k, None)).collect();
            return Ok(self
                .proc_sys_many(&ops)?
                .into_iter()
                .map(|v| v.trim().to_owned())
                .collect());
        }
        keys.iter().map(|k| self.sysctl_get(k)).collect()
    }
    fn sysctl_writable(&self, keys: &[&str]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        self.in_own_netns(|| {
            for key in keys {
                let rel = if key.contains('/') {
                    key.to_string()
                } else {
                    key.replace('.', "/")
                };
                let path = Path::new("/proc/sys").join(rel);
                // access(2) on /proc/sys asks the sysctl's own permission
                // check (root gets the owner bits: a 0444 key is refused).
                nix::unistd::access(&path, nix::unistd::AccessFlags::W_OK).map_err(|e| {
                    Error::InvalidPlan(format!(
                        "sysctl `{key}` cannot be written here ({}: {e})",
                        path.display()
                    ))
                })?;
            }
            Ok(())
        })
    }
    fn sysctl_set(&self, key: &str, value: &str) -> Result<(), Error> {
        if self.programs.sysctl == "sysctl" {
            return self.proc_sys(key, Some(value)).map(|_| ());
        }
        self.run(
            &self.programs.sysctl,
            &["-q", "-w", &format!("{key}={value}")],
            None,
        )
        .map(|_| ())
    }
    fn net_run(
        &self,
        prog: &str,
        args: &[&str],
        stdin: Option<&str>,
        wg_sock: bool,
    ) -> Result<String, Error> {
        let argv = if wg_sock { self.wg_argv() } else { vec![] };
        if argv.is_empty() {
            return self.run(prog, args, stdin);
        }
        let mut full: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
        full.push(prog);
        full.extend_from_slice(args);
        let out = Command::new(&argv[0])
            .args(&full)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                if let Some(text) = stdin {
                    let mut i = child.stdin.take().expect("piped stdin");
                    i.write_all(text.as_bytes())?;
                }
                child.wait_with_output()
            })
            .map_err(|e| Error::Spawn {
                command: format!("{prog} {}", args.join(" ")),
                source: e,
            })?;
        finish(format!("{prog} {}", args.join(" ")), out)
    }
    fn wg_prefix(&self) -> Vec<String> {
        let argv = self.wg_argv();
        if argv.is_empty() {
            self.exec_prefix()
        } else {
            argv
        }
    }
    fn exec_prefix(&self) -> Vec<String> {
        match &self.netns {
            Some(ns) => vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()],
            None => vec![],
        }
    }
    fn programs(&self) -> Programs {
        self.programs.clone()
    }
    fn schedule(&self, script: &Path, delay_secs: u64, unit: &str) -> Result<String, Error> {
        let script = script.to_string_lossy().into_owned();
        if self.use_systemd() {
            let on_active = format!("--on-active={delay_secs}s");
            let unit_arg = format!("--unit={unit}");
            let out = Command::new("systemd-run")
                .args([
                    unit_arg.as_str(),
                    on_active.as_str(),
                    "--timer-property=AccuracySec=100ms",
                    "--collect",
                    "/bin/sh",
                    script.as_str(),
                    "0",
                ])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error::Spawn {
                    command: "systemd-run".into(),
                    source: e,
                })?;
            finish("systemd-run".into(), out)?;
            return Ok(format!("systemd timer {unit}.timer"));
        }
        // setsid -f: always forks, the child gets a new session without a
        // controlling terminal, so SIGHUP from a dying SSH session never
        // reaches it; its parent (setsid) exits at once and is reaped here.
        let log = PathBuf::from(format!("{script}.log"));
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log)
            .map_err(|e| Error::io(&log, e))?;
        let logf2 = logf.try_clone().map_err(|e| Error::io(&log, e))?;
        let status = Command::new("setsid")
            .args(["-f", "/bin/sh", script.as_str(), &delay_secs.to_string()])
            .stdin(Stdio::null())
            .stdout(logf)
            .stderr(logf2)
            .status()
            .map_err(|e| Error::Spawn {
                command: "setsid".into(),
                source: e,
            })?;
        if !status.success() {
            return Err(Error::Command {
                command: "setsid -f /bin/sh ...".into(),
                status: status.code(),
                stderr: String::new(),
            });
        }
        Ok(format!("detached process (log {})", log.display()))
    }
}

//! Named network namespaces that remove themselves.
//!
//! Everything runs through `ip` (iproute2): `ip netns add/del`, `ip -n NS
//! -batch -` for links, addresses and routes, `ip netns exec NS …` for
//! programs. Nothing here touches the root namespace's network.

use crate::{Error, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// All lab namespaces are named `rlab-<pid>-<n>-<role>`.
pub const PREFIX: &str = "rlab-";

/// Where [`Netns::wg`] keeps each namespace's `/var/run/wireguard`.
pub const WG_RUN_ROOT: &str = "/run/rampart-lab";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh prefix for one lab: `rlab-<pid>-<n>-`, unique within this
/// process (counter) and across processes (pid).
pub fn unique_prefix() -> String {
    format!(
        "{PREFIX}{}-{}-",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Run a command, failing with its stderr when it exits non-zero.
pub(crate) fn run(cmd: &mut Command, stdin: Option<&str>) -> Result<Output> {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::new(format!("cannot run {what}: {e}")))?;
    if let Some(text) = stdin {
        let mut i = child.stdin.take().expect("piped stdin");
        // A program that exits early closes its end: its status says why.
        let _ = i.write_all(text.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::new(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::new(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// A network namespace this process created; deleted on drop, with every
/// process still running in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
    /// Deleted on drop (false for a handle on a namespace owned elsewhere).
    owned: bool,
}

impl Netns {
    /// `ip netns add NAME`, loopback up, IPv6 DAD off (addresses usable at
    /// once).
    pub fn create(name: &str) -> Result<Netns> {
        run(Command::new("ip").args(["netns", "add", name]), None)?;
        let ns = Netns {
            name: name.to_string(),
            owned: true,
        };
        ns.ip_batch(&["link set lo up".to_string()])?;
        ns.sysctl(&[
            ("net.ipv6.conf.all.accept_dad", "0"),
            ("net.ipv6.conf.default.accept_dad", "0"),
            ("net.ipv6.conf.all.accept_ra", "0"),
            ("net.ipv6.conf.default.accept_ra", "0"),
        ])?;
        Ok(ns)
    }

    /// A handle on a namespace that something else owns: not deleted on drop.
    pub fn borrowed(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: false,
        }
    }

    /// A handle that removes the namespace when dropped (for a namespace
    /// this process made earlier, or a site lab's, by name).
    pub fn owned(name: &str) -> Netns {
        Netns {
            name: name.to_string(),
            owned: true,
        }
    }

    /// Keep the namespace after this handle is dropped (a site lab's
    /// namespaces outlive the process that made them).
    pub fn keep(mut self) -> Netns {
        self.owned = false;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME PROGRAM`: add arguments and run it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Run `argv` in the namespace, with `stdin` fed to it; its stdout.
    pub fn exec(&self, argv: &[&str], stdin: Option<&str>) -> Result<String> {
        let (prog, rest) = argv
            .split_first()
            .ok_or_else(|| Error::new("empty command"))?;
        let mut c = self.command(prog);
        c.args(rest);
        let out = run(&mut c, stdin)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip -n NAME -batch -` with these lines (`link add …`, `addr add …`).
    pub fn ip_batch(&self, lines: &[String]) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = lines.join("\n");
        text.push('\n');
        run(
            Command::new("ip").args(["-n", &self.name, "-batch", "-"]),
            Some(&text),
        )
        .map(|_| ())
    }

    /// Set sysctls inside the namespace (`net.*` keys are per namespace).
    pub fn sysctl(&self, kv: &[(&str, &str)]) -> Result<()> {
        let mut c = self.command("sysctl");
        c.arg("-q").arg("-w");
        for (k, v) in kv {
            c.arg(format!("{k}={v}"));
        }
        run(&mut c, None).map(|_| ())
    }

    /// A command run in the namespace with its own `/var/run/wireguard`.
    ///
    /// wireguard-go and `wg` find interfaces through unix sockets in
    /// `/var/run/wireguard`, a directory shared by every network namespace,
    /// so two namespaces could not both run a `wg0`. `ip netns exec`
    /// already gives the program a private mount namespace (and makes `/`
    /// a slave, so nothing propagates back); inside it this bind-mounts
    /// `run_dir` (one directory per namespace) over `/var/run/wireguard`
    /// and then executes the program. Every `wg`/`wireguard-go` for this
    /// namespace must go through here with the same `run_dir`.
    pub fn wg_command(&self, run_dir: &Path, program: &str) -> Command {
        let mut c = self.command("sh");
        c.arg("-c")
            .arg(r#"mkdir -p /var/run/wireguard && mount --bind "$0" /var/run/wireguard && exec "$@""#)
            .arg(run_dir)
            .arg(program);
        c
    }

    /// [`Netns::wg_command`] with this namespace's own directory,
    /// `/run/rampart-lab/<name>/wireguard`, made on first use and removed
    /// with the namespace.
    pub fn wg(&self, program: &str) -> Result<Command> {
        let dir = self.wg_dir();
        std::fs::create_dir_all(&dir).map_err(|e| Error::new(format!("{}: {e}", dir.display())))?;
        Ok(self.wg_command(&dir, program))
    }

    fn wg_dir(&self) -> std::path::PathBuf {
        Path::new(WG_RUN_ROOT).join(&self.name).join("wireguard")
    }

    /// Pids of the processes running in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // Only processes inside this namespace (which this lab started),
        // each by its pid.
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = std::fs::remove_dir_all(Path::new(WG_RUN_ROOT).join(&self.name));
        // rampart_apply's per-namespace /var/run/wireguard (the lab's nodes
        // get theirs from apply).
        let _ = std::fs::remove_dir_all(Path::new(rampart_apply::NETNS_WG_ROOT).join(&self.name));
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Lab namespaces currently present (names starting with [`PREFIX`]),
/// optionally only those of one lab prefix.
pub fn list(prefix: &str) -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(prefix))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Remove lab namespaces left behind by processes that no longer exist
/// (a test killed before its drop ran). Namespaces of live processes are
/// left alone.
pub fn sweep_stale() {
    for name in list(PREFIX) {
        let pid = name[PREFIX.len()..]
            .split('-')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                drop(Netns { name, owned: true });
            }
        }
    }
}

/// Check a ruleset without applying it: `nft -c -f -` in a throwaway
/// namespace (nft needs the kernel to validate expressions, and the check
/// must not depend on the root namespace's tables). The error carries
/// nft's message with the offending line.
pub fn nft_check(ruleset: &str) -> Result<()> {
    let ns = Netns::create(&format!("{}check", unique_prefix()))?;
    ns.exec(&["nft", "-c", "-f", "-"], Some(ruleset))
        .map(|_| ())
}

/// Check an `iptables-restore` (or `ip6tables-restore` with `v6`) file by
/// restoring it for real in a throwaway namespace: `--test` of the nft
/// flavour misses errors such as a rule in an undeclared chain.
pub fn iptables_check(rules: &str, v6: bool) -> Result<()> {
    let ns = Netns::create(&format!("{}check", unique_prefix()))?;
    let prog = if v6 {
        "ip6tables-restore"
    } else {
        "iptables-restore"
    };
    ns.exec(&[prog], Some(rules)).map(|_| ())
}

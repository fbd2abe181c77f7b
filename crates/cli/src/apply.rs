//! `rampart apply`, `confirm`, `rollback`, `status`: the safe path from a
//! compiled plan to the kernel.

use anyhow::{anyhow, Result};
use rampart_agent::RefusalKind;
use rampart_apply::{ApplyOpts, Drift, HostSystem};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(clap::Args)]
pub struct Common {
    /// Where rampart keeps the plan that runs, the last good one and pending
    /// confirmations.
    #[arg(long, default_value = rampart_apply::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Act inside this network namespace (labs and tests).
    #[arg(long)]
    pub netns: Option<String>,
}

impl Common {
    fn system(&self) -> HostSystem {
        match &self.netns {
            Some(ns) => HostSystem::in_netns(ns.clone()),
            None => HostSystem::host(),
        }
    }
}

#[derive(clap::Args)]
pub struct ApplyArgs {
    pub site: PathBuf,
    #[arg(long)]
    pub node: Option<String>,
    /// Revert automatically unless `rampart confirm` arrives, over a new
    /// connection, within this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub confirm: Option<u64>,
    /// Apply even when the lock-out guard refuses (you have console access)
    /// or an intent of the site misses.
    #[arg(long)]
    pub force: bool,
    /// The node's WireGuard key store (private keys are read from it at
    /// apply time, never copied).
    #[arg(long, value_name = "DIR", default_value = rampart_wg::plan::DEFAULT_KEY_DIR)]
    pub keys: PathBuf,
    #[command(flatten)]
    pub common: Common,
}

/// The session that applies or confirms: a new SSH connection has a new
/// client port, so it differs from the one that applied.
fn session() -> Option<String> {
    std::env::var("SSH_CONNECTION")
        .ok()
        .filter(|s| !s.is_empty())
}

pub fn apply(a: ApplyArgs) -> Result<ExitCode> {
    let files = crate::sitedir::read_site(&a.site)?;
    // The site's intents must hold first (docs/intents.md).
    if !crate::verify::gate(&files, "apply", a.force) {
        return Ok(ExitCode::from(1));
    }
    // The one safe path, shared with the agent: resolve, compile, guard.
    let opts = rampart_plan::PlanOpts {
        key_dir: a.keys.to_string_lossy().into_owned(),
        force: a.force,
        origin_revision: site_revision(&files),
        ..Default::default()
    };
    let planned = match rampart_agent::plan_for_with(&files, a.node.as_deref(), &opts) {
        Ok(p) => p,
        Err(r) => {
            eprint!("{}", r.rendered);
            return match r.kind {
                RefusalKind::NoNode => Err(anyhow!("{}", r.message)),
                RefusalKind::Guard => {
                    eprintln!(
                        "error: {} (use --force only with console access)",
                        r.message
                    );
                    Ok(ExitCode::from(1))
                }
                RefusalKind::Invalid | RefusalKind::Compile => {
                    eprintln!("error: {}", r.message);
                    Ok(ExitCode::from(1))
                }
            };
        }
    };
    eprint!("{}", planned.rendered);
    if planned.forced {
        eprintln!(
            "warning: the lock-out guard refused this plan; applying anyway because of --force"
        );
    }
    let node = planned.node.clone();
    let ap = planned.plan;
    let mut opts = ApplyOpts::new(&a.common.state_dir);
    opts.confirm = a.confirm;
    opts.session = session();
    let sys = a.common.system();
    let outcome = match rampart_apply::apply(&sys, &ap, &opts) {
        Ok(o) => o,
        Err(e) => return Ok(report_failure("apply", &e)),
    };
    println!(
        "applied plan {} to `{node}` (site revision {})",
        short(&outcome.applied.plan_hash),
        short(&ap.meta.origin_revision)
    );
    for l in &outcome.network {
        println!("network: {l}");
    }
    if let Some(p) = &outcome.pending {
        println!(
            "pending: reverts to the previous ruleset in {} s unless `rampart confirm` runs from a NEW connection",
            p.deadline.saturating_sub(now())
        );
    }
    if !outcome.legacy.is_empty() {
        for l in &outcome.legacy {
            if l.unchanged {
                println!(
                    "saved: {} (unchanged: it already held these rules)",
                    l.path.display()
                );
                continue;
            }
            match &l.backup {
                Some(b) => println!(
                    "saved: {} (mode 0600; the previous file is kept as {})",
                    l.path.display(),
                    b.display()
                ),
                None => println!(
                    "saved: {} (mode 0600; there was none before)",
                    l.path.display()
                ),
            }
        }
        if outcome.legacy.iter().any(|l| !l.unchanged) {
            println!("recovery (from a console, if this plan locks you out), in this order:");
        }
        for l in outcome.legacy.iter().filter(|l| !l.unchanged) {
            for line in l.recovery.lines() {
                println!("  {line}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn site_revision(files: &rampart_types::SiteFiles) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (k, v) in &files.files {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    }
    hex::encode(h.finalize())
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn confirm(c: Common) -> Result<ExitCode> {
    let applied =
        rampart_apply::confirm(&c.state_dir, session().as_deref()).map_err(|e| anyhow!("{e}"))?;
    println!("confirmed plan {}: it stays", short(&applied.plan_hash));
    Ok(ExitCode::SUCCESS)
}

/// Exit status of an apply, rollback or restore that changed the kernel's
/// ruleset and then failed (see `Error::AfterSwitch`).
pub const EXIT_AFTER_SWITCH: u8 = 3;

/// The truth about a failed apply/rollback/restore, and its exit status:
/// 2 when nothing changed, [`EXIT_AFTER_SWITCH`] when the new ruleset is
/// live and a later step (sysctl, network, record) failed.
pub fn report_failure(what: &str, e: &rampart_apply::Error) -> ExitCode {
    match e {
        rampart_apply::Error::AfterSwitch { .. } => {
            eprintln!("error: {what} incomplete: {e}");
            ExitCode::from(EXIT_AFTER_SWITCH)
        }
        _ => {
            eprintln!("error: {what} failed, nothing was changed, the running ruleset stays: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn rollback(c: Common) -> Result<ExitCode> {
    let opts = ApplyOpts::new(&c.state_dir);
    let out = match rampart_apply::rollback(&c.system(), &opts) {
        Ok(o) => o,
        Err(e) => return Ok(report_failure("rollback", &e)),
    };
    println!("rolled back to plan {}", short(&out.applied.plan_hash));
    Ok(ExitCode::SUCCESS)
}

/// `rampart restore`: load the last good plan recorded in the state
/// directory, with no site needed (the boot path, before the network comes
/// up). Fails closed: without a record nothing is loaded and the exit
/// status says so.
pub fn restore(c: Common) -> Result<ExitCode> {
    let opts = ApplyOpts::new(&c.state_dir);
    match rampart_apply::restore(&c.system(), &opts) {
        Ok(out) => {
            println!(
                "restored the last good plan {} (node `{}`, site revision {})",
                short(&out.applied.plan_hash),
                out.applied.plan.node,
                short(&out.applied.plan.meta.origin_revision)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(rampart_apply::Error::NoLastGood) => {
            eprintln!(
                "error: no last good plan recorded in {}: nothing loaded (rampart's tables are not in the kernel)",
                c.state_dir.display()
            );
            Ok(ExitCode::from(1))
        }
        Err(e) => Ok(report_failure("restore", &e)),
    }
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub common: Common,
    /// Show the whole cluster from this etcd (comma-separated endpoints)
    /// instead of this host's state.
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    /// The site's etcd key prefix.
    #[arg(long, default_value = rampart_store::DEFAULT_PREFIX, requires = "etcd")]
    pub prefix: String,
}

pub fn status(a: StatusArgs) -> Result<ExitCode> {
    if let Some(etcd) = &a.etcd {
        return crate::push::cluster_status(etcd, &a.prefix);
    }
    let st = rampart_apply::status(&a.common.system(), &a.common.state_dir)
        .map_err(|e| anyhow!("{e}"))?;
    match &st.current {
        None => println!(
            "no plan applied by rampart (state in {})",
            a.common.state_dir.display()
        ),
        Some(cur) => {
            println!("node:          {}", cur.plan.node);
            println!("plan:          {}", cur.plan_hash);
            println!("site revision: {}", cur.plan.meta.origin_revision);
            println!(
                "applied:       {} ({} s ago)",
                cur.applied_at,
                now().saturating_sub(cur.applied_at)
            );
            if let Some(why) = &cur.incomplete {
                println!(
                    "INCOMPLETE:    the kernel runs this plan's ruleset, but steps after the switch failed: {why}; `rampart apply` retries them"
                );
            }
        }
    }
    if let Some(h) = &st.last_good_hash {
        println!("last good:     {h}");
    }
    let drifted = matches!(st.drift, Drift::Drifted { .. });
    match &st.drift {
        Drift::InSync => println!("kernel:        in sync with the plan"),
        Drift::Drifted { expected, actual } => println!(
            "kernel:        DRIFTED: rampart's tables are not what this plan left (changed since, or an apply after it did not get recorded; expected {}, found {}); `rampart apply` repairs it",
            short(expected),
            short(actual)
        ),
        Drift::Unknown => println!("kernel:        unknown (no plan recorded)"),
    }
    if let Some(cur) = &st.current {
        for w in &cur.plan.wireguard {
            println!(
                "wireguard:     {} (network {}, port {}, {} peer(s), {})",
                w.name,
                w.network,
                w.listen_port
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "any".into()),
                w.peers.len(),
                w.addresses.join(" ")
            );
        }
        if !cur.plan.routes.is_empty() || !cur.plan.rules.is_empty() {
            println!(
                "routes:        {} route(s), {} policy rule(s)",
                cur.plan.routes.len(),
                cur.plan.rules.len()
            );
        }
    }
    let net_drifted = !st.network.is_empty();
    if net_drifted {
        println!("network:       DRIFTED (`rampart apply` repairs it):");
        for l in &st.network {
            println!("               {l}");
        }
    } else if st
        .current
        .as_ref()
        .is_some_and(|c| !c.plan.wireguard.is_empty() || !c.plan.routes.is_empty())
    {
        println!("network:       in sync with the plan");
    }
    if let Some(p) = &st.pending {
        println!(
            "pending:       plan {} reverts in {} s unless confirmed",
            short(&p.plan_hash),
            p.deadline.saturating_sub(now())
        );
    }
    if let Some(p) = &st.last_reverted {
        println!(
            "last reverted: plan {} (not confirmed in time)",
            short(&p.plan_hash)
        );
    }
    let incomplete = st.current.as_ref().is_some_and(|c| c.incomplete.is_some());
    Ok(if drifted || net_drifted || incomplete {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

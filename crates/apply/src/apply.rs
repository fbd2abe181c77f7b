//! apply / confirm / rollback / status.

use crate::error::Error;
use crate::legacy::{self, LegacyWrite};
use crate::nftscript::{delete_prelude, is_owned, script_tables, TableRef};
use crate::plan::{sha256_hex, Applied, Backend, Plan};
use crate::revert::RevertScript;
use crate::state::{Pending, StateDir, CURRENT, LAST_GOOD};
use crate::sysctl;
use crate::system::{IpFamily, System};
use crate::twophase::Staged;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// How to apply.
#[derive(Clone, Debug)]
pub struct ApplyOpts {
    /// State directory (default [`crate::DEFAULT_STATE_DIR`]).
    pub state_dir: PathBuf,
    /// `--confirm N`: revert after N seconds unless [`confirm`] arrives.
    pub confirm: Option<u64>,
    /// Identity of the session applying (the CLI passes `$SSH_CONNECTION`);
    /// a confirm from the same session is refused.
    pub session: Option<String>,
    /// iptables backend only: also write the ruleset to this
    /// `/etc/sysconfig/iptables`-style file, keeping a timestamped backup
    /// (when the plan's `saved_files` names none; the site sets it there).
    pub legacy_file: Option<PathBuf>,
    /// Record the kernel hash after apply (needed for drift; costs one
    /// `nft -s list table` per rampart table).
    pub record_kernel_hash: bool,
    /// Run `nft -c` / `iptables-restore --test` before the change. The
    /// kernel transaction is atomic either way (a refused script leaves the
    /// old ruleset); the check only keeps a refused plan from touching
    /// sysctls or scheduling a revert. Default true.
    pub check: bool,
    /// Send only the difference to the running plan when that is possible
    /// (see [`crate::incremental`]); a full replace otherwise. Default true.
    pub incremental: bool,
    /// `plan.content_hash()` when the caller has just computed it (the
    /// agent does, to skip an unchanged plan): hashing 2.7 MB again costs
    /// a few ms of every change. Checked in debug builds.
    pub plan_hash: Option<String>,
}

impl ApplyOpts {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        ApplyOpts {
            state_dir: state_dir.into(),
            confirm: None,
            session: None,
            legacy_file: None,
            record_kernel_hash: true,
            check: true,
            incremental: true,
            plan_hash: None,
        }
    }
}

impl Default for ApplyOpts {
    fn default() -> Self {
        Self::new(crate::DEFAULT_STATE_DIR)
    }
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct ApplyOutcome {
    pub applied: Applied,
    /// Set with `--confirm`: the scheduled revert.
    pub pending: Option<Pending>,
    /// The boot files replaced (ipset, iptables, ip6tables, in that
    /// order): each with its backup and recovery commands.
    pub legacy: Vec<LegacyWrite>,
    /// Sysctls written before the ruleset (tightening) and after it.
    pub sysctls_before: Vec<(String, String)>,
    pub sysctls_after: Vec<(String, String)>,
    /// How the ruleset reached the kernel.
    pub mode: ApplyMode,
    /// Time of the kernel step alone (the `nft -f` / restore that swaps the
    /// ruleset in), without checks and recording.
    pub kernel_time: std::time::Duration,
    /// What the network side changed (WireGuard, addresses, routes, rules;
    /// see [`crate::net`]); empty when it already was the plan.
    pub network: Vec<String>,
    /// Wall time of each step of this apply, in order (for logs and benches).
    pub timings: Timings,
    /// Why the difference alone could not be sent (when it could not).
    pub not_incremental: Option<String>,
}

/// Wall time of named steps, in the order they ran.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    pub steps: Vec<(&'static str, std::time::Duration)>,
    last: Option<std::time::Instant>,
}

impl Timings {
    pub fn start() -> Timings {
        Timings {
            steps: Vec::new(),
            last: Some(std::time::Instant::now()),
        }
    }

    /// Record the time since the previous mark as step `name`.
    pub fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        if let Some(l) = self.last {
            self.steps.push((name, now - l));
        }
        self.last = Some(now);
    }
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (n, d)) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{n} {:.1} ms", d.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}

/// How an apply changed the kernel's ruleset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApplyMode {
    /// rampart's tables replaced as a whole (and why not incrementally).
    Full { why: String },
    /// Only the difference was sent, in one transaction.
    Incremental {
        chains: Vec<String>,
        elements_added: usize,
        elements_deleted: usize,
    },
}

/// Drift between the kernel and the recorded plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Kernel matches the hash recorded right after apply.
    InSync,
    /// Someone changed rampart's tables since.
    Drifted { expected: String, actual: String },
    /// No plan, or no hash recorded.
    Unknown,
}

/// What `status` reports.
#[derive(Clone, Debug)]
pub struct Status {
    pub current: Option<Applied>,
    pub last_good_hash: Option<String>,
    pub drift: Drift,
    pub pending: Option<Pending>,
    /// The most recent change that was reverted because nobody confirmed it.
    pub last_reverted: Option<Pending>,
    /// Where the network side (WireGuard, routes, rules) differs from the
    /// running plan; empty when in sync.
    pub network: Vec<String>,
}

fn validate(plan: &Plan) -> Result<BTreeSet<TableRef>, Error> {
    for (k, v) in &plan.sysctls {
        if !sysctl::valid_key(k) {
            return Err(Error::InvalidPlan(format!("bad sysctl key `{k}`")));
        }
        if !sysctl::valid_value(v) {
            return Err(Error::InvalidPlan(format!("bad value for sysctl `{k}`")));
        }
    }
    match plan.backend {
        Backend::Nftables => {
            if plan.ruleset6.is_some() || plan.ipsets.is_some() {
                return Err(Error::InvalidPlan(
                    "ruleset6/ipsets belong to the iptables backend".into(),
                ));
            }
            script_tables(&plan.ruleset).map_err(Error::InvalidPlan)
        }
        Backend::Iptables => {
            if plan.ruleset.trim().is_empty() {
                return Err(Error::InvalidPlan("empty iptables ruleset".into()));
            }
            Ok(BTreeSet::new())
        }
    }
}

fn well_known_tables() -> [TableRef; 2] {
    [
        TableRef {
            family: "inet".into(),
            name: "rampart".into(),
        },
        TableRef {
            family: "bridge".into(),
            name: "rampart".into(),
        },
    ]
}

fn owned_tables(sys: &dyn System) -> Result<BTreeSet<TableRef>, Error> {
    Ok(sys
        .nft_tables()?
        .into_iter()
        .filter(|t| is_owned(&t.name))
        .collect())
}

fn normalize_save(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        if l.starts_with('#') {
            continue;
        }
        // ":CHAIN POLICY [packets:bytes]" -> drop counters
        let l = match (l.starts_with(':'), l.rfind(" [")) {
            (true, Some(i)) => &l[..i],
            _ => l,
        };
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Hash of the normalized kernel state rampart owns: the stateless listing
/// of every rampart nft table (nftables), or iptables-save without
/// comments and counters (iptables).
pub fn kernel_hash(sys: &dyn System, backend: Backend, v6: bool) -> Result<String, Error> {
    let mut text = String::new();
    match backend {
        Backend::Nftables => {
            for t in owned_tables(sys)? {
                text.push_str(&sys.nft_list_table(&t)?);
            }
        }
        Backend::Iptables => {
            text.push_str(&normalize_save(&sys.ipt_save(IpFamily::V4)?));
            if v6 {
                text.push_str("\0v6\n");
                text.push_str(&normalize_save(&sys.ipt_save(IpFamily::V6)?));
            }
        }
    }
    Ok(sha256_hex(text.as_bytes()))
}

/// A pending change whose deadline passed this long ago without its revert
/// running (reboot, timer lost) is reverted by the next apply first.
pub const OVERDUE_GRACE_SECS: u64 = 2;

/// Run an overdue revert script now, in the foreground. It races on the same
/// rename as a late scheduled run, so it cannot run twice.
fn run_overdue_revert(state: &StateDir, p: &Pending) -> Result<(), Error> {
    let script = state.path(&format!("revert-{}.sh", p.id));
    let out = std::process::Command::new("/bin/sh")
        .arg(&script)
        .arg("0")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::Spawn {
            command: format!("/bin/sh {}", script.display()),
            source: e,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            command: format!("/bin/sh {} 0", script.display()),
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

fn rename_if_exists(state: &StateDir, from: &str, to: &str) -> Result<bool, Error> {
    match std::fs::rename(state.path(from), state.path(to)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(&state.path(from), e)),
    }
}

/// Remove leftovers of earlier confirm cycles (but the files of the
/// pending change `keep`); refuse while a revert runs.
fn clean_cycles(state: &StateDir, now: u64, keep: Option<&str>) -> Result<(), Error> {
    let rd = std::fs::read_dir(state.root()).map_err(|e| Error::io(state.root(), e))?;
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if keep.is_some_and(|id| name.contains(id)) {
            continue;
        }
        if let Some(id) = name
            .strip_prefix("reverting-")
            .and_then(|r| r.strip_suffix(".json"))
        {
            let age = ent
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .map(|d| d.as_secs())
                .unwrap_or(u64::MAX);
            if age < 60 {
                return Err(Error::PendingConfirmation {
                    id: format!("{id} (revert running)"),
                    deadline: now,
                });
            }
        }
        let old = ["revert-", "confirmed-", "cancelled-", "reverting-"]
            .iter()
            .any(|p| name.starts_with(p));
        if old {
            let _ = std::fs::remove_file(ent.path());
        }
    }
    Ok(())
}

/// Check, snapshot, schedule the revert (with `--confirm`), then apply the
/// plan as one kernel transaction, with sysctls ordered so the host never
/// opens, and record the result. On any error before the kernel step
/// nothing is changed; if the kernel refuses, the old ruleset stays.
pub fn apply(sys: &dyn System, plan: &Plan, opts: &ApplyOpts) -> Result<ApplyOutcome, Error> {
    let state = StateDir::open(&opts.state_dir)?;
    let _lock = state.lock()?;
    clean_at_start();
    apply_locked(sys, &state, plan, opts, false)
}

/// Once per process, before its first apply: remove the script files of
/// rampart processes killed before removing theirs. (Staged kernel objects
/// such a process left are unreachable; the next full replace deletes every
/// object of rampart's tables that the new plan does not hold, and the
/// agent's start-up check sees them as drift.)
fn clean_at_start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        crate::system::clean_stale_scripts();
    });
}

/// `cancel_pending` (rollback): a change waiting for confirmation is
/// cancelled once everything that can fail before the switch went through
/// (so a rollback refused by a full disk leaves its revert scheduled), and
/// put back if the kernel then refuses the ruleset.
fn apply_locked(
    sys: &dyn System,
    state: &StateDir,
    plan: &Plan,
    opts: &ApplyOpts,
    cancel_pending: bool,
) -> Result<ApplyOutcome, Error> {
    let mut tm = Timings::start();
    let state = state.clone();
    let plan_tables = validate(plan)?;
    let now = sys.now();
    let to_cancel = match state.pending()? {
        Some(p) if cancel_pending => Some(p),
        _ => None,
    };
    if let Some(p) = state.pending()?.filter(|_| !cancel_pending) {
        if now <= p.deadline + OVERDUE_GRACE_SECS {
            return Err(Error::PendingConfirmation {
                id: p.id,
                deadline: p.deadline,
            });
        }
        run_overdue_revert(&state, &p)?;
    }
    clean_cycles(&state, now, to_cancel.as_ref().map(|p| p.id.as_str()))?;
    let current = state.read_applied(CURRENT)?;
    let plan_hash = match &opts.plan_hash {
        Some(h) => {
            debug_assert_eq!(
                *h,
                plan.content_hash(),
                "ApplyOpts::plan_hash is not this plan's"
            );
            h.clone()
        }
        None => plan.content_hash(),
    };
    tm.mark("read state");

    // 1. Build and check what the kernel will get: the difference to the
    // running plan when the kernel provably still runs it, else everything.
    let mut mode = ApplyMode::Full { why: String::new() };
    let mut delta = None;
    let mut pins = None;
    let mut not_incremental = None;
    if plan.backend == Backend::Nftables {
        match incremental_delta(sys, plan, &plan_hash, opts, current.as_ref()) {
            Ok((d, p)) => {
                pins = p;
                mode = ApplyMode::Incremental {
                    chains: d.chains.clone(),
                    elements_added: d.elements_added,
                    elements_deleted: d.elements_deleted,
                };
                delta = Some(d);
            }
            Err(why) => {
                not_incremental = Some(why.clone());
                mode = ApplyMode::Full { why }
            }
        }
        tm.mark("delta");
    }
    let (script, owned_now, staged) = match (&delta, plan.backend) {
        (Some(_), _) => (String::new(), BTreeSet::new(), None),
        _ => full_script(sys, plan, opts, &plan_tables, current.as_ref(), &mut tm)?,
    };

    // 2. Sysctls: the target, what they are now, what they were before rampart.
    let mut target = plan.sysctls.clone();
    if let Some(cur) = &current {
        for k in cur.plan.sysctls.keys() {
            if !target.contains_key(k) {
                if let Some(orig) = cur.sysctls_before.get(k) {
                    target.insert(k.clone(), orig.clone());
                }
            }
        }
    }
    let keys: Vec<&str> = target.keys().map(String::as_str).collect();
    let now_values: BTreeMap<String, String> = keys
        .iter()
        .map(|k| k.to_string())
        .zip(sys.sysctl_get_many(&keys)?)
        .collect();
    let mut sysctls_before_rampart = BTreeMap::new();
    for k in plan.sysctls.keys() {
        let orig = current
            .as_ref()
            .and_then(|c| c.sysctls_before.get(k).cloned())
            .unwrap_or_else(|| now_values[k].clone());
        sysctls_before_rampart.insert(k.clone(), orig);
    }
    let (sc_before, sc_after) = sysctl::order(&now_values, &target);
    tm.mark("sysctls read");

    let legacy_preps =
        legacy::prepare_all(plan, opts.legacy_file.as_deref(), &sys.programs(), now)?;

    // 2b. Everything that can fail after the switch, checked before it:
    // the network side's key files, that every sysctl can be written, and
    // the record written (the temp file of the new `current.plan`, so a
    // full state disk refuses the change here, not after it).
    crate::net::preflight(plan)?;
    let written: Vec<&str> = sc_before
        .iter()
        .chain(&sc_after)
        .map(|(k, _)| k.as_str())
        .collect();
    sys.sysctl_writable(&written)?;
    // In place: still staged, under the same salt, refilled chains pinned.
    let in_place_guess = pins.is_some() && current.as_ref().is_some_and(|c| c.nft_staged);
    let mut applied = Applied {
        plan: plan.clone(),
        plan_hash: plan_hash.clone(),
        applied_at: now,
        kernel_hash: None,
        nft_genid: None,
        nft_staged: staged.is_some() || in_place_guess,
        nft_salt: match (&staged, in_place_guess) {
            (Some(s), _) => Some(s.salt.clone()),
            (None, true) => current.as_ref().and_then(|c| c.nft_salt.clone()),
            _ => None,
        },
        nft_pins: pins.clone().filter(|_| in_place_guess).unwrap_or_default(),
        incomplete: None,
        sysctls_before: sysctls_before_rampart,
    };
    let record = state.prepare(&applied, current.is_some(), opts.confirm.is_none())?;
    tm.mark("record prepared");
    // Rollback: the change it replaces no longer waits for confirmation.
    if let Some(p) = &to_cancel {
        rename_if_exists(
            &state,
            &format!("pending-{}.json", p.id),
            &format!("cancelled-{}.json", p.id),
        )?;
    }
    let uncancel = |state: &StateDir| {
        if let Some(p) = &to_cancel {
            let _ = rename_if_exists(
                state,
                &format!("cancelled-{}.json", p.id),
                &format!("pending-{}.json", p.id),
            );
        }
    };

    // 3. With --confirm: snapshot and schedule the revert before touching anything.
    let pending = match opts.confirm {
        Some(secs) => Some(schedule_revert(
            sys,
            &state,
            plan,
            &plan_hash,
            &opts.session,
            secs,
            now,
            &owned_now,
            &plan_tables,
            current.as_ref(),
            &target,
            &now_values,
            &legacy_preps,
        )?),
        None => None,
    };
    let cancel = |state: &StateDir| {
        if let Some(p) = &pending {
            let _ = rename_if_exists(
                state,
                &format!("pending-{}.json", p.id),
                &format!("cancelled-{}.json", p.id),
            );
        }
    };

    // 4. Tighten, swap in one transaction, relax.
    let mut done_before: Vec<(String, String)> = Vec::new();
    for (k, v) in &sc_before {
        if let Err(e) = sys.sysctl_set(k, v) {
            for (k, _) in done_before.iter().rev() {
                let _ = sys.sysctl_set(k, &now_values[k.as_str()]);
            }
            cancel(&state);
            uncancel(&state);
            return Err(e);
        }
        done_before.push((k.clone(), v.clone()));
    }
    let mut staged_used = staged.clone();
    let restage = || {
        let all = replaced_tables(sys, plan, opts, &plan_tables, current.as_ref()).ok()?;
        staged_replace(sys, plan, &all, None, false)
    };
    let t_kernel = std::time::Instant::now();
    let mut kernel_step = "kernel";
    let kernel = match (plan.backend, &delta) {
        (Backend::Nftables, Some(d)) => {
            let r = if d.is_empty() {
                Ok(())
            } else if !d.in_place.is_empty() || !d.in_place_sets.is_empty() {
                // The generation the commands were computed against: the
                // kernel refuses the batch if anything committed since.
                let genid = current
                    .as_ref()
                    .and_then(|c| c.nft_genid.as_deref())
                    .and_then(|g| g.rsplit('/').next())
                    .and_then(|g| g.parse().ok());
                sys.nft_apply_in_place(&d.in_place, &d.in_place_sets, genid)
                    .map(|batch| {
                        if batch {
                            kernel_step = "kernel (own netlink batch)";
                        }
                    })
            } else {
                sys.nft_apply(&d.script)
            };
            match r {
                Ok(()) => Ok(()),
                // The kernel refused the difference (it does not run what
                // the record says after all): replace everything, checked.
                Err(e) => {
                    pins = None;
                    mode = ApplyMode::Full {
                        why: format!("the incremental transaction failed: {e}"),
                    };
                    full_script(sys, plan, opts, &plan_tables, current.as_ref(), &mut tm).and_then(
                        |(full, _, st)| {
                            replace_nft(sys, &full, st.as_ref(), &restage, &mut tm).map(|used| {
                                staged_used = used;
                            })
                        },
                    )
                }
            }
        }
        (Backend::Nftables, None) => replace_nft(sys, &script, staged.as_ref(), &restage, &mut tm)
            .map(|used| {
                staged_used = used;
            }),
        (Backend::Iptables, _) => (|| {
            if let Some(sets) = &plan.ipsets {
                sys.ipset_restore(sets)?;
            }
            sys.ipt_restore(IpFamily::V4, &plan.ruleset)?;
            if let Some(r6) = &plan.ruleset6 {
                sys.ipt_restore(IpFamily::V6, r6)?;
            }
            Ok(())
        })(),
    };
    let kernel_time = t_kernel.elapsed();
    tm.mark(kernel_step);
    if let (Ok(()), Some(st)) = (&kernel, &staged_used) {
        if st.reused > 0 {
            // Only what changed was staged: the rest kept running untouched.
            mode = ApplyMode::Incremental {
                chains: st.chains.clone(),
                elements_added: st.elements_added,
                elements_deleted: st.elements_deleted,
            };
        }
    }
    if let Err(e) = kernel {
        for (k, _) in done_before.iter().rev() {
            let _ = sys.sysctl_set(k, &now_values[k.as_str()]);
        }
        cancel(&state);
        uncancel(&state);
        return Err(Error::ApplyFailed(Box::new(e)));
    }
    // From here on the new ruleset is live: nothing undoes it, and every
    // failure is reported as what it is (`Error::AfterSwitch`).
    let mut done = vec![format!(
        "ruleset switched: the kernel runs plan {}",
        &plan_hash[..plan_hash.len().min(12)]
    )];
    for (k, v) in &done_before {
        done.push(format!("sysctl {k} = {v} (before the switch)"));
    }
    let mut failed: Vec<String> = Vec::new();
    for (k, v) in &sc_after {
        match sys.sysctl_set(k, v) {
            Ok(()) => done.push(format!("sysctl {k} = {v}")),
            Err(e) => failed.push(format!("sysctl {k} = {v}: {e}")),
        }
    }

    // 4b. The network side, after the firewall that guards it.
    let network = match crate::net::apply_network(sys, current.as_ref().map(|c| &c.plan), plan) {
        Ok(n) => {
            done.extend(n.changes.iter().map(|c| format!("network: {c}")));
            n
        }
        Err(e) => {
            failed.push(e.to_string());
            Default::default()
        }
    };
    tm.mark("network");
    // The boot files, in the order the boot loads them (sets first): each
    // replaced only now that the kernel runs what it holds.
    let mut legacy = Vec::new();
    for (prep, content, restore_cmd) in &legacy_preps {
        match legacy::commit(prep, content, restore_cmd) {
            Ok(l) => {
                done.push(format!("saved: {}", l.path.display()));
                legacy.push(l);
            }
            Err(e) => failed.push(format!("saved file {}: {e}", prep.path.display())),
        }
    }

    // 5. Record.
    applied.kernel_hash = if opts.record_kernel_hash {
        kernel_hash(sys, plan.backend, plan.ruleset6.is_some()).ok()
    } else {
        None
    };
    applied.nft_genid = match plan.backend {
        Backend::Nftables => sys.nft_genid(),
        Backend::Iptables => None,
    };
    tm.mark("drift hash");
    if let Some(st) = &staged_used {
        names_cache::put(
            &plan_hash,
            &st.salt,
            &Default::default(),
            std::sync::Arc::new(st.names.clone()),
        );
    }
    let in_place = pins.is_some() && current.as_ref().is_some_and(|c| c.nft_staged);
    applied.nft_staged = staged_used.is_some() || in_place;
    applied.nft_salt = match (&staged_used, in_place) {
        (Some(s), _) => Some(s.salt.clone()),
        (None, true) => current.as_ref().and_then(|c| c.nft_salt.clone()),
        _ => None,
    };
    applied.nft_pins = pins.filter(|_| in_place).unwrap_or_default();
    if !failed.is_empty() {
        applied.incomplete = Some(failed.join("; "));
    }
    let recorded = state.commit(record, &applied);
    if !failed.is_empty() || recorded.is_err() {
        if let Some(p) = &pending {
            done.push(format!(
                "revert scheduled: back to the previous ruleset in {} s unless confirmed",
                p.deadline.saturating_sub(now)
            ));
        }
        return Err(Error::AfterSwitch {
            plan_hash: plan_hash.clone(),
            done,
            failed,
            record: match recorded {
                Ok(()) => None,
                Err(e) => Some(Box::new(e)),
            },
        });
    }
    tm.mark("record");
    Ok(ApplyOutcome {
        applied,
        pending,
        legacy,
        sysctls_before: sc_before,
        sysctls_after: sc_after,
        mode,
        kernel_time,
        network: network.changes,
        timings: tm,
        not_incremental,
    })
}

/// The difference to send instead of the whole tables, or why not. With
/// pins: the running plan is staged and the difference refills staged
/// chains in place ([`crate::inplace`]); the record keeps these pins.
fn incremental_delta(
    sys: &dyn System,
    plan: &Plan,
    plan_hash: &str,
    opts: &ApplyOpts,
    current: Option<&Applied>,
) -> Result<(crate::incremental::Delta, Option<crate::twophase::Pins>), String> {
    if !opts.incremental {
        return Err("incremental apply is off".into());
    }
    if opts.confirm.is_some() {
        return Err("--confirm snapshots and replaces the whole tables".into());
    }
    let cur = current
        .filter(|c| c.plan.backend == Backend::Nftables)
        .ok_or("no nftables plan runs")?;
    let recorded = cur
        .nft_genid
        .as_ref()
        .ok_or("no ruleset generation was recorded")?;
    match sys.nft_genid() {
        Some(g) if &g == recorded => {}
        Some(_) => {
            return Err("the kernel's ruleset changed since the last apply".into());
        }
        None => return Err("the ruleset generation cannot be read".into()),
    }
    if cur.nft_staged {
        // The kernel runs the plan under staged names (see twophase): a
        // rules-only change refills those chains in place; anything else
        // is staged (reusing what did not change).
        let salt = cur.nft_salt.as_deref().unwrap_or_default();
        let names = names_cache::get(&cur.plan_hash, salt, &cur.nft_pins, || {
            crate::twophase::kernel_names(&cur.plan.ruleset, salt, &cur.nft_pins)
        })
        .map_err(|e| format!("the running plan is staged, restaging: {e}"))?;
        let ip = crate::inplace::in_place(&cur.plan.ruleset, &plan.ruleset, &names, &cur.nft_pins)
            .map_err(|e| format!("the running plan is staged, restaging what changed: {e}"))?;
        let cmds = crate::inplace::commands(&ip, |t, chain| {
            sys.nft_rule_handles(t, chain).map_err(|e| e.to_string())
        })
        .map_err(|e| format!("the running plan is staged, restaging what changed: {e}"))?;
        let mut script = crate::inplace::render(&cmds);
        script.push_str(&crate::inplace::render_sets(&ip.sets));
        // Changed chains keep their names: the new plan's names are these.
        names_cache::put(plan_hash, salt, &ip.pins, names);
        let delta = crate::incremental::Delta {
            script,
            chains: ip.chains,
            elements_added: ip.sets.iter().map(|s| s.added.len()).sum(),
            elements_deleted: ip.sets.iter().map(|s| s.deleted.len()).sum(),
            in_place: cmds,
            in_place_sets: ip.sets,
        };
        return Ok((delta, Some(ip.pins)));
    }
    crate::incremental::diff(&cur.plan.ruleset, &plan.ruleset)
        .map(|d| (d, None))
        .map_err(|e| e.0)
}

/// The kernel names of the last staged plans this process applied (one
/// entry), so that a run of small changes does not derive them from the
/// whole script each time. Keyed by plan hash, salt and pins: the names
/// are a pure function of those.
mod names_cache {
    use crate::twophase::{KernelNames, Pins};
    use std::sync::{Arc, Mutex};

    static CACHE: Mutex<Option<(String, Arc<KernelNames>)>> = Mutex::new(None);

    fn key(plan_hash: &str, salt: &str, pins: &Pins) -> String {
        format!("{plan_hash}\0{salt}\0{pins:?}")
    }

    pub fn get(
        plan_hash: &str,
        salt: &str,
        pins: &Pins,
        derive: impl FnOnce() -> Result<KernelNames, String>,
    ) -> Result<Arc<KernelNames>, String> {
        let k = key(plan_hash, salt, pins);
        if let Ok(g) = CACHE.lock() {
            if let Some((ck, names)) = g.as_ref() {
                if *ck == k {
                    return Ok(names.clone());
                }
            }
        }
        let names = Arc::new(derive()?);
        put(plan_hash, salt, pins, names.clone());
        Ok(names)
    }

    pub fn put(plan_hash: &str, salt: &str, pins: &Pins, names: Arc<KernelNames>) {
        if let Ok(mut g) = CACHE.lock() {
            *g = Some((key(plan_hash, salt, pins), names));
        }
    }
}

/// Replace rampart's tables: in three transactions when the plan could be
/// staged (see [`crate::twophase`]), else in one.
fn replace_nft(
    sys: &dyn System,
    script: &str,
    staged: Option<&Staged>,
    restage: impl Fn() -> Option<Staged>,
    tm: &mut Timings,
) -> Result<Option<Staged>, Error> {
    match staged {
        Some(st) => match st.apply_marked(sys, tm) {
            Ok(()) => Ok(Some(st.clone())),
            // A change against reused objects was refused (the kernel does
            // not hold what the record says after all): stage everything.
            Err(_) if st.reused > 0 => match restage() {
                Some(all) => all.apply(sys).map(|()| Some(all)),
                None => sys.nft_apply(script).map(|()| None),
            },
            Err(e) => Err(e),
        },
        None => sys.nft_apply(script).map(|()| None),
    }
}

/// The staged replace of `all` by the plan, or `None` when the plan is not
/// one the two-phase path understands or the kernel cannot be listed.
fn staged_replace(
    sys: &dyn System,
    plan: &Plan,
    all: &BTreeSet<TableRef>,
    current: Option<&Applied>,
    reuse: bool,
) -> Option<Staged> {
    // Reuse staged objects only while the kernel provably runs the record.
    let trusted = current.filter(|c| {
        reuse
            && c.nft_staged
            && c.plan.backend == Backend::Nftables
            && c.nft_genid.is_some()
            && sys.nft_genid() == c.nft_genid
    });
    // Then the record says what the kernel holds; otherwise ask the kernel.
    let recorded = trusted.and_then(|c| {
        crate::twophase::recorded_objects(
            &c.plan.ruleset,
            c.nft_salt.as_deref().unwrap_or_default(),
            &c.nft_pins,
        )
    });
    let kernel = match recorded {
        Some(k) => k,
        None => crate::twophase::list_kernel(sys, all).ok()?,
    };
    let fresh = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let no_pins = crate::twophase::Pins::new();
    let running = crate::twophase::Running {
        script: trusted.map(|c| {
            (
                c.plan.ruleset.as_str(),
                c.nft_salt.as_deref().unwrap_or_default(),
            )
        }),
        pins: trusted.map(|c| &c.nft_pins).unwrap_or(&no_pins),
        fresh_salt: &fresh,
    };
    crate::twophase::stage(&plan.ruleset, all, &kernel, &running)
        .ok()
        .flatten()
}

/// Every table a full replace replaces: the plan's, the recorded plan's (so
/// a table dropped from the plan goes away), rampart's well-known ones, and
/// with --confirm every rampart table that runs now.
fn replaced_tables(
    sys: &dyn System,
    _plan: &Plan,
    opts: &ApplyOpts,
    plan_tables: &BTreeSet<TableRef>,
    current: Option<&Applied>,
) -> Result<BTreeSet<TableRef>, Error> {
    let mut all: BTreeSet<TableRef> = plan_tables.clone();
    if opts.confirm.is_some() {
        all.extend(owned_tables(sys)?);
    }
    all.extend(well_known_tables());
    if let Some(cur) = current.filter(|c| c.plan.backend == Backend::Nftables) {
        all.extend(script_tables(&cur.plan.ruleset).unwrap_or_default());
    }
    Ok(all)
}

/// The whole-table replace script (checked with `nft -c` unless opted
/// out), the rampart tables found running (with `--confirm`), and the
/// staged form of the replace when there is one.
fn full_script(
    sys: &dyn System,
    plan: &Plan,
    opts: &ApplyOpts,
    plan_tables: &BTreeSet<TableRef>,
    current: Option<&Applied>,
    tm: &mut Timings,
) -> Result<(String, BTreeSet<TableRef>, Option<Staged>), Error> {
    match plan.backend {
        Backend::Nftables => {
            // Tables replaced: the plan's, the recorded plan's (so a table
            // dropped from the plan goes away), rampart's well-known ones,
            // and with --confirm every rampart table that runs now. Listing
            // the kernel's tables costs a full ruleset fetch (~0.5 s at 100k
            // set elements), so the plain path does without it; a stray
            // table made by hand shows up as drift instead.
            let owned_now = if opts.confirm.is_some() {
                owned_tables(sys)?
            } else {
                BTreeSet::new()
            };
            let all = replaced_tables(sys, plan, opts, plan_tables, current)?;
            let mut script = delete_prelude(&all);
            script.push_str(&plan.ruleset);
            if !script.ends_with('\n') {
                script.push('\n');
            }
            let mut staged = staged_replace(sys, plan, &all, current, opts.incremental);
            tm.mark("stage plan");
            if opts.check {
                let check = |st: &Option<Staged>| match st {
                    Some(st) => sys.nft_check(&st.check_script()),
                    None => sys.nft_check(&script),
                };
                if let Err(e) = check(&staged) {
                    // A change against reused objects the kernel refuses: it
                    // does not hold what the record says; stage everything.
                    if !staged.as_ref().is_some_and(|st| st.reused > 0) {
                        return Err(Error::CheckFailed(Box::new(e)));
                    }
                    staged = staged_replace(sys, plan, &all, None, false);
                    check(&staged).map_err(|e| Error::CheckFailed(Box::new(e)))?;
                }
                tm.mark("nft -c");
            }
            Ok((script, owned_now, staged))
        }
        Backend::Iptables => {
            if opts.check {
                // The rules name the plan's ipsets, which iptables-restore
                // --test wants to exist: create the missing ones, empty (a
                // set no rule uses yet changes nothing; existing sets keep
                // their contents until the kernel step swaps them).
                if let Some(sets) = &plan.ipsets {
                    let creates: String = sets
                        .lines()
                        .filter(|l| l.starts_with("create ") && l.ends_with(" -exist"))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    if !creates.is_empty() {
                        sys.ipset_restore(&creates)
                            .map_err(|e| Error::CheckFailed(Box::new(e)))?;
                    }
                }
                sys.ipt_check(IpFamily::V4, &plan.ruleset)
                    .map_err(|e| Error::CheckFailed(Box::new(e)))?;
                if let Some(r6) = &plan.ruleset6 {
                    sys.ipt_check(IpFamily::V6, r6)
                        .map_err(|e| Error::CheckFailed(Box::new(e)))?;
                }
            }
            Ok((plan.ruleset.clone(), BTreeSet::new(), None))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn schedule_revert(
    sys: &dyn System,
    state: &StateDir,
    plan: &Plan,
    plan_hash: &str,
    session: &Option<String>,
    secs: u64,
    now: u64,
    owned_now: &BTreeSet<TableRef>,
    plan_tables: &BTreeSet<TableRef>,
    current: Option<&Applied>,
    target: &BTreeMap<String, String>,
    now_values: &BTreeMap<String, String>,
    legacy_preps: &[(legacy::LegacyPrep, String, String)],
) -> Result<Pending, Error> {
    let id = format!("{now}-{}", &plan_hash[..12]);
    let programs = sys.programs();
    let mut restores = Vec::new();
    match plan.backend {
        Backend::Nftables => {
            let all: BTreeSet<TableRef> = owned_now.union(plan_tables).cloned().collect();
            let prelude = delete_prelude(&all);
            let mut snap = prelude.clone();
            for t in owned_now {
                snap.push_str(&sys.nft_list_table(t)?);
            }
            // The revert must be loadable, or the deadline would restore
            // nothing. Check it now (against the kernel as it runs, which is
            // what it will replace); fall back to the recorded plan; refuse
            // the change if neither loads.
            let snap = match sys.nft_check(&snap) {
                Ok(()) => snap,
                Err(listing_err) => {
                    let alt = current
                        .filter(|c| c.plan.backend == Backend::Nftables)
                        .map(|c| format!("{prelude}{}\n", c.plan.ruleset));
                    match alt {
                        Some(alt) if sys.nft_check(&alt).is_ok() => alt,
                        _ => {
                            return Err(Error::NoRevert(format!(
                                "the running rampart tables do not reload: {listing_err}"
                            )))
                        }
                    }
                }
            };
            let file = format!("revert-{id}.rules");
            state.write(&file, snap.as_bytes(), 0o600)?;
            restores.push((vec![programs.nft.clone(), "-f".into(), "-".into()], file));
        }
        Backend::Iptables => {
            let file = format!("revert-{id}.rules");
            state.write(&file, sys.ipt_save(IpFamily::V4)?.as_bytes(), 0o600)?;
            restores.push((vec![programs.iptables_restore.clone()], file));
            if plan.ruleset6.is_some() {
                let file = format!("revert-{id}.rules6");
                state.write(&file, sys.ipt_save(IpFamily::V6)?.as_bytes(), 0o600)?;
                restores.push((vec![programs.ip6tables_restore.clone()], file));
            }
        }
    }
    if let Some(cur) = current {
        let data = serde_json::to_vec_pretty(cur).expect("serializable");
        state.write(&format!("revert-{id}.current"), &data, 0o600)?;
    }
    // Going back: from the target values to the ones that run now.
    let back: BTreeMap<String, String> = now_values
        .iter()
        .filter(|(k, v)| target.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (rb, ra) = sysctl::order(target, &back);
    let script = RevertScript {
        id: &id,
        state_dir: &state.root().to_string_lossy(),
        prefix: &sys.exec_prefix(),
        programs: &programs,
        restores,
        sysctls_before: rb,
        sysctls_after: ra,
        has_previous_record: current.is_some(),
        legacy: legacy_preps
            .iter()
            .map(|(p, _, _)| legacy::revert_lines(p))
            .collect(),
        network: revert_network(sys, current.map(|c| &c.plan), plan),
    }
    .render();
    let script_name = format!("revert-{id}.sh");
    state.write(&script_name, script.as_bytes(), 0o700)?;
    let mut pending = Pending {
        id: id.clone(),
        plan_hash: plan_hash.to_owned(),
        applied_at: now,
        deadline: now + secs,
        session: session.clone(),
        scheduled: String::new(),
    };
    let pending_name = format!("pending-{id}.json");
    let write_pending = |p: &Pending| {
        state.write(
            &pending_name,
            &serde_json::to_vec_pretty(p).expect("serializable"),
            0o600,
        )
    };
    write_pending(&pending)?;
    match sys.schedule(
        &state.path(&script_name),
        secs,
        &format!("rampart-revert-{id}"),
    ) {
        Ok(how) => {
            pending.scheduled = how;
            // Best effort: the record is only informative here; if the
            // revert already consumed it, do not recreate it.
            let tmp = state.path(&format!(".pending-{id}.update"));
            if state.path(&pending_name).exists()
                && crate::state::write_atomic(
                    &tmp,
                    &serde_json::to_vec_pretty(&pending).expect("serializable"),
                    0o600,
                )
                .is_ok()
            {
                let _ = rename_if_exists(state, &format!(".pending-{id}.update"), &pending_name);
            }
            Ok(pending)
        }
        Err(e) => {
            let _ = state.remove(&pending_name);
            Err(e)
        }
    }
}

/// Mark the pending change confirmed: its revert will do nothing, and the
/// change becomes the last good plan. `session` is the caller's session
/// identity (the CLI passes `$SSH_CONNECTION`); it must differ from the one
/// that applied when both are known. Refused while the apply is still running
/// (the current record does not show the pending plan yet).
pub fn confirm(state_dir: impl Into<PathBuf>, session: Option<&str>) -> Result<Applied, Error> {
    let state = StateDir::open(state_dir)?;
    let _lock = state.lock()?;
    let Some(p) = state.pending()? else {
        return Err(last_reverted(&state)?
            .map(|r| Error::AlreadyReverted(r.id))
            .unwrap_or(Error::NothingPending));
    };
    if let (Some(a), Some(b)) = (&p.session, session) {
        if a == b {
            return Err(Error::SameSession(a.clone()));
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if now > p.deadline {
        // The revert owns the change now, even if it has not run yet.
        return Err(Error::AlreadyReverted(format!(
            "{} (deadline passed {}s ago)",
            p.id,
            now - p.deadline
        )));
    }
    let current = state.read_applied(CURRENT)?;
    let Some(current) = current.filter(|c| c.plan_hash == p.plan_hash) else {
        return Err(Error::PendingConfirmation {
            id: format!("{} (apply has not finished)", p.id),
            deadline: p.deadline,
        });
    };
    if !rename_if_exists(
        &state,
        &format!("pending-{}.json", p.id),
        &format!("confirmed-{}.json", p.id),
    )? {
        return Err(Error::AlreadyReverted(p.id));
    }
    state.link_as(CURRENT, LAST_GOOD)?;
    Ok(current)
}

fn last_reverted(state: &StateDir) -> Result<Option<Pending>, Error> {
    let mut best: Option<Pending> = None;
    let rd = std::fs::read_dir(state.root()).map_err(|e| Error::io(state.root(), e))?;
    for ent in rd.flatten() {
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with("reverted-") && name.ends_with(".json") {
            if let Some(p) = crate::state::read_json::<Pending>(&ent.path())? {
                let newer = match &best {
                    Some(b) => p.applied_at >= b.applied_at,
                    None => true,
                };
                if newer {
                    best = Some(p);
                }
            }
        }
    }
    Ok(best)
}

/// Cancel any pending confirmation and apply the last good plan through the
/// same safe path.
pub fn rollback(sys: &dyn System, opts: &ApplyOpts) -> Result<ApplyOutcome, Error> {
    let state = StateDir::open(&opts.state_dir)?;
    let _lock = state.lock()?;
    clean_at_start();
    let last_good = state.read_applied(LAST_GOOD)?.ok_or(Error::NoLastGood)?;
    let opts = ApplyOpts {
        confirm: None,
        ..opts.clone()
    };
    apply_locked(sys, &state, &last_good.plan, &opts, true)
}

/// The boot path (`rampart restore`): load the last good plan from the
/// state directory, no site needed. A change still waiting for
/// confirmation (its timer died with the reboot) is cancelled, as by
/// [`rollback`]: an unconfirmed plan never comes back by itself.
/// `Error::NoLastGood` without a record: nothing is loaded.
pub fn restore(sys: &dyn System, opts: &ApplyOpts) -> Result<ApplyOutcome, Error> {
    rollback(sys, opts)
}

/// Whether the kernel's ruleset generation still is the one recorded right
/// after `c` was applied: then nothing was committed since, and the kernel
/// runs exactly what the apply left (no listing needed).
fn generation_unmoved(sys: &dyn System, c: &Applied) -> bool {
    c.plan.backend == Backend::Nftables
        && c.nft_genid.is_some()
        && sys.nft_genid().as_ref() == c.nft_genid.as_ref()
}

/// Drift of the kernel from the record `c`: no listing while the ruleset
/// generation did not move; otherwise the kernel hash against the one
/// recorded. A record without a kernel hash whose generation moved cannot
/// be vouched for: it counts as drifted (a repair re-applies the plan).
fn drift_of(sys: &dyn System, c: &Applied) -> Result<Drift, Error> {
    if generation_unmoved(sys, c) {
        return Ok(Drift::InSync);
    }
    Ok(match &c.kernel_hash {
        Some(expected) => {
            let actual = kernel_hash(sys, c.plan.backend, c.plan.ruleset6.is_some())?;
            if &actual == expected {
                Drift::InSync
            } else {
                Drift::Drifted {
                    expected: expected.clone(),
                    actual,
                }
            }
        }
        None if c.nft_genid.is_some() => Drift::Drifted {
            expected: "(no kernel hash recorded)".into(),
            actual: format!(
                "ruleset generation {} (applied at {})",
                sys.nft_genid().unwrap_or_default(),
                c.nft_genid.as_deref().unwrap_or_default()
            ),
        },
        None => Drift::Unknown,
    })
}

/// The drift check of the agent: [`status`]'s answer, and the record kept
/// cheap to check. A record applied without its kernel hash (the agent's
/// `record_kernel_hash = false`, which keeps the listing off the change's
/// path) gets it now, while the generation shows nothing changed since.
/// After someone else committed (another table, or the same content again)
/// and the kernel hash still matches, the record takes the new generation,
/// so the next check needs no listing either.
pub fn check_drift(sys: &dyn System, state_dir: impl Into<PathBuf>) -> Result<Drift, Error> {
    drift_check(sys, state_dir, false)
}

/// Only the recording part of [`check_drift`]: take the kernel hash an apply
/// left for later, if nothing was committed since (`Ok(true)`); compare
/// nothing, repair nothing.
pub fn record_kernel_hash(sys: &dyn System, state_dir: impl Into<PathBuf>) -> Result<bool, Error> {
    let state_dir = state_dir.into();
    let c = StateDir::open(&state_dir)?.read_applied(CURRENT)?;
    if !c.is_some_and(|c| c.kernel_hash.is_none() && generation_unmoved(sys, &c)) {
        return Ok(false);
    }
    drift_check(sys, state_dir, true).map(|d| d == Drift::InSync)
}

fn drift_check(
    sys: &dyn System,
    state_dir: impl Into<PathBuf>,
    record_only: bool,
) -> Result<Drift, Error> {
    let state = StateDir::open(state_dir)?;
    let Some(c) = state.read_applied(CURRENT)? else {
        return Ok(Drift::Unknown);
    };
    let unmoved = generation_unmoved(sys, &c);
    if record_only && !(unmoved && c.kernel_hash.is_none()) {
        return Ok(Drift::Unknown);
    }
    if unmoved && c.kernel_hash.is_some() {
        return Ok(Drift::InSync);
    }
    if c.plan.backend != Backend::Nftables || c.kernel_hash.is_none() && !unmoved {
        return drift_of(sys, &c);
    }
    // List (slow at scale) without holding the lock; keep the result only
    // if no transaction committed meanwhile.
    let before = sys.nft_genid();
    let actual = kernel_hash(sys, c.plan.backend, false)?;
    let after = sys.nft_genid();
    let steady = before.is_some() && before == after && (!record_only || before == c.nft_genid);
    let drift = match &c.kernel_hash {
        Some(expected) if expected != &actual => {
            return Ok(Drift::Drifted {
                expected: expected.clone(),
                actual,
            })
        }
        _ => Drift::InSync,
    };
    if steady {
        let _lock = state.lock()?;
        // Only if the record is still the one read (no apply meanwhile).
        if let Some(mut now) = state.read_applied(CURRENT)? {
            if now.plan_hash == c.plan_hash && now.nft_genid == c.nft_genid {
                now.kernel_hash = Some(actual);
                now.nft_genid = before;
                state.write_applied(CURRENT, &now)?;
            }
        }
    }
    Ok(drift)
}

/// What runs, whether it drifted, what waits for confirmation.
pub fn status(sys: &dyn System, state_dir: impl Into<PathBuf>) -> Result<Status, Error> {
    let state = StateDir::open(state_dir)?;
    let current = state.read_applied(CURRENT)?;
    let drift = match &current {
        Some(c) => drift_of(sys, c)?,
        None => Drift::Unknown,
    };
    let network = match &current {
        Some(c) if crate::net::has_network(&c.plan) => crate::net::network_drift(sys, &c.plan),
        _ => Vec::new(),
    };
    Ok(Status {
        network,
        last_good_hash: state.read_applied(LAST_GOOD)?.map(|a| a.plan_hash),
        current,
        drift,
        pending: state.pending()?,
        last_reverted: last_reverted(&state)?,
    })
}

/// The revert script's network lines.
fn revert_network(sys: &dyn System, old: Option<&Plan>, new: &Plan) -> Vec<String> {
    if !old.is_some_and(crate::net::has_network) && !crate::net::has_network(new) {
        return Vec::new();
    }
    crate::net::revert_lines(sys, old, new)
}

//! The rampart agent: keeps one node converged on its site, read from a
//! directory or an etcd prefix, through the one safe path that
//! `rampart apply` uses too ([`plan_for`]: resolve, compile, lock-out guard).
//!
//! Fail closed: a site that cannot be read, does not compile or is refused
//! by the guard never changes what runs; the last good ruleset stays.
//!
//! At start (the loop and `--once`) the agent compares the kernel with the
//! state's record before anything else: after a reboot the kernel runs no
//! rampart tables, after a `kill -9` mid-apply it may hold the next plan or
//! unreachable staged objects. Then it applies the site's plan even when
//! unchanged (or, when the site gives none, the recorded plan again)
//! before it reports `READY=1`. With `--netns` the nflog group and the
//! metrics port are bound inside that namespace.

mod metrics;
pub mod nflog;
mod notify;
mod signals;

pub use metrics::{serve_metrics, serve_metrics_in, Metrics};
pub use notify::{sd_notify, Watchdog};
pub use signals::Signals;

use rampart_apply::{ApplyOpts, Drift, HostSystem};
use rampart_store::{NodeStatus, SiteStore, SiteWatch, Snapshot, StoreError};
use rampart_types::{Diagnostics, SiteFiles};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use rampart_plan::{PlanOpts, Refusal, RefusalKind};

/// The nflog group every compiled log rule writes to (rampart_nft's and
/// rampart_ipt's `NFLOG_GROUP`).
pub const FWLOG_GROUP: u16 = 0;

/// A plan ready for `rampart_apply::apply`, with the warnings met on the way.
#[derive(Debug, Clone)]
pub struct Planned {
    pub plan: rampart_apply::Plan,
    pub node: rampart_types::names::NodeName,
    /// Warnings (and, with `force`, the guard's errors).
    pub diagnostics: Diagnostics,
    pub rendered: String,
    /// True when the guard refused and `force` overrode it.
    pub forced: bool,
    /// Rules and set elements of the compiled ruleset (for metrics).
    pub rules: usize,
    pub set_elements: usize,
}

/// The one safe path from a site to a plan: resolve, compile for `node`
/// (or the only node), run the lock-out guard. `force` turns a guard
/// refusal into a warning (the CLI's `--force`; the agent never forces).
/// The key store is the default one; see [`plan_for_with`].
pub fn plan_for(
    files: &SiteFiles,
    node: Option<&str>,
    origin_revision: &str,
    force: bool,
) -> Result<Planned, Refusal> {
    let opts = PlanOpts {
        force,
        origin_revision: origin_revision.to_owned(),
        ..PlanOpts::default()
    };
    plan_for_with(files, node, &opts)
}

/// [`plan_for`] with every option of `rampart_plan::build` (key store,
/// backend override). The plan is the one `rampart compile` prints.
pub fn plan_for_with(
    files: &SiteFiles,
    node: Option<&str>,
    opts: &PlanOpts,
) -> Result<Planned, Refusal> {
    plan_for_inner(files, node, opts, None)
}

/// What planning one revision keeps for the next ([`plan_for_cached`]):
/// `rampart_plan`'s cache, and the element count of each long list of the
/// last script (a list unchanged byte for byte is not counted again).
/// Holds the last revision's values, nothing older.
#[derive(Default)]
pub struct PlanCache {
    plan: rampart_plan::PlanCache,
    lists: Vec<(String, usize)>,
}

impl PlanCache {
    pub fn new() -> Self {
        Self::default()
    }
}

/// [`plan_for_with`], redoing only what changed since the revision `cache`
/// last planned (the agent keeps one): the plan is the same, byte for byte.
pub fn plan_for_cached(
    files: &SiteFiles,
    node: Option<&str>,
    opts: &PlanOpts,
    cache: &mut PlanCache,
) -> Result<Planned, Refusal> {
    plan_for_inner(files, node, opts, Some(cache))
}

/// A site without `firewall/cluster.fw` does not say whether the firewall
/// is on: `check` warns (E0706), but apply and the agent refuse it, so a
/// cluster.fw removed or moved away (an editor's save, `rm`) never removes
/// a running firewall. (With other firewall files the site is already
/// invalid, E0705.) docs/fail-closed.md.
fn refuse_unsaid_firewall(files: &SiteFiles, site: &rampart_plan::Site<'_>) -> Result<(), Refusal> {
    if files.get("firewall/cluster.fw").is_some() {
        return Ok(());
    }
    let mut diagnostics = rampart_types::Diagnostics::new();
    diagnostics.push(
        rampart_types::Diagnostic::new(
            rampart_types::codes::NO_FIREWALL_FILES,
            "the site has no firewall/cluster.fw: nothing is applied from a site that does not say whether its firewall is on",
        )
        .note("a missing cluster.fw is never read as \"firewall off\": the running ruleset stays")
        .hint("add firewall/cluster.fw with `[OPTIONS]` `enable: 1` (or `enable: 0` to run without the firewall)"),
    );
    Err(Refusal {
        kind: RefusalKind::Invalid,
        node: None,
        rendered: diagnostics.render(&site.ir.sources),
        message: "the site has no firewall/cluster.fw (E0706): refused, the running ruleset stays"
            .to_owned(),
        diagnostics,
    })
}

fn plan_for_inner(
    files: &SiteFiles,
    node: Option<&str>,
    opts: &PlanOpts,
    mut cache: Option<&mut PlanCache>,
) -> Result<Planned, Refusal> {
    let site = match cache.as_deref_mut() {
        Some(c) => rampart_plan::load_cached(files, opts, &mut c.plan)?,
        None => rampart_plan::load(files, opts)?,
    };
    refuse_unsaid_firewall(files, &site)?;
    let node = site.pick(node)?;
    let built = match cache.as_deref_mut() {
        Some(c) => site.build_cached(&node, &mut c.plan),
        None => site.build(&node),
    };
    let built = match built {
        Ok(b) => b,
        Err(mut r) => {
            // Site-wide warnings first, as the user reads them (an invalid
            // site's refusal already holds them).
            if r.kind != RefusalKind::Invalid {
                r.rendered = join_rendered(&site.warnings, &r.rendered);
            }
            return Err(r);
        }
    };
    let rampart_plan::NodePlan {
        mut plan,
        rendered,
        diagnostics,
        forced,
        model,
        ..
    } = built;
    plan.meta.compiled_at = now();
    let (rules, set_elements) = match plan.backend {
        rampart_apply::Backend::Nftables => {
            count_script_with(&plan.ruleset, cache.as_deref_mut().map(|c| &mut c.lists))
        }
        rampart_apply::Backend::Iptables => {
            let text = [Some(&plan.ruleset), plan.ruleset6.as_ref()];
            let rules = text
                .iter()
                .flatten()
                .flat_map(|t| t.lines())
                .filter(|l| l.starts_with("-A "))
                .count();
            let elements = plan
                .ipsets
                .iter()
                .flat_map(|t| t.lines())
                .filter(|l| l.starts_with("add "))
                .count();
            (rules, elements)
        }
    };
    let rendered = join_rendered(&site.warnings, &rendered);
    if let Some(c) = cache {
        // Done with the site and the model: what the cache lent them goes
        // back (no copies kept of the 100,000-entry set or the chains).
        c.plan.recycle(site, &node, Some(model));
    }
    Ok(Planned {
        rendered,
        diagnostics,
        node: plan.node.clone(),
        plan,
        forced,
        rules,
        set_elements,
    })
}

fn join_rendered(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ if a.ends_with('\n') => format!("{a}{b}"),
        _ => format!("{a}\n{b}"),
    }
}

/// Rough sizes of an nft script: rule lines inside chains, and elements of
/// `elements = { ... }` lists.
#[cfg(test)]
fn count_script(script: &str) -> (usize, usize) {
    count_script_with(script, None)
}

/// Lists shorter than this are counted each time, not kept.
const KEEP_LIST: usize = 4096;

/// [`count_script`], taking the count of a long list from `lists` (the
/// previous script's, in order) when its text is the same, and keeping
/// this script's there.
fn count_script_with(script: &str, mut lists: Option<&mut Vec<(String, usize)>>) -> (usize, usize) {
    let mut old = lists
        .as_deref_mut()
        .map(std::mem::take)
        .unwrap_or_default()
        .into_iter();
    let mut rules = 0;
    let mut elements = 0;
    let mut in_chain = false;
    let mut in_elems = false;
    let mut rest = script;
    while !rest.is_empty() {
        if in_elems {
            // The lines of a list before the one that closes it, at once
            // (100,000 elements at 100,000 lines).
            let close = rest.find('}').unwrap_or(rest.len());
            let body_end = rest[..close].rfind('\n').map_or(0, |i| i + 1);
            let body = &rest[..body_end];
            let count = |body: &str| {
                count_pieces(body.as_bytes()).unwrap_or_else(|| {
                    body.lines()
                        .map(|l| l.split(',').filter(|s| !s.trim().is_empty()).count())
                        .sum()
                })
            };
            match lists.as_deref_mut() {
                Some(keep) if body.len() >= KEEP_LIST => {
                    let (text, n) = match old.next() {
                        Some((t, n)) if t == body => (t, n),
                        _ => (body.to_owned(), count(body)),
                    };
                    elements += n;
                    keep.push((text, n));
                }
                _ => elements += count(body),
            }
            rest = &rest[body_end..];
            if rest.is_empty() {
                break;
            }
        }
        let (line, next) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        let t = line.trim();
        if in_elems {
            elements += t
                .split(',')
                .filter(|s| !s.trim().trim_end_matches('}').trim().is_empty())
                .count();
            if t.contains('}') {
                in_elems = false;
            }
            continue;
        }
        if let Some(rest) = t.strip_prefix("elements = {") {
            let body = rest.split('}').next().unwrap_or("");
            elements += body.split(',').filter(|s| !s.trim().is_empty()).count();
            in_elems = !rest.contains('}');
            continue;
        }
        if t.starts_with("chain ") {
            in_chain = true;
            continue;
        }
        if t == "}" {
            in_chain = false;
            continue;
        }
        if in_chain
            && !t.is_empty()
            && !t.starts_with("type ")
            && !t.starts_with("policy ")
            && !t.starts_with('#')
        {
            rules += 1;
        }
    }
    (rules, elements)
}

/// Pieces with something other than white space between the commas and
/// line ends of `text` (whole lines); `None` when it is not all ASCII.
fn count_pieces(text: &[u8]) -> Option<usize> {
    let mut n = 0;
    let mut content = false;
    for &b in text {
        match b {
            b',' | b'\n' => {
                n += usize::from(content);
                content = false;
            }
            b' ' | b'\t' | b'\r' | 0x0b | 0x0c => {}
            0x80.. => return None,
            _ => content = true,
        }
    }
    Some(n + usize::from(content))
}

/// This node's name when `--node` is not given: the host name up to the
/// first dot, as Proxmox names a node (`pve1` for `pve1.example.org`).
pub fn host_node_name() -> Option<String> {
    let h = nix::unistd::gethostname().ok()?;
    short_host_name(&h.to_string_lossy())
}

fn short_host_name(h: &str) -> Option<String> {
    let short = h.trim().split('.').next().unwrap_or("");
    (!short.is_empty()).then(|| short.to_owned())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// After an apply, the kernel hash is recorded once the site was quiet
/// this long (a burst of edits is applied first).
const HASH_AFTER_QUIET: Duration = Duration::from_millis(500);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Validated when the agent starts: it names state, status keys and logs.
    pub node: rampart_types::names::NodeName,
    pub state_dir: PathBuf,
    pub netns: Option<String>,
    /// Drift check (and, for a directory, nothing else: its watch polls).
    pub interval: Duration,
    /// One reconcile, then exit (exit status says whether it applied).
    pub once: bool,
    /// On exit, delete rampart's tables (an explicit choice; default keeps them).
    pub remove_on_exit: bool,
    /// The node's WireGuard key store (`rampart_wg::plan::DEFAULT_KEY_DIR`
    /// unless told otherwise).
    pub key_dir: String,
}

/// What one `--once` run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Unchanged,
    Refused,
    Failed,
}

pub struct Agent {
    cfg: AgentConfig,
    store: Box<dyn SiteStore>,
    sys: HostSystem,
    metrics: Arc<Metrics>,
    /// Revision and plan hash of what runs (after apply or found on start).
    running_revision: Option<String>,
    running_hash: Option<String>,
    current_plan: Option<rampart_apply::Plan>,
    applied_at: Option<u64>,
    errors: Vec<String>,
    /// The last store error was transient (etcd unreachable).
    store_down: bool,
    /// An apply left its kernel hash to be recorded when idle (since then).
    hash_due: Option<Instant>,
    /// How the last apply reached the kernel, the kernel step's time, and
    /// the time of each step of apply.
    last_apply: Option<(String, Duration, String)>,
    /// What planning the last revision kept for the next ([`plan_for_cached`]).
    plan_cache: PlanCache,
}

impl Agent {
    pub fn new(cfg: AgentConfig, store: Box<dyn SiteStore>, metrics: Arc<Metrics>) -> Agent {
        let sys = match &cfg.netns {
            Some(ns) => HostSystem::in_netns(ns.clone()),
            None => HostSystem::host(),
        };
        let mut a = Agent {
            cfg,
            store,
            sys,
            metrics,
            plan_cache: PlanCache::new(),
            running_revision: None,
            running_hash: None,
            current_plan: None,
            applied_at: None,
            errors: Vec::new(),
            store_down: false,
            hash_due: None,
            last_apply: None,
        };
        // What runs already (an agent restart must not re-apply needlessly).
        if let Ok(st) = rampart_apply::status(&a.sys, &a.cfg.state_dir) {
            if let Some(cur) = st.current {
                if cur.plan.node == a.cfg.node {
                    a.running_revision = Some(cur.plan.meta.origin_revision.clone());
                    // An incomplete apply (a step after the switch failed)
                    // is applied again.
                    a.running_hash =
                        Some(cur.plan_hash.clone()).filter(|_| cur.incomplete.is_none());
                    a.metrics.set_plan(&cur.plan_hash);
                    a.applied_at = Some(cur.applied_at);
                    a.current_plan = Some(cur.plan);
                }
            }
        }
        a
    }

    fn opts(&self) -> ApplyOpts {
        let mut o = ApplyOpts::new(&self.cfg.state_dir);
        // The kernel hash lists every rampart table (seconds at 100,000
        // set elements): it is taken after the change, when the agent is
        // idle ([`Agent::check_drift`]), not on the change's path.
        o.record_kernel_hash = false;
        o
    }

    /// Compile `snap`, guard, apply unless the same plan already runs.
    pub fn reconcile(&mut self, snap: &Snapshot) -> Outcome {
        let opts = PlanOpts {
            key_dir: self.cfg.key_dir.clone(),
            origin_revision: snap.revision.clone(),
            ..PlanOpts::default()
        };
        let t_plan = Instant::now();
        let planned = plan_for_cached(
            &snap.files,
            Some(&self.cfg.node),
            &opts,
            &mut self.plan_cache,
        );
        let plan_time = t_plan.elapsed();
        let planned = match planned {
            Ok(p) => p,
            Err(r) => {
                self.metrics.refusals.inc();
                tracing::error!(
                    revision = %snap.revision,
                    kind = ?r.kind,
                    "site revision not applied, the running ruleset stays: {}\n{}",
                    r.message,
                    r.rendered
                );
                self.errors = vec![format!("revision {}: {}", snap.revision, r.message)];
                self.report();
                return Outcome::Refused;
            }
        };
        if planned.diagnostics.warnings() > 0 {
            tracing::warn!(revision = %snap.revision, "{}", planned.rendered);
        }
        let t_hash = Instant::now();
        let hash = planned.plan.content_hash();
        let hash_time = t_hash.elapsed();
        if self.running_hash.as_deref() == Some(hash.as_str()) {
            tracing::debug!(revision = %snap.revision, plan = %hash, "plan unchanged");
            self.running_revision = Some(snap.revision.clone());
            self.errors.clear();
            self.report();
            return Outcome::Unchanged;
        }
        self.metrics.rules.set(planned.rules as u64);
        self.metrics.set_elements.set(planned.set_elements as u64);
        match self.apply(&planned.plan, Some(hash.clone())) {
            Ok(()) => {
                let (mode, kernel, steps) = self.last_apply.clone().unwrap_or_default();
                tracing::info!(
                    revision = %snap.revision,
                    plan = %hash,
                    node = %self.cfg.node,
                    plan_ms = plan_time.as_secs_f64() * 1e3,
                    hash_ms = hash_time.as_secs_f64() * 1e3,
                    kernel_ms = kernel.as_secs_f64() * 1e3,
                    total_ms = t_plan.elapsed().as_secs_f64() * 1e3,
                    apply_steps = %steps,
                    "applied ({mode})"
                );
                self.running_revision = Some(snap.revision.clone());
                self.errors.clear();
                self.report();
                Outcome::Applied
            }
            Err(e) => {
                self.errors = vec![format!("revision {}: apply failed: {e}", snap.revision)];
                self.report();
                Outcome::Failed
            }
        }
    }

    fn apply(
        &mut self,
        plan: &rampart_apply::Plan,
        plan_hash: Option<String>,
    ) -> Result<(), rampart_apply::Error> {
        let t = Instant::now();
        let mut opts = self.opts();
        opts.plan_hash = plan_hash;
        match rampart_apply::apply(&self.sys, plan, &opts) {
            Ok(out) => {
                let mode = match &out.mode {
                    rampart_apply::ApplyMode::Incremental {
                        chains,
                        elements_added,
                        elements_deleted,
                    } => format!(
                        "incremental: {} chain(s) refilled, +{elements_added}/-{elements_deleted} set elements",
                        chains.len()
                    ),
                    rampart_apply::ApplyMode::Full { why } => format!("full replace: {why}"),
                };
                let mode = match &out.not_incremental {
                    Some(why) if !mode.starts_with("full") => {
                        format!("{mode}; not in place: {why}")
                    }
                    _ => mode,
                };
                self.last_apply = Some((mode, out.kernel_time, out.timings.to_string()));
                self.metrics.applies.inc();
                self.metrics.last_apply_duration.set_secs(t.elapsed());
                self.metrics.set_plan(&out.applied.plan_hash);
                self.running_hash = Some(out.applied.plan_hash.clone());
                self.applied_at = Some(out.applied.applied_at);
                if out.applied.kernel_hash.is_none() {
                    self.hash_due = Some(Instant::now());
                }
                self.current_plan = Some(plan.clone());
                Ok(())
            }
            Err(e) => {
                self.metrics.failures.inc();
                match &e {
                    rampart_apply::Error::AfterSwitch { plan_hash, .. } => {
                        // The new ruleset is live: say so, and what runs.
                        self.metrics.set_plan(plan_hash);
                        self.current_plan = Some(plan.clone());
                        tracing::error!("apply incomplete (retried): {e}");
                    }
                    _ => tracing::error!(
                        "apply failed, nothing changed, the running ruleset stays: {e}"
                    ),
                }
                Err(e)
            }
        }
    }

    /// Record the kernel hash the last apply left for later (the drift
    /// check's reference), if nothing was committed since; no repair here.
    fn record_kernel_hash(&mut self) {
        self.hash_due = None;
        match rampart_apply::record_kernel_hash(&self.sys, &self.cfg.state_dir) {
            Ok(true) => tracing::debug!("kernel hash recorded"),
            Ok(false) => {
                tracing::debug!("kernel hash not recorded: the ruleset moved since the apply")
            }
            Err(e) => tracing::warn!("kernel hash not recorded: {e}"),
        }
    }

    /// Compare the kernel with the plan; re-apply on drift. Cheap while the
    /// ruleset generation did not move (see `rampart_apply::check_drift`);
    /// records the kernel hash an apply left for later.
    pub fn check_drift(&mut self) -> bool {
        let Some(plan) = self.current_plan.clone() else {
            return false;
        };
        self.hash_due = None;
        match rampart_apply::check_drift(&self.sys, &self.cfg.state_dir) {
            Ok(Drift::Drifted { expected, actual }) => {
                tracing::warn!(%expected, %actual, "rampart's tables drifted from the plan; repairing");
                if self.apply(&plan, None).is_ok() {
                    self.metrics.drift_repairs.inc();
                    tracing::info!("drift repaired");
                    return true;
                }
                return false;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("cannot compare the kernel with the plan: {e}");
                return false;
            }
        }
        if rampart_apply::net::has_network(&plan) {
            let net = rampart_apply::net::network_drift(&self.sys, &plan);
            if !net.is_empty() {
                let what = net.join("; ");
                tracing::warn!(%what, "the network side drifted from the plan; repairing");
                if self.apply(&plan, None).is_ok() {
                    self.metrics.drift_repairs.inc();
                    tracing::info!("network drift repaired");
                    return true;
                }
            }
        }
        false
    }

    fn store_error(&mut self, e: &StoreError) {
        tracing::error!("site unavailable, the running ruleset stays: {e}");
        self.store_down = e.is_transient();
        self.errors = vec![e.to_string()];
        self.report();
    }

    fn report(&self) {
        let st = NodeStatus {
            applied_revision: self.running_revision.clone(),
            plan_hash: self.running_hash.clone(),
            errors: self.errors.clone(),
            applied_at: self.applied_at,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        if let Err(e) = self.store.put_status(&self.cfg.node, &st) {
            tracing::debug!("status not written: {e}");
        }
    }

    /// At start: whether the kernel runs what the state records (after a
    /// reboot it runs nothing; after a `kill -9` mid-apply it may hold the
    /// next plan or unreachable staged objects). If not, the record's plan
    /// hash no longer counts as running, so the next reconcile applies even
    /// an unchanged site; returns true then.
    fn start_check(&mut self) -> bool {
        let Some(plan) = self.current_plan.clone() else {
            return false;
        };
        let drift = rampart_apply::check_drift(&self.sys, &self.cfg.state_dir);
        let net = if rampart_apply::net::has_network(&plan) {
            rampart_apply::net::network_drift(&self.sys, &plan)
        } else {
            Vec::new()
        };
        match drift {
            Ok(Drift::InSync) if net.is_empty() => false,
            d => {
                let why = match d {
                    Ok(Drift::InSync) => format!("the network side differs: {}", net.join("; ")),
                    Ok(Drift::Drifted { expected, actual }) => {
                        format!("rampart's tables are not the recorded ones (expected {expected}, found {actual})")
                    }
                    Ok(Drift::Unknown) => "the kernel cannot be compared with the record".into(),
                    Err(e) => format!("the kernel cannot be compared with the record: {e}"),
                };
                tracing::warn!("at start the kernel does not run the recorded plan ({why}); applying before ready");
                self.running_hash = None;
                true
            }
        }
    }

    /// The start-up apply: check the kernel, reconcile with the site, and
    /// when the kernel needed a repair that the site could not give (store
    /// down, revision refused), load the recorded plan: the firewall is in
    /// place before the agent reports ready.
    fn start(&mut self, repair: bool) -> Outcome {
        let out = match self.store.load() {
            Ok(s) => self.reconcile(&s),
            Err(e) => {
                self.store_error(&e);
                Outcome::Failed
            }
        };
        if repair && out != Outcome::Applied {
            if let Some(plan) = self.current_plan.clone() {
                match self.apply(&plan, None) {
                    Ok(()) => tracing::warn!(
                        "the site gave no plan to apply; the recorded plan {} is loaded again",
                        self.running_hash.as_deref().unwrap_or_default()
                    ),
                    Err(e) => tracing::error!("the recorded plan could not be loaded again: {e}"),
                }
            }
        }
        if self.hash_due.is_some() {
            // Leave the record complete: no idle time follows yet.
            self.record_kernel_hash();
        }
        out
    }

    /// One load + reconcile (`--once`), after the start-up check of the
    /// kernel. A store error is `Failed`.
    pub fn once(&mut self) -> Outcome {
        rampart_apply::clean_stale_scripts();
        let repair = self.start_check();
        self.start(repair)
    }

    /// The foreground loop, until SIGTERM/SIGINT. SIGHUP reloads the site
    /// and checks drift now (`RELOADING=1`, then `READY=1` when done).
    /// Under a systemd watchdog (`WATCHDOG_USEC`), `WATCHDOG=1` every half
    /// interval (see [`Watchdog`]).
    pub fn run(&mut self, signals: &Signals) {
        let _fwlog = self.start_fwlog(signals);
        let watchdog = Watchdog::from_env();
        let mut ready = false;
        let mut watch: Option<Box<dyn SiteWatch>> = None;
        let mut backoff = rampart_store::Backoff::new(rampart_store::RetryPolicy::default());
        // A revision whose apply failed (nft failed, disk full, killed
        // helper...) is tried again with backoff (200 ms doubling to 10 s)
        // until it applies, is refused, or a newer revision replaces it.
        let mut retry: Option<(Snapshot, Instant)> = None;
        let mut apply_backoff = rampart_store::Backoff::new(rampart_store::RetryPolicy::default());
        let mut last_drift = Instant::now();
        let step = Duration::from_millis(200).min(self.cfg.interval);
        // Before ready: the kernel must run the plan (fail closed after a
        // reboot, whatever the interval).
        rampart_apply::clean_stale_scripts();
        if self.start_check() {
            let started = self.start(true);
            if started == Outcome::Failed {
                if let Ok(s) = self.store.load() {
                    retry = Some((s, Instant::now() + apply_backoff.next_delay()));
                }
            }
        }
        while !signals.should_stop() {
            if let Some(w) = &watchdog {
                w.alive();
            }
            if signals.take_reload() {
                tracing::info!("SIGHUP: reloading the site");
                sd_notify(&notify::reloading_message());
                match self.store.load() {
                    Ok(s) => self.reconcile_retrying(&s, &mut retry, &mut apply_backoff),
                    Err(e) => self.store_error(&e),
                }
                // And compare the kernel with the plan now.
                self.check_drift();
                last_drift = Instant::now();
                if ready {
                    sd_notify("READY=1");
                }
            }
            if watch.is_none() {
                match self.store.watch(self.running_revision.as_deref()) {
                    Ok(w) => watch = Some(w),
                    Err(e) => {
                        self.store_error(&e);
                        std::thread::sleep(backoff.next_delay().min(self.cfg.interval));
                        continue;
                    }
                }
            }
            let w = watch.as_mut().expect("watch set");
            match w.next(step) {
                Ok(Some(snap)) => {
                    backoff.reset();
                    self.store_down = false;
                    self.reconcile_retrying(&snap, &mut retry, &mut apply_backoff);
                }
                Ok(None) => {
                    if std::mem::take(&mut self.store_down) {
                        // The store answers again.
                        self.errors.clear();
                        self.report();
                    }
                }
                Err(e) => {
                    self.store_error(&e);
                    std::thread::sleep(backoff.next_delay().min(self.cfg.interval));
                }
            }
            if let Some((snap, at)) = retry.take() {
                if Instant::now() >= at {
                    tracing::info!(revision = %snap.revision, "retrying the failed apply");
                    self.reconcile_retrying(&snap, &mut retry, &mut apply_backoff);
                } else {
                    retry = Some((snap, at));
                }
            }
            if !ready {
                ready = true;
                sd_notify("READY=1");
            }
            if last_drift.elapsed() >= self.cfg.interval {
                last_drift = Instant::now();
                self.check_drift();
            } else if self
                .hash_due
                .is_some_and(|t| t.elapsed() >= HASH_AFTER_QUIET && retry.is_none())
            {
                self.record_kernel_hash();
            }
        }
        sd_notify("STOPPING=1");
        if self.cfg.remove_on_exit {
            self.remove();
        } else {
            tracing::info!("stopping; the running ruleset stays in place");
        }
    }

    /// Reconcile; after a failed apply, schedule the same revision again.
    fn reconcile_retrying(
        &mut self,
        snap: &Snapshot,
        retry: &mut Option<(Snapshot, Instant)>,
        backoff: &mut rampart_store::Backoff,
    ) {
        match self.reconcile(snap) {
            Outcome::Failed => {
                let d = backoff.next_delay();
                tracing::warn!(revision = %snap.revision, "apply failed; retrying in {d:?}");
                *retry = Some((snap.clone(), Instant::now() + d));
            }
            _ => {
                *retry = None;
                backoff.reset();
            }
        }
    }

    /// Turn the firewall's nflog group into log lines (target
    /// `rampart::fwlog`), in a thread of its own. Another listener on the
    /// group (pvefw-logger, ulogd) keeps it: then this only warns.
    fn start_fwlog(&self, signals: &Signals) -> Option<std::thread::JoinHandle<()>> {
        let netns = self.cfg.netns.clone();
        let group = FWLOG_GROUP;
        let reader = match nflog::NflogReader::bind(netns.as_deref(), group) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("firewall log: cannot listen on nflog group {group}: {e}");
                return None;
            }
        };
        tracing::info!("firewall log: listening on nflog group {group}");
        let stop = signals.clone();
        std::thread::Builder::new()
            .name("fwlog".into())
            .spawn(move || {
                nflog::run(reader, netns, &|| stop.should_stop(), &mut |l, text| {
                    nflog::trace(l, &text)
                })
            })
            .ok()
    }

    /// Delete rampart's tables (only with `--remove-on-exit`).
    pub fn remove(&mut self) {
        let empty = rampart_apply::Plan::nftables(self.cfg.node.clone(), String::new());
        match rampart_apply::apply(&self.sys, &empty, &self.opts()) {
            Ok(_) => tracing::warn!("--remove-on-exit: rampart's tables removed"),
            Err(e) => tracing::error!("--remove-on-exit failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(extra: &str) -> SiteFiles {
        let mut f = SiteFiles::new();
        f.files.insert(
            "site.toml".into(),
            b"[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n[[node]]\nname = \"hv2\"\nbridges = { vmbr0 = [\"192.0.2.11/24\"] }\n".to_vec(),
        );
        f.files.insert(
            "firewall/cluster.fw".into(),
            format!("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET management]\n198.51.100.5\n\n[RULES]\nIN HTTP(ACCEPT)\n{extra}").into_bytes(),
        );
        f
    }

    #[test]
    fn a_site_without_cluster_fw_is_never_applied() {
        // `rm firewall/cluster.fw` on a site that had no other firewall
        // file: `check` only warns (E0706), apply and the agent refuse.
        let mut f = site("");
        f.files.remove("firewall/cluster.fw");
        let r = plan_for(&f, Some("hv1"), "r", false).unwrap_err();
        assert_eq!(r.kind, RefusalKind::Invalid);
        assert!(r.rendered.contains("E0706"), "{}", r.rendered);
        assert!(r.diagnostics.items.iter().any(|d| d.code == "E0706"));
        // With `enable: 0` said, the firewall may be turned off.
        f.insert("firewall/cluster.fw", "[OPTIONS]\nenable: 0\n");
        assert!(plan_for(&f, Some("hv1"), "r", false).is_ok());
    }

    #[test]
    fn plan_for_compiles_guards_and_refuses() {
        let p = plan_for(&site(""), Some("hv1"), "rev1", false).unwrap();
        assert_eq!(p.node, "hv1");
        assert_eq!(p.plan.meta.origin_revision, "rev1");
        assert!(p.plan.ruleset.contains("table inet rampart"));
        assert!(p.rules > 0);
        // Same site, same plan hash (meta is not hashed): no-op re-apply.
        let q = plan_for(&site(""), Some("hv1"), "rev2", false).unwrap();
        assert_eq!(p.plan.content_hash(), q.plan.content_hash());

        let r = plan_for(&site(""), None, "r", false).unwrap_err();
        assert_eq!(r.kind, RefusalKind::NoNode);
        let r = plan_for(&site(""), Some("hv9"), "r", false).unwrap_err();
        assert_eq!(r.kind, RefusalKind::NoNode);
        assert!(r.message.contains("hv1, hv2"), "{}", r.message);

        let mut bad = site("");
        bad.files.insert(
            "firewall/cluster.fw".into(),
            b"[OPTIONS]\npolciy_in: DROP\n".to_vec(),
        );
        let r = plan_for(&bad, Some("hv1"), "r", false).unwrap_err();
        assert_eq!(r.kind, RefusalKind::Invalid);
        assert!(r.rendered.contains("E0103"), "{}", r.rendered);

        let lockout = site("\n[IPSET blacklist]\n198.51.100.0/24\n");
        let r = plan_for(&lockout, Some("hv1"), "r", false).unwrap_err();
        assert_eq!(r.kind, RefusalKind::Guard);
        assert!(r.rendered.contains("E0502"), "{}", r.rendered);
        let forced = plan_for(&lockout, Some("hv1"), "r", true).unwrap();
        assert!(forced.forced);
    }

    #[test]
    fn the_default_node_is_the_short_host_name() {
        assert_eq!(short_host_name("pve1.example.org").as_deref(), Some("pve1"));
        assert_eq!(short_host_name("pve1\n").as_deref(), Some("pve1"));
        assert_eq!(short_host_name("hv2").as_deref(), Some("hv2"));
        assert_eq!(short_host_name(""), None);
        assert_eq!(short_host_name(".local"), None);
        // And the real one: uname's nodename up to the first dot.
        let uts = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let want = uts.trim().split('.').next().unwrap().to_owned();
        assert_eq!(host_node_name(), Some(want));
    }

    #[test]
    fn counts_rules_and_elements() {
        let s = "table inet rampart {\n set s {\n  type ipv4_addr\n  elements = { 10.0.0.1, 10.0.0.2,\n 10.0.0.3 }\n }\n chain input {\n  type filter hook input priority 0; policy drop;\n  ct state established accept\n  tcp dport 22 accept\n }\n}\n";
        assert_eq!(count_script(s), (2, 3));
    }

    /// The line-by-line count [`count_script`] was first written as.
    fn count_by_lines(script: &str) -> (usize, usize) {
        let (mut rules, mut elements) = (0, 0);
        let (mut in_chain, mut in_elems) = (false, false);
        for line in script.lines() {
            let t = line.trim();
            if in_elems {
                elements += t
                    .split(',')
                    .filter(|s| !s.trim().trim_end_matches('}').trim().is_empty())
                    .count();
                in_elems = !t.contains('}');
                continue;
            }
            if let Some(rest) = t.strip_prefix("elements = {") {
                let body = rest.split('}').next().unwrap_or("");
                elements += body.split(',').filter(|s| !s.trim().is_empty()).count();
                in_elems = !rest.contains('}');
                continue;
            }
            if t.starts_with("chain ") {
                in_chain = true;
            } else if t == "}" {
                in_chain = false;
            } else if in_chain
                && !t.is_empty()
                && !t.starts_with("type ")
                && !t.starts_with("policy ")
                && !t.starts_with('#')
            {
                rules += 1;
            }
        }
        (rules, elements)
    }

    #[test]
    fn counts_as_line_by_line() {
        let plan = plan_for(&site(""), Some("hv1"), "r", false).unwrap();
        let mut scripts = vec![plan.plan.ruleset.clone()];
        scripts.extend(
            [
                "set s {\n elements = {\n\t1.2.3.4,\n\t5.6.7.8, 9.9.9.9,\n , ,\n\t\u{a0},\n\tx }\n}\n",
                "set s {\n elements = {\n a,\n b\r\n}",
                "chain c {\n elements = {\n a,\n b,",
                "elements = { a, b }\nchain c {\n\trule\n}\n",
                "",
                "\n\n",
            ]
            .map(str::to_owned),
        );
        let big = |n: usize, extra: &str| {
            let mut t = String::from("set s {\n\t\telements = {\n");
            for i in 0..n {
                t.push_str(&format!("\t\t\t10.{}.{}.1,\n", i / 256, i % 256));
            }
            t.push_str(extra);
            t.push_str("\t\t}\n}\nchain c {\n\trule\n}\n");
            t
        };
        scripts.extend([
            big(3000, ""),
            big(3000, "\t\t\t10.99.0.1, ,\n"),
            big(2999, ""),
        ]);
        for s in &scripts {
            assert_eq!(count_script(s), count_by_lines(s), "{s}");
        }
        // Through the kept lists: one script after another, and again.
        let mut lists = Vec::new();
        for s in scripts.iter().chain(&scripts).chain(scripts.iter().rev()) {
            assert_eq!(
                count_script_with(s, Some(&mut lists)),
                count_by_lines(s),
                "{s}"
            );
        }
        assert!(count_script(&scripts[0]).1 > 0);
    }
}

//! `rampart agent`: the foreground reconcile loop (see rampart-agent).

use anyhow::{anyhow, Result};
use rampart_agent::{Agent, AgentConfig, Metrics, Outcome, Signals};
use rampart_store::{DirOptions, DirStore, EtcdStore, SiteStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["site", "etcd"])))]
pub struct Args {
    /// The site as a directory.
    #[arg(long, value_name = "DIR")]
    pub site: Option<PathBuf>,
    /// The site in etcd (comma-separated client URLs).
    #[arg(long, value_name = "URL")]
    pub etcd: Option<String>,
    /// The site's etcd key prefix.
    #[arg(long, default_value = rampart_store::DEFAULT_PREFIX)]
    pub prefix: String,
    /// This node's name in the site [default: the host name up to the first
    /// dot, as Proxmox names nodes].
    #[arg(long)]
    pub node: Option<String>,
    #[command(flatten)]
    pub common: crate::apply::Common,
    /// Seconds between drift checks.
    #[arg(long, default_value_t = 30.0, value_name = "S")]
    pub interval: f64,
    /// Reconcile once and exit (0 applied or unchanged, 1 refused, 2 failed).
    #[arg(long)]
    pub once: bool,
    /// On exit, delete rampart's tables (default: leave the ruleset in place).
    #[arg(long)]
    pub remove_on_exit: bool,
    /// The node's WireGuard key store.
    #[arg(long, value_name = "DIR", default_value = rampart_wg::plan::DEFAULT_KEY_DIR)]
    pub keys: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let node = match a.node.clone().or_else(rampart_agent::host_node_name) {
        Some(n) => n,
        None => return Err(anyhow!("no --node given and the host name is empty")),
    };
    // The node names status keys, state and log fields: the site's rule.
    let node = rampart_types::names::NodeName::parse(&node).map_err(|e| anyhow!("--node: {e}"))?;
    init_logging(&node);
    if a.node.is_none() {
        tracing::info!("node `{node}`: the host name up to the first dot (--node sets another)");
    }
    // Before any other thread starts, so every thread has them blocked.
    let signals = Signals::install()?;
    let store: Box<dyn SiteStore> = match (&a.site, &a.etcd) {
        (Some(dir), _) => {
            let opts = DirOptions {
                status_dir: Some(a.common.state_dir.join("status")),
                ..DirOptions::default()
            };
            Box::new(DirStore::with_options(dir, opts))
        }
        (None, Some(url)) => Box::new(
            EtcdStore::connect(rampart_store::parse_endpoints(url), &a.prefix)
                .map_err(|e| anyhow!("{e}"))?,
        ),
        (None, None) => unreachable!("clap requires --site or --etcd"),
    };
    if !(a.interval > 0.0 && a.interval.is_finite()) {
        return Err(anyhow!("--interval must be a positive number of seconds"));
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = a.metrics_listen {
        // In the namespace the agent manages (--netns), like its nflog group.
        let bound =
            rampart_agent::serve_metrics_in(a.common.netns.as_deref(), addr, metrics.clone())
                .map_err(|e| anyhow!("--metrics-listen {addr}: {e}"))?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let cfg = AgentConfig {
        node,
        state_dir: a.common.state_dir,
        key_dir: a.keys.to_string_lossy().into_owned(),
        netns: a.common.netns,
        interval: Duration::from_secs_f64(a.interval),
        once: a.once,
        remove_on_exit: a.remove_on_exit,
    };
    let mut agent = Agent::new(cfg, store, metrics);
    if a.once {
        return Ok(match agent.once() {
            Outcome::Applied | Outcome::Unchanged => ExitCode::SUCCESS,
            Outcome::Refused => ExitCode::from(1),
            Outcome::Failed => ExitCode::from(2),
        });
    }
    agent.run(&signals);
    Ok(ExitCode::SUCCESS)
}

/// Logs to the journal, with NODE=, REVISION=, RULE_ORIGIN= ... fields,
/// when stderr is the journal (`JOURNAL_STREAM`, as systemd sets it for
/// `StandardError=journal`); otherwise text to stderr, with colours only on
/// a terminal.
fn init_logging(node: &str) {
    use tracing_subscriber::prelude::*;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("rampart".into())
                    .with_custom_fields([("NODE", node)])
                    // syslog's levels, as journalctl -p reads them (the
                    // crate's default makes info a notice).
                    .with_priority_mappings(tracing_journald::PriorityMappings {
                        info: tracing_journald::Priority::Informational,
                        debug: tracing_journald::Priority::Debug,
                        ..tracing_journald::PriorityMappings::new()
                    });
                if tracing_subscriber::registry()
                    .with(filter())
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    return;
                }
            }
            Err(e) => eprintln!("warning: journal unavailable ({e}); logging to stderr"),
        }
    }
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// `JOURNAL_STREAM` (`DEVICE:INODE`) names the file stderr is: systemd's
/// rule for "my stderr goes to the journal" (not an inherited variable).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(v) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match std::fs::metadata("/proc/self/fd/2") {
        Ok(m) => m.dev() == dev && m.ino() == ino,
        Err(_) => false,
    }
}

//! `rampart push SITE --etcd URL`: full check, then one etcd transaction;
//! `rampart status --etcd URL`: the cluster's node statuses in one table.

use anyhow::{anyhow, Result};
use rampart_store::{EtcdStore, SiteStore};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    /// etcd client URLs, comma-separated.
    #[arg(long, value_name = "URL")]
    pub etcd: String,
    /// The site's key prefix.
    #[arg(long, default_value = rampart_store::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Push even when an intent of the site misses (`rampart verify`).
    #[arg(long)]
    pub force: bool,
}

fn connect(etcd: &str, prefix: &str) -> Result<EtcdStore> {
    EtcdStore::connect(rampart_store::parse_endpoints(etcd), prefix).map_err(|e| anyhow!("{e}"))
}

pub fn run(a: Args) -> Result<ExitCode> {
    let files = crate::sitedir::read_site(&a.site)?;
    let (mut site, mut diags) = rampart_resolve::load(&files);
    // WireGuard networks, members and clients too: their names become
    // key files and etcd-delivered configs on every node.
    let wg = crate::wg::site_checks(&files, &mut site.sources, &diags);
    diags.extend(wg);
    if !diags.is_empty() {
        eprint!("{}", diags.render(&site.sources));
    }
    if diags.has_errors() {
        eprintln!(
            "error: the site has {} error(s); nothing was pushed",
            diags.errors()
        );
        return Ok(ExitCode::from(1));
    }
    // Every node must compile too: an agent would refuse it otherwise.
    let mut bad = 0;
    for n in &site.nodes {
        if let Err(d) = rampart_nft::compile(&site, &n.name) {
            eprint!("{}", d.render(&site.sources));
            bad += 1;
        }
    }
    if bad > 0 {
        eprintln!("error: {bad} node(s) do not compile; nothing was pushed");
        return Ok(ExitCode::from(1));
    }
    if !crate::verify::gate(&files, "push", a.force) {
        eprintln!("nothing was pushed");
        return Ok(ExitCode::from(1));
    }
    let store = connect(&a.etcd, &a.prefix)?;
    let snap = store.push(&files).map_err(|e| anyhow!("{e}"))?;
    println!(
        "pushed {} file(s) to {} at revision {} (content {})",
        files.files.len(),
        a.prefix,
        snap.revision,
        &snap.hash[..snap.hash.len().min(12)]
    );
    Ok(ExitCode::SUCCESS)
}

pub fn cluster_status(etcd: &str, prefix: &str) -> Result<ExitCode> {
    let store = connect(etcd, prefix)?;
    let site = store.load().ok();
    let statuses = store.statuses().map_err(|e| anyhow!("{e}"))?;
    if let Some(s) = &site {
        println!(
            "site revision {} ({} files)",
            s.revision,
            s.files.files.len()
        );
    }
    let now = rampart_agent::now();
    println!(
        "{:<20} {:<10} {:<14} {:>8}  ERRORS",
        "NODE", "REVISION", "PLAN", "AGE"
    );
    let mut behind = false;
    for (node, st) in &statuses {
        let rev = st.applied_revision.clone().unwrap_or_else(|| "-".into());
        if let Some(s) = &site {
            if st.applied_revision.as_deref() != Some(s.revision.as_str()) {
                behind = true;
            }
        }
        let plan = st
            .plan_hash
            .as_deref()
            .map(|h| h[..h.len().min(12)].to_owned())
            .unwrap_or_else(|| "-".into());
        let age = st
            .applied_at
            .map(|t| format!("{}s", now.saturating_sub(t)))
            .unwrap_or_else(|| "-".into());
        let errs = if st.errors.is_empty() {
            "-".to_owned()
        } else {
            st.errors.join("; ")
        };
        println!("{node:<20} {rev:<10} {plan:<14} {age:>8}  {errs}");
        if !st.errors.is_empty() {
            behind = true;
        }
    }
    // Nodes of the site that never reported.
    if let Some(s) = &site {
        let (resolved, _) = rampart_resolve::load(&s.files);
        for n in &resolved.nodes {
            if !statuses.contains_key(n.name.as_str()) {
                println!(
                    "{:<20} {:<10} {:<14} {:>8}  no status reported",
                    n.name, "-", "-", "-"
                );
                behind = true;
            }
        }
    }
    if statuses.is_empty() {
        println!("(no node has reported yet)");
        behind = true;
    }
    Ok(if behind {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

//! `rampart check SITE`: parse and resolve, print every diagnostic and a summary.

use crate::sitedir::read_site;
use anyhow::Result;
use rampart_resolve::ir::{self, SetScope};
use rampart_types::{Diagnostics, Severity, SourceMap};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The site directory (site.toml, firewall/, nodes/...), or a Proxmox /etc/pve tree.
    pub site: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Treat warnings as errors (exit 1 when there is any).
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(Serialize)]
struct JsonDiag<'a> {
    code: &'a str,
    severity: Severity,
    message: &'a str,
    file: Option<&'a str>,
    line: Option<u32>,
    col: Option<u32>,
    len: Option<u32>,
    label: Option<&'a str>,
    hint: Option<&'a str>,
    notes: &'a [String],
}

#[derive(Serialize)]
struct SetSummary {
    name: String,
    kernel_name: String,
    scope: String,
    entries: usize,
}

#[derive(Serialize)]
struct ZoneRules {
    zone: String,
    rules: usize,
}

#[derive(Serialize)]
struct Summary {
    site: String,
    nodes: usize,
    guests: usize,
    nics: usize,
    rules_total: usize,
    rules_by_zone: Vec<ZoneRules>,
    sets: Vec<SetSummary>,
    firewall_enabled: bool,
}

#[derive(Serialize)]
struct JsonOut<'a> {
    ok: bool,
    errors: usize,
    warnings: usize,
    diagnostics: Vec<JsonDiag<'a>>,
    summary: Summary,
}

fn summarize(site: &ir::Site) -> Summary {
    let mut rules_by_zone = Vec::new();
    for n in &site.nodes {
        rules_by_zone.push(ZoneRules {
            zone: format!("host:{}", n.name),
            rules: n.firewall.rules.len(),
        });
    }
    for g in &site.guests {
        rules_by_zone.push(ZoneRules {
            zone: g.zone(),
            rules: g.rules.len(),
        });
    }
    Summary {
        site: site.name.to_string(),
        nodes: site.nodes.len(),
        guests: site.guests.len(),
        nics: site.guests.iter().map(|g| g.nics.len()).sum(),
        rules_total: rules_by_zone.iter().map(|z| z.rules).sum(),
        rules_by_zone,
        sets: site
            .sets
            .iter()
            .map(|s| SetSummary {
                name: s.name.to_string(),
                kernel_name: s.kernel_name.to_string(),
                scope: match &s.scope {
                    SetScope::Cluster => "cluster".into(),
                    SetScope::Guest(id) => format!("guest:{id}"),
                    SetScope::Node(n) => format!("node:{n}"),
                },
                entries: s.entries.len(),
            })
            .collect(),
        firewall_enabled: site.cluster.enable,
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// At most `max` items, then "… and N more".
fn capped(items: Vec<String>, max: usize) -> String {
    let n = items.len();
    if n <= max {
        items.join(", ")
    } else {
        format!("{}, … and {} more", items[..max].join(", "), n - max)
    }
}

fn render_summary(s: &Summary, diags: &Diagnostics) -> String {
    use rampart_types::escape::printable;
    let mut out = String::new();
    out.push_str(&format!(
        "site `{}`: {}, {}, {}, {} (firewall {})\n",
        printable(&s.site),
        plural(s.nodes, "node", "nodes"),
        plural(s.guests, "guest", "guests"),
        plural(s.nics, "NIC", "NICs"),
        plural(s.rules_total, "rule", "rules"),
        if s.firewall_enabled {
            "enabled"
        } else {
            "disabled in cluster.fw"
        },
    ));
    let zones: Vec<String> = s
        .rules_by_zone
        .iter()
        .map(|z| format!("{} {}", printable(&z.zone), z.rules))
        .collect();
    if !zones.is_empty() {
        out.push_str(&format!("  rules by zone: {}\n", capped(zones, 12)));
    }
    let sets: Vec<String> = s
        .sets
        .iter()
        .map(|x| {
            // A hashed kernel name (a long Proxmox name) shows the name too.
            let proxmox = if x.kernel_name.contains(x.name.as_str()) || x.scope.starts_with("node:")
            {
                String::new()
            } else {
                format!(" = +{}", printable(&x.name))
            };
            format!(
                "{}{proxmox} ({}, {})",
                printable(&x.kernel_name),
                printable(&x.scope),
                plural(x.entries, "entry", "entries")
            )
        })
        .collect();
    if !sets.is_empty() {
        out.push_str(&format!("  sets: {}\n", capped(sets, 12)));
    }
    out.push_str(&format!(
        "{}, {}\n",
        plural(diags.errors(), "error", "errors"),
        plural(diags.warnings(), "warning", "warnings")
    ));
    out
}

fn json_diags<'a>(diags: &'a Diagnostics, map: &'a SourceMap) -> Vec<JsonDiag<'a>> {
    diags
        .items
        .iter()
        .map(|d| JsonDiag {
            code: d.code,
            severity: d.severity,
            message: &d.message,
            file: d.span.map(|s| map.path(s.file)),
            line: d.span.map(|s| s.line),
            col: d.span.map(|s| s.col),
            len: d.span.map(|s| s.len),
            label: d.label.as_deref(),
            hint: d.hint.as_deref(),
            notes: &d.notes,
        })
        .collect()
}

/// Every node's plan through [`rampart_plan`] with the options `apply`
/// uses: the refusals' diagnostics and the plans' warnings.
fn plan_every_node(files: &rampart_types::SiteFiles) -> Diagnostics {
    let mut out = Diagnostics::new();
    let site = match rampart_plan::load(files, &rampart_plan::PlanOpts::default()) {
        Ok(s) => s,
        Err(r) => {
            out.extend(r.diagnostics);
            return out;
        }
    };
    for n in &site.ir.nodes {
        match site.build(&n.name) {
            Ok(p) => out.extend(p.diagnostics),
            Err(r) => out.extend(r.diagnostics),
        }
    }
    out
}

pub fn run(a: Args) -> Result<ExitCode> {
    let files = read_site(&a.site)?;
    let (mut site, mut diags) = rampart_resolve::load(&files);
    // WireGuard networks and private keys anywhere in the site (E06xx).
    let wg = crate::wg::site_checks(&files, &mut site.sources, &diags);
    diags.extend(wg);
    // The profiles ([[lockdown]], [[egress]]), then every node planned the
    // way `apply` plans it (rampart_plan, guard on): what the node's backend
    // cannot express (E0413: IPS without nft queue, ...), the profiles' VPN
    // check (E0503), the lock-out guard (E0502, E0504), and every warning
    // those steps print. `check` accepts exactly what compile and apply do.
    if !diags.has_errors() {
        let prof = rampart_profile::load(&files, &site);
        let fine = !prof.diags.has_errors();
        diags.extend(prof.diags.clone());
        if fine {
            diags.extend(plan_every_node(&files));
        }
    }
    diags.sort();
    diags.items.dedup();
    if let Some(m) = crate::wg::redacted(&site.sources, &diags) {
        site.sources = m;
    }
    let failed = diags.has_errors() || (a.deny_warnings && !diags.is_empty());
    let summary = summarize(&site);
    match a.format {
        Format::Text => {
            for d in &diags.items {
                eprintln!("{}", d.render(&site.sources));
            }
            print!("{}", render_summary(&summary, &diags));
        }
        Format::Json => {
            let out = JsonOut {
                ok: !failed,
                errors: diags.errors(),
                warnings: diags.warnings(),
                diagnostics: json_diags(&diags, &site.sources),
                summary,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

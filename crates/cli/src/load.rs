//! Shared by the subcommands that need a resolved site: read the directory,
//! parse and resolve, print diagnostics, refuse on errors.

use crate::sitedir::read_site;
use anyhow::{bail, Result};
use rampart_resolve::ir;
use rampart_types::SiteFiles;
use std::path::Path;

/// Load and resolve `dir`, returning the files read too (for the parts of
/// the site the IR does not carry, such as the WireGuard networks).
/// Warnings are printed to stderr; errors are printed and turned into
/// `Err` (the caller exits 1).
pub fn resolved_site_files(dir: &Path) -> Result<(SiteFiles, ir::Site), SiteError> {
    let files = read_site(dir).map_err(SiteError::Io)?;
    let (site, diags) = rampart_resolve::load(&files);
    if !diags.is_empty() {
        eprint!("{}", diags.render(&site.sources));
    }
    if diags.has_errors() {
        return Err(SiteError::Invalid(diags.errors()));
    }
    Ok((files, site))
}

#[derive(Debug)]
pub enum SiteError {
    /// Usage or I/O: exit 2.
    Io(anyhow::Error),
    /// The site has errors (already printed): exit 1.
    Invalid(usize),
}

impl SiteError {
    pub fn exit(self) -> Result<std::process::ExitCode> {
        match self {
            SiteError::Io(e) => Err(e),
            SiteError::Invalid(n) => {
                eprintln!("error: the site has {n} error(s); nothing was compiled");
                Ok(std::process::ExitCode::from(1))
            }
        }
    }
}

/// The node to work on: the one named, or the only one.
pub fn pick_node<'a>(site: &'a ir::Site, node: Option<&str>) -> Result<&'a ir::Node> {
    match node {
        Some(n) => match site.node(n) {
            Some(node) => Ok(node),
            None => {
                let names: Vec<&str> = site.nodes.iter().map(|n| n.name.as_str()).collect();
                bail!("no node `{n}` in the site (nodes: {})", names.join(", "))
            }
        },
        None => match site.nodes.as_slice() {
            [only] => Ok(only),
            [] => bail!("the site has no nodes"),
            _ => bail!("the site has several nodes: say which with --node"),
        },
    }
}

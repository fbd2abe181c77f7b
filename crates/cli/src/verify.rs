//! `rampart verify SITE [--format text|json]`: every `[[expect]]` intent
//! against the simulator across all nodes (docs/intents.md). Exit 0 when
//! all hold, 1 on a miss or site errors, 2 on usage/I/O.
//! `rampart allowlist SITE --service NAME [--format nginx|plain]`: an
//! application allow list generated from the intents.

use crate::sitedir::read_site;
use anyhow::{bail, Result};
use rampart_intent::{allowlist, render, Report};
use rampart_types::SiteFiles;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    pub site: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Load and check a site's intents; site errors are printed (exit 1).
pub fn report(files: &SiteFiles) -> Result<Report, ExitCode> {
    match rampart_intent::check_files(files) {
        Ok(r) => {
            if !r.diags.is_empty() {
                eprint!("{}", r.diags.render(&r.world.site.sources));
            }
            Ok(r)
        }
        Err((d, sources)) => {
            eprint!("{}", d.render(&sources));
            eprintln!("error: the site has {} error(s)", d.errors());
            Err(ExitCode::from(1))
        }
    }
}

pub fn run(a: Args) -> Result<ExitCode> {
    let files = read_site(&a.site)?;
    let r = match report(&files) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    match a.format {
        Format::Text => print!("{}", render::text(&r.matrix)),
        Format::Json => println!("{}", render::json(&r.matrix)),
    }
    if r.matrix.misses() > 0 {
        if a.format == Format::Text {
            eprint!(
                "{}",
                r.matrix
                    .diagnostics(&r.expects)
                    .render(&r.world.site.sources)
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// The gate `apply` and `push` run first: true when every intent holds
/// (or the site has none); false after printing the misses (or the
/// site's errors). With `force` a miss is printed and let through.
pub fn gate(files: &SiteFiles, what: &str, force: bool) -> bool {
    // No intents: nothing to check (and the site's own problems are
    // reported by the command's usual path).
    let has = files.get("site.toml").is_some_and(|b| {
        let text = String::from_utf8_lossy(b);
        let (x, d) = rampart_intent::parse(Default::default(), &text);
        !x.is_empty() || !d.is_empty()
    });
    if !has {
        return true;
    }
    let r = match report(files) {
        Ok(r) => r,
        Err(_) => return false,
    };
    if r.matrix.misses() == 0 {
        if !r.matrix.rows.is_empty() {
            eprintln!("verify: {}", render::summary(&r.matrix));
        }
        return true;
    }
    eprint!("{}", render::text(&r.matrix));
    eprint!(
        "{}",
        r.matrix
            .diagnostics(&r.expects)
            .render(&r.world.site.sources)
    );
    if force {
        eprintln!(
            "warning: the site misses {} intent row(s); {what} goes ahead because of --force",
            r.matrix.misses()
        );
        return true;
    }
    eprintln!(
        "error: {what} refused: the site misses {} intent row(s) (see `rampart verify`); --force overrides",
        r.matrix.misses()
    );
    false
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    Nginx,
    Plain,
}

#[derive(clap::Args)]
pub struct AllowArgs {
    pub site: PathBuf,
    /// An intent name, or the destination endpoint of intents (`to`).
    #[arg(long)]
    pub service: String,
    #[arg(long, value_enum, default_value_t = ListFormat::Nginx)]
    pub format: ListFormat,
    /// Extra prefixes to allow (e.g. a container network), repeatable.
    #[arg(long)]
    pub allow: Vec<ipnet::IpNet>,
}

pub fn allow(a: AllowArgs) -> Result<ExitCode> {
    let files = read_site(&a.site)?;
    let r = match report(&files) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if r.matrix.misses() > 0 {
        eprint!("{}", render::text(&r.matrix));
        bail!("the site misses intents; fix them before generating an allow list");
    }
    let list = match allowlist::allowlist(&r, &a.service, &a.allow) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    match a.format {
        ListFormat::Nginx => print!(
            "{}",
            allowlist::nginx(&list, &format!("allow list of `{}`", a.service))
        ),
        ListFormat::Plain => print!("{}", allowlist::plain(&list)),
    }
    Ok(ExitCode::SUCCESS)
}

//! Intents: `[[expect]]` entries of `site.toml` say what must and must not
//! be reachable; [`verify`] checks each against the simulator across every
//! node of the site, following the packet through WireGuard tunnels
//! (AllowedIPs, endpoints, the listen port's firewall rule, cryptokey
//! routing), gateways (forwarding), NAT (masquerade) and policy routes, and
//! returns a [`Matrix`] (intent, expected, got, deciding rule with its
//! origin, hops) plus, per row, the concrete probe the lab sends for real.
//! Pure: files in, data out. Syntax and semantics: `docs/intents.md`.

pub mod allowlist;
pub mod parse;
pub mod render;
pub mod trace;
pub mod verify;
pub mod world;

pub use parse::{parse, EndpointSpec, Expect, What};
pub use trace::{trace, Decider, Outcome, Probe};
pub use verify::{check, resolve, verify, Endpoint, LabProbe, Matrix, Row};
pub use world::{Entity, World};

use rampart_resolve::ir;
use rampart_types::{Diagnostics, FileId, SiteFiles};

/// The `FileId` of `site.toml` in the site's source map.
pub fn site_toml_id(site: &ir::Site) -> Option<FileId> {
    (0u32..)
        .map(FileId)
        .take_while(|id| site.sources.get(*id).is_some())
        .find(|id| site.sources.path(*id) == "site.toml")
}

/// The intents of a resolved site (from its `site.toml`).
pub fn expects(files: &SiteFiles, site: &ir::Site) -> (Vec<Expect>, Diagnostics) {
    let Some(b) = files.get("site.toml") else {
        return (vec![], Diagnostics::new());
    };
    let text = String::from_utf8_lossy(b);
    parse(site_toml_id(site).unwrap_or_default(), &text)
}

/// Everything `rampart verify` needs: the world, the intents and the
/// matrix, or the site's errors.
pub struct Report {
    pub world: World,
    pub expects: Vec<Expect>,
    pub matrix: Matrix,
    /// Site warnings, intent syntax and endpoint errors.
    pub diags: Diagnostics,
}

/// Load the site of `files` and check every intent. `Err` carries the
/// site's diagnostics and the source map to render them when the site (or
/// an intent) has errors.
pub fn check_files(files: &SiteFiles) -> Result<Report, (Diagnostics, rampart_types::SourceMap)> {
    let (world, mut diags) = World::from_files(files);
    let Some(world) = world else {
        let (site, _) = rampart_resolve::load(files);
        return Err((diags, site.sources));
    };
    let (expects, d) = expects(files, &world.site);
    diags.extend(d);
    let (matrix, d) = verify(&world, &expects);
    diags.extend(d);
    if diags.has_errors() {
        return Err((diags, world.site.sources.clone()));
    }
    Ok(Report {
        world,
        expects,
        matrix,
        diags,
    })
}

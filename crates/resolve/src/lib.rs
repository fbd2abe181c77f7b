//! The resolver: turns the parsed site into the [`ir::Site`] every backend
//! and the simulator read: macros expanded, groups inlined, aliases and
//! ipsets resolved by scope, one family per rule, defaults applied, the
//! standard sets (management, blacklist, ipfilter-netN, cluster peers) built.
//!
//! ```no_run
//! # let files = rampart_types::SiteFiles::new();
//! let (site, diags) = rampart_resolve::load(&files);
//! ```

pub mod ir;
pub mod lint;
mod resolve;

pub use resolve::{
    fnv31a, guest_options, host_options, resolve, resolve_cached, SetMemo, MAX_GROUP_NAME,
    MAX_IFNAME, MAX_SET_NAME,
};

use rampart_types::{Diagnostics, SiteFiles};

/// Parse and resolve a site: every diagnostic of both steps, sorted.
pub fn load(files: &SiteFiles) -> (ir::Site, Diagnostics) {
    let (ast, map, mut diags) = rampart_syntax::parse_site(files);
    let (site, more) = resolve(&ast, map);
    diags.extend(more);
    diags.extend(lint::lint(&site));
    diags.sort();
    diags.items.dedup();
    (site, diags)
}

/// What [`load_cached`] keeps of one site for the next revision: parsed
/// files, resolved ipsets, lint findings per rule list, each reused only
/// where its inputs are unchanged. Holds the last site's, nothing older.
#[derive(Default)]
pub struct Cache {
    pub parse: rampart_syntax::ParseCache,
    pub sets: SetMemo,
    pub lint: lint::LintMemo,
}

impl Cache {
    /// Give back the IR the last [`load_cached`] made, unchanged, when done
    /// with it: the cache takes back what it lent (the entries of each
    /// ipset) instead of keeping copies. Optional: what is not given back
    /// is recomputed next time.
    pub fn recycle(&mut self, site: ir::Site) {
        self.sets.recycle(site);
    }
}

/// [`load`], redoing only what changed since the site `cache` last saw:
/// the result (IR and diagnostics, spans included) is the same.
pub fn load_cached(files: &SiteFiles, cache: &mut Cache) -> (ir::Site, Diagnostics) {
    let sets = &mut cache.sets;
    let (site, mut diags) =
        rampart_syntax::parse_site_cached(files, &mut cache.parse, |ast, map, mut diags| {
            let (site, more) = resolve_cached(ast, map, sets);
            diags.extend(more);
            (site, diags)
        });
    diags.extend(lint::lint_cached(&site, &mut cache.lint));
    diags.sort();
    diags.items.dedup();
    (site, diags)
}

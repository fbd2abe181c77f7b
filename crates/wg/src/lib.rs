//! WireGuard overlays from a site description. Pure: text in, data out.
//!
//! - [`schema`]: the `[[wireguard]]` and `[[client]]` tables of `site.toml`
//!   (and the `endpoint` and bridge addresses of `[[node]]`), parsed with
//!   spans so every diagnostic carries `site.toml:line:col`.
//! - [`plan`]: deterministic address allocation, peers and AllowedIPs per
//!   topology, explicit routes, and every WireGuard check of bad-inputs 32-40.
//! - [`render`]: wg-quick `.conf`, `wg setconf` text, road-warrior client
//!   configs, QR codes (terminal and PNG bytes).
//! - [`diff`]: the change between two plans of an interface, as `wg set`.
//! - [`keys`]: x25519 keys compatible with `wg genkey` / `wg pubkey`.
//!
//! The key store (files on disk) lives in the `rampart-keystore` crate.

pub mod diff;
pub mod keys;
pub mod plan;
pub mod render;
pub mod schema;

pub use diff::{diff, InterfaceDiff, PeerChange};
pub use keys::{PresharedKey, PrivateKey, PublicKey};
pub use plan::{compile, InterfacePlan, PeerPlan, Plan, Route};
pub use render::{
    client_config, qr_png, qr_terminal, wg_quick_conf, wg_quick_conf_with_key, wg_quick_confs,
    wg_setconf,
};
pub use schema::{parse_site_toml, scan_private_keys, WgSite};

/// Parse the WireGuard parts of `site.toml`, scan every site file for
/// private keys, and compute the plan. Diagnostics are sorted.
pub fn check(
    file: rampart_types::FileId,
    site_toml: &str,
) -> (Option<Plan>, rampart_types::Diagnostics) {
    let mut diags = scan_private_keys(file, site_toml);
    let (site, d) = parse_site_toml(file, site_toml);
    diags.extend(d);
    let plan = site.map(|s| {
        let (p, d) = compile(&s);
        diags.extend(d);
        p
    });
    diags.sort();
    diags.items.dedup();
    (plan, diags)
}

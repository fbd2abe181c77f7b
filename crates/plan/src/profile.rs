//! The hook for profiles (`[[lockdown]]`, `[[egress]]` of site.toml; helper
//! crate `rampart-profile`): what a profile adds to one node's plan.
//!
//! [`profile_additions`] returns nothing yet. To wire a profile in, fill a
//! [`ProfileAdditions`] from it; [`crate::build`] merges every field into the
//! node plan (firewall extras into both backends' compilers, routes, policy
//! rules, sysctls, extra output files) and refuses the node when
//! `diagnostics` has errors (e.g. E0503, a lockdown whose VPN cannot reach
//! the host).

use crate::wg::Wg;
use rampart_apply::{Backend, PolicyRule, Route};
use rampart_resolve::ir;
use rampart_types::{Diagnostics, SiteFiles};

/// What a profile sees of the site and the node.
pub struct ProfileInput<'a> {
    /// The raw site files (`site.toml` holds `[[lockdown]]` and `[[egress]]`).
    pub files: &'a SiteFiles,
    /// The resolved site (its source map renders site.toml spans).
    pub site: &'a ir::Site,
    /// The WireGuard plan of the site (interfaces, peers, addresses).
    pub wg: &'a Wg,
    pub node: &'a str,
    /// The backend the node is compiled for.
    pub backend: Backend,
}

/// What profiles add to one node's plan.
#[derive(Clone, Debug, Default)]
pub struct ProfileAdditions {
    /// Extra nftables rules (merged with the WireGuard extras).
    pub nft: rampart_nft::Extras,
    /// Extra iptables rules (merged with the WireGuard extras).
    pub ipt: rampart_ipt::Extras,
    /// Routes (`ip route replace`), e.g. egress's default route in its table.
    pub routes: Vec<Route>,
    /// Policy rules (`ip rule add from SUBNET lookup TABLE`).
    pub rules: Vec<PolicyRule>,
    /// `(key, value, why)`, e.g. forwarding on an egress gateway.
    pub sysctls: Vec<(String, String, String)>,
    /// Extra files `rampart compile` prints/writes: (name, contents).
    pub files: Vec<(String, String)>,
    /// Warnings, and errors that refuse the node; rendered against
    /// `ProfileInput::site.sources`.
    pub diagnostics: Diagnostics,
}

/// The profiles' additions for `input.node`. Nothing yet: `rampart-profile`
/// plugs in here.
pub fn profile_additions(input: &ProfileInput<'_>) -> ProfileAdditions {
    let _ = input;
    ProfileAdditions::default()
}

/// Add `more` to `into`. Destructured so a new field of the extras fails to
/// compile here until it is merged.
pub(crate) fn merge_nft(into: &mut rampart_nft::Extras, more: rampart_nft::Extras) {
    let rampart_nft::Extras { wireguard } = more;
    into.wireguard.extend(wireguard);
}

pub(crate) fn merge_ipt(into: &mut rampart_ipt::Extras, more: rampart_ipt::Extras) {
    let rampart_ipt::Extras { wireguard } = more;
    into.wireguard.extend(wireguard);
}

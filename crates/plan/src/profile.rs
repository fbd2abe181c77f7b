//! The hook for profiles (`[[lockdown]]`, `[[egress]]` of site.toml; helper
//! crate `rampart-profile`): what a profile adds to one node's plan.
//!
//! [`profile_additions`] asks `rampart-profile` for the node's share;
//! [`crate::build`] merges every field into the node plan (the profiles'
//! firewall rules into both backends' output, routes, policy rules,
//! sysctls, extra output files) and refuses the node when `diagnostics` has
//! errors, or when [`check_compiled`] finds that a lockdown's VPN cannot
//! reach the host in the compiled plan (E0503).

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
    /// The profiles' firewall rules (lockdown, egress), added to the
    /// compiled nftables plan and iptables text
    /// (`rampart_nft::add_profile`, `rampart_ipt::add_profile`).
    pub firewall: rampart_types::additions::FirewallAdditions,
    /// The node is locked down: management is proven through its VPN
    /// ([`check_compiled`], E0503) instead of from the management set.
    pub lockdown: bool,
}

/// The profiles' additions for `input.node`: `[[lockdown]]` and
/// `[[egress]]` (see docs/profiles.md). Errors of any profile refuse every
/// node, as WireGuard errors do.
pub fn profile_additions(input: &ProfileInput<'_>) -> ProfileAdditions {
    profile_additions_of(input, &rampart_profile::load(input.files, input.site))
}

/// [`profile_additions`] with the site's profiles loaded
/// (`rampart_profile::load`).
pub fn profile_additions_of(
    input: &ProfileInput<'_>,
    sp: &rampart_profile::SiteProfiles,
) -> ProfileAdditions {
    let _ = input.backend;
    if sp.profiles.is_empty() {
        return ProfileAdditions {
            diagnostics: sp.diags.clone(),
            ..ProfileAdditions::default()
        };
    }
    let np = sp.for_node(input.site, input.node);
    let mut files = vec![];
    if !np.rules.is_empty() || !np.routes.is_empty() {
        let mut t = String::from(
            "# routes and policy rules of the profiles (lockdown, egress); rampart owns them\n",
        );
        for r in &np.rules {
            t.push_str(&format!(
                "ip rule add priority {} from {} lookup {}   # {}\n",
                r.priority, r.from, r.table, r.origin
            ));
        }
        for r in &np.routes {
            t.push_str(&format!(
                "ip route replace {} dev {}{}   # {}\n",
                r.dest,
                r.dev,
                r.table.map(|t| format!(" table {t}")).unwrap_or_default(),
                r.origin
            ));
        }
        files.push(("policy.rules".to_string(), t));
    }
    ProfileAdditions {
        files,
        routes: np.routes,
        rules: np.rules,
        sysctls: np.sysctls,
        lockdown: np.firewall.lockdown.is_some(),
        firewall: np.firewall,
        diagnostics: sp.diags.clone(),
        ..ProfileAdditions::default()
    }
}

/// E0503 on the compiled nftables plan of a locked-down node: the VPN's
/// listen port admits the peers and a VPN connection reaches management.
pub fn check_compiled(input: &ProfileInput<'_>, nft: &rampart_nft::Plan) -> Diagnostics {
    check_compiled_of(input, &rampart_profile::load(input.files, input.site), nft)
}

/// [`check_compiled`] with the site's profiles loaded.
pub fn check_compiled_of(
    input: &ProfileInput<'_>,
    sp: &rampart_profile::SiteProfiles,
    nft: &rampart_nft::Plan,
) -> Diagnostics {
    if sp.profiles.is_empty() {
        return Diagnostics::new();
    }
    sp.check_compiled(input.site, input.node, nft)
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

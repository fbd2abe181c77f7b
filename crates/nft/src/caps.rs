//! What the running kernel can do, as far as the nft backend cares.
//!
//! This crate does no I/O: the shell (apply/cli/lab) runs the probe scripts
//! below with `nft -c -f` (inside a throwaway network namespace, or on the
//! host: `-c` changes nothing) and hands the results to [`Caps::from_probe`].
//! A kernel config (`/boot/config-*`, `/proc/config.gz`) can be read instead
//! with [`Caps::from_kernel_config`].

use serde::Serialize;

/// Probe: does `queue` (nft_queue / nfnetlink_queue) load?
pub const PROBE_QUEUE: &str =
    "table inet rampart_probe {\n\tchain c {\n\t\ttype filter hook forward priority 0;\n\t\tqueue num 0 bypass\n\t}\n}\n";

/// Probe: does the bridge family have conntrack (nf_conntrack_bridge)?
pub const PROBE_BRIDGE_CONNTRACK: &str = "table bridge rampart_probe {\n\tchain c {\n\t\ttype filter hook forward priority 0;\n\t\tct state established accept\n\t}\n}\n";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Caps {
    /// The nft `queue` statement works (needed for IPS).
    pub nft_queue: bool,
    /// `ct` matches work in the bridge family (nf_conntrack_bridge).
    pub bridge_conntrack: bool,
}

impl Default for Caps {
    /// What rampart assumes without a probe: the kernel this project is
    /// built on (no nft queue, no bridge conntrack).
    fn default() -> Self {
        Caps {
            nft_queue: false,
            bridge_conntrack: false,
        }
    }
}

impl Caps {
    /// From the exit status of `nft -c -f` on [`PROBE_QUEUE`] and
    /// [`PROBE_BRIDGE_CONNTRACK`].
    pub fn from_probe(queue_ok: bool, bridge_ct_ok: bool) -> Self {
        Caps {
            nft_queue: queue_ok,
            bridge_conntrack: bridge_ct_ok,
        }
    }

    /// From a kernel `.config`: `=y` or `=m` counts as present.
    pub fn from_kernel_config(config: &str) -> Self {
        let on = |key: &str| {
            config.lines().any(|l| {
                let l = l.trim();
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix('='))
                    .is_some_and(|v| v == "y" || v == "m")
            })
        };
        Caps {
            nft_queue: on("CONFIG_NFT_QUEUE") && on("CONFIG_NETFILTER_NETLINK_QUEUE"),
            bridge_conntrack: on("CONFIG_NF_CONNTRACK_BRIDGE") && on("CONFIG_NFT_BRIDGE_META"),
        }
    }
}

/// How bridged guest traffic is filtered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Datapath {
    /// The bridge family marks packets by bridge port; br_netfilter hands
    /// them to the `inet` table, where conntrack works and per-NIC chains
    /// are chosen by mark. Works on any kernel with br_netfilter. (What
    /// rampart emits; see docs/datapath.md.)
    BridgeMarks,
    /// Filtering entirely in the bridge family with nf_conntrack_bridge.
    /// Possible on kernels that have it; rampart reports it as available
    /// but does not emit it yet.
    BridgeConntrack,
}

impl Datapath {
    /// The datapath rampart uses on a kernel with these capabilities.
    pub fn chosen(_caps: &Caps) -> Datapath {
        Datapath::BridgeMarks
    }
    /// Whether the bridge-family conntrack datapath could be used instead.
    pub fn bridge_conntrack_possible(caps: &Caps) -> bool {
        caps.bridge_conntrack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_config() {
        let c = Caps::from_kernel_config(
            "CONFIG_NFT_QUEUE=m\nCONFIG_NETFILTER_NETLINK_QUEUE=y\n# CONFIG_NF_CONNTRACK_BRIDGE is not set\nCONFIG_NFT_BRIDGE_META=m\n",
        );
        assert!(c.nft_queue);
        assert!(!c.bridge_conntrack);
        assert!(!Datapath::bridge_conntrack_possible(&c));
        let c =
            Caps::from_kernel_config("CONFIG_NF_CONNTRACK_BRIDGE=m\nCONFIG_NFT_BRIDGE_META=y\n");
        assert!(c.bridge_conntrack && !c.nft_queue);
        assert!(Datapath::bridge_conntrack_possible(&c));
        assert_eq!(Datapath::chosen(&c), Datapath::BridgeMarks);
    }
}

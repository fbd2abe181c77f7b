//! The input of `apply`: a finished plan for one node, and its stable content hash.

pub use rampart_types::names::{DevName, NodeName, ParticipantName, WgIfaceName, WgNetworkName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Which kernel interface the ruleset text is written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `ruleset` is an `nft -f` script that only declares rampart's own tables.
    Nftables,
    /// `ruleset` is `iptables-restore` text (and `ruleset6`, if any, `ip6tables-restore` text).
    Iptables,
}

/// Where a plan came from. Not part of the content hash: recompiling the same
/// site at another time gives the same hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanMeta {
    /// Site revision the plan was compiled from (git commit, etcd revision, ...).
    pub origin_revision: String,
    /// When it was compiled, seconds since the Unix epoch.
    pub compiled_at: u64,
}

/// Everything `apply` carries out on one node.
///
/// Names are validated types: a plan read back from a file passes the same
/// rules as the site it was compiled from, or does not deserialize.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub node: NodeName,
    pub backend: Backend,
    /// nft script (tables named `rampart` / `rampart-*` / `rampart_*` only) or
    /// iptables-restore text.
    pub ruleset: String,
    /// ip6tables-restore text (iptables backend only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ruleset6: Option<String>,
    /// `ipset restore` text, loaded before the ruleset (iptables backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipsets: Option<String>,
    /// sysctl key (dotted, e.g. `net.ipv4.ip_forward`) -> value.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    /// WireGuard interfaces the node runs (kernel module or wireguard-go).
    /// Private keys are never in the plan: each interface names its key
    /// store file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wireguard: Vec<WgIface>,
    /// Routes rampart owns (through WireGuard interfaces, into policy tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Policy-routing rules rampart owns (`ip rule add from SUBNET lookup TABLE`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PolicyRule>,
    /// iptables backend: files the boot loads the rules from, written after
    /// the switch with a backup of each (see [`crate::legacy`]).
    #[serde(default, skip_serializing_if = "SavedFiles::is_empty")]
    pub saved_files: SavedFiles,
    #[serde(default)]
    pub meta: PlanMeta,
}

/// Where an iptables-backend node keeps its rules for the boot: what
/// `ipset restore` (first), `iptables-restore` and `ip6tables-restore` load
/// (XCP-ng: `/etc/sysconfig/ipset`, `/etc/sysconfig/iptables`,
/// `/etc/sysconfig/ip6tables`). Absolute paths; none unless the site sets them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iptables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip6tables: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipset: Option<String>,
}

impl SavedFiles {
    pub fn is_empty(&self) -> bool {
        self.iptables.is_none() && self.ip6tables.is_none() && self.ipset.is_none()
    }
}

/// One WireGuard interface of a node plan. Addresses and prefixes are
/// canonical text (`10.0.0.2/24`, `fd00::/64`) so this crate needs no
/// address types; the compiler produces them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgIface {
    /// Interface name (`wg0`).
    pub name: WgIfaceName,
    /// The site's network name.
    pub network: WgNetworkName,
    /// Path of the key store file with the private key (mode 0600; read at
    /// apply time, never copied into the plan, logs or state).
    pub private_key_file: String,
    /// `None`: let the kernel pick (a roaming client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_port: Option<u16>,
    /// Tunnel addresses with prefix length (`10.0.0.2/24`).
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    pub peers: Vec<WgPeer>,
}

/// One peer of a [`WgIface`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WgPeer {
    /// The peer's name in the site (for messages).
    pub name: ParticipantName,
    /// Base64 public key.
    pub public_key: String,
    /// Key store file of the pair's preshared key, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preshared_key_file: Option<String>,
    /// `host:port` (IPv6 in brackets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Prefixes (`10.0.0.0/24`).
    pub allowed_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_keepalive: Option<u16>,
}

/// A route rampart installs and owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0`, `10.0.3.0/24`).
    pub dest: String,
    /// Output device.
    pub dev: DevName,
    /// Gateway address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Routing table; `None` = main.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Where it came from (`site.toml:57`, `auto:wireguard wg0`).
    pub origin: String,
}

/// A policy-routing rule rampart installs and owns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PolicyRule {
    /// Rule priority (`ip rule add priority N`).
    pub priority: u32,
    /// Source prefix (`192.168.100.0/24`).
    pub from: String,
    /// Input interface, if the rule is limited to one (`iif vmbr1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iif: Option<DevName>,
    /// Table to look up.
    pub table: u32,
    pub origin: String,
}

impl Plan {
    /// A new nftables plan with no sysctls and empty metadata.
    pub fn nftables(node: NodeName, ruleset: impl Into<String>) -> Plan {
        Plan {
            node,
            backend: Backend::Nftables,
            ruleset: ruleset.into(),
            ruleset6: None,
            ipsets: None,
            sysctls: BTreeMap::new(),
            wireguard: Vec::new(),
            routes: Vec::new(),
            rules: Vec::new(),
            saved_files: SavedFiles::default(),
            meta: PlanMeta::default(),
        }
    }

    /// SHA-256 (lower-case hex) over a versioned, length-prefixed encoding of the
    /// content (node, backend, rulesets, ipsets, sysctls). `meta` is excluded.
    /// The encoding does not depend on serde, so the hash is stable across
    /// serializer changes.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        fn field(h: &mut Sha256, tag: &str, bytes: &[u8]) {
            h.update(tag.as_bytes());
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        }
        h.update(b"rampart-plan-v1\0");
        field(&mut h, "node", self.node.as_bytes());
        let backend = match self.backend {
            Backend::Nftables => "nftables",
            Backend::Iptables => "iptables",
        };
        field(&mut h, "backend", backend.as_bytes());
        field(&mut h, "ruleset", self.ruleset.as_bytes());
        if let Some(r6) = &self.ruleset6 {
            field(&mut h, "ruleset6", r6.as_bytes());
        }
        if let Some(s) = &self.ipsets {
            field(&mut h, "ipsets", s.as_bytes());
        }
        for (k, v) in &self.sysctls {
            field(&mut h, "sysctl-key", k.as_bytes());
            field(&mut h, "sysctl-value", v.as_bytes());
        }
        // The network side joins the hash only when present, so the hash
        // of a firewall-only plan is what it always was.
        for w in &self.wireguard {
            let json = serde_json::to_string(w).expect("WgIface serializes");
            field(&mut h, "wireguard", json.as_bytes());
        }
        for r in &self.routes {
            let json = serde_json::to_string(r).expect("Route serializes");
            field(&mut h, "route", json.as_bytes());
        }
        for r in &self.rules {
            let json = serde_json::to_string(r).expect("PolicyRule serializes");
            field(&mut h, "rule", json.as_bytes());
        }
        if !self.saved_files.is_empty() {
            let json = serde_json::to_string(&self.saved_files).expect("SavedFiles serializes");
            field(&mut h, "saved-files", json.as_bytes());
        }
        to_hex(&h.finalize())
    }
}

/// A plan as recorded in the state directory after it was applied
/// (`current.plan`, `last-good.plan`, `previous.plan`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub plan: Plan,
    /// `plan.content_hash()` at apply time.
    pub plan_hash: String,
    /// Seconds since the Unix epoch.
    pub applied_at: u64,
    /// Hash of the normalized kernel listing of rampart's tables, taken right
    /// after the apply; `status` compares against it to report drift.
    pub kernel_hash: Option<String>,
    /// The nftables ruleset generation right after the apply (and after the
    /// kernel hash was taken). While the kernel still reports it, nothing
    /// was committed since: the kernel runs exactly this plan, and the next
    /// apply may send only the difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nft_genid: Option<String>,
    /// The kernel runs this plan under staged names (`NAME.<hash>`, base
    /// chains jumping to their staged bodies; see [`crate::twophase`]).
    #[serde(default)]
    pub nft_staged: bool,
    /// The salt the staged names were made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nft_salt: Option<String>,
    /// Staged chains refilled in place, under the name they had
    /// (`family table chain` -> kernel name; see [`crate::twophase::Pins`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nft_pins: BTreeMap<String, String>,
    /// Steps that failed after the ruleset switch (the kernel runs this
    /// plan's ruleset, but e.g. a sysctl or the network side is not as
    /// planned). `None`: everything was applied. Such a record never
    /// becomes `last-good.plan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// The values the sysctls had before rampart first changed them, so that a
    /// key dropped from a later plan (or a revert) restores the original value.
    #[serde(default)]
    pub sysctls_before: BTreeMap<String, String>,
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_meta_but_not_content() {
        let a = Plan::nftables("n1".parse().unwrap(), "table inet rampart {}\n");
        let mut b = a.clone();
        b.meta.origin_revision = "abc".into();
        b.meta.compiled_at = 42;
        assert_eq!(a.content_hash(), b.content_hash());
        let mut c = a.clone();
        c.sysctls.insert("net.ipv4.ip_forward".into(), "0".into());
        assert_ne!(a.content_hash(), c.content_hash());
        let mut d = a.clone();
        d.node = "n2".parse().unwrap();
        assert_ne!(a.content_hash(), d.content_hash());
        assert_eq!(a.content_hash().len(), 64);
    }

    #[test]
    fn hash_is_pinned() {
        // Guards the encoding: changing it silently would make every node re-apply.
        let p = Plan::nftables("n1".parse().unwrap(), "x");
        assert_eq!(p.content_hash(), p.clone().content_hash());
        let again = serde_json::from_str::<Plan>(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(again.content_hash(), p.content_hash());
    }

    /// A plan read back (a `--plan` file, the state directory) is input
    /// again: a name its site could not hold does not deserialize.
    #[test]
    fn a_plan_with_a_hostile_name_does_not_deserialize() {
        let mut p = Plan::nftables("n1".parse().unwrap(), "x");
        p.routes.push(Route {
            dest: "10.0.0.0/24".into(),
            dev: "wg0".parse().unwrap(),
            via: None,
            table: None,
            origin: "t".into(),
        });
        let good = serde_json::to_value(&p).unwrap();
        assert!(serde_json::from_value::<Plan>(good.clone()).is_ok());
        for (field, bad) in [
            ("/node", "../../trav"),
            ("/node", "pwn\ntable inet x {}"),
            ("/routes/0/dev", "wg0; reboot"),
            ("/routes/0/dev", ""),
        ] {
            let mut v = good.clone();
            *v.pointer_mut(field).unwrap() = serde_json::Value::String(bad.into());
            let e = serde_json::from_value::<Plan>(v).unwrap_err();
            assert!(
                e.to_string().contains("is not a valid") || e.to_string().contains("empty"),
                "{field} = {bad:?}: {e}"
            );
        }
    }
}

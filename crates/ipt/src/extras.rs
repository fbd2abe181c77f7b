//! Rules the iptables plan needs for things outside the Proxmox firewall
//! files, in the same backend-neutral form as `rampart_nft::Extras` (this
//! crate does not depend on their producers; `rampart-plan` fills them).
//!
//! For each WireGuard interface of the node:
//! - `RAMPART-HOST-IN`: `-p udp --dport PORT` accepted from each peer
//!   endpoint address (or from any source when some peer roams), after the
//!   user's rules and before `policy_in`, so a stranger meets the policy;
//! - `RAMPART-HOST-FWD` (gateways): `-i IF -o IF` accepted before
//!   `policy_forward`, so the gateway forwards between its peers.

use crate::{Accept, Compiler};
use rampart_types::Family;
use std::net::IpAddr;

/// Inputs besides the IR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Extras {
    pub wireguard: Vec<WgPort>,
}

/// One WireGuard interface of the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgPort {
    pub iface: rampart_types::names::WgIfaceName,
    /// The UDP listen port; `None` = no port to open (a roaming client).
    pub port: Option<u16>,
    /// The peers' endpoint addresses; `None` = any source (roaming peers).
    pub sources: Option<Vec<IpAddr>>,
    /// The node forwards between the peers of this interface (a gateway).
    pub forward: bool,
    /// The listen-port rules' comment (`site.toml:LINE` of the port when
    /// known); the forwarding rule says `auto:wireguard IFACE forwarding`.
    pub origin: String,
}

impl Compiler<'_> {
    /// The listen-port rules of this family, before `policy_in`.
    pub(crate) fn wg_listen(&mut self, chain: &str, accept: &Accept) {
        let extras = self.extras;
        for w in &extras.wireguard {
            let Some(port) = w.port else { continue };
            let udp = format!("-p udp -m udp --dport {port}");
            match &w.sources {
                None => self.auto(chain, &udp, &w.origin, accept.target()),
                Some(srcs) => {
                    let mut mine: Vec<IpAddr> = srcs
                        .iter()
                        .filter(|a| Family::of(a) == self.fam)
                        .copied()
                        .collect();
                    mine.sort();
                    mine.dedup();
                    for a in mine {
                        let bits = if a.is_ipv4() { 32 } else { 128 };
                        let m = format!("-s {a}/{bits} {udp}");
                        self.auto(chain, &m, &w.origin, accept.target());
                    }
                }
            }
        }
    }

    /// The forwarding rules of gateways, before `policy_forward`.
    pub(crate) fn wg_forward(&mut self, chain: &str, accept: &Accept) {
        let extras = self.extras;
        for w in extras.wireguard.iter().filter(|w| w.forward) {
            let m = format!("-i {} -o {}", w.iface, w.iface);
            let what = format!("auto:wireguard {} forwarding", w.iface);
            self.auto(chain, &m, &what, accept.target());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{compile_with_extras, Mode};
    use rampart_types::SiteFiles;

    fn site(host_fw: &str) -> rampart_resolve::ir::Site {
        let files = SiteFiles::new()
            .with("site.toml", "[[node]]\nname = \"hv1\"\n")
            .with(
                "firewall/cluster.fw",
                "[OPTIONS]\nenable: 1\npolicy_in: REJECT\n",
            )
            .with("nodes/hv1/host.fw", host_fw);
        let (site, d) = rampart_resolve::load(&files);
        assert!(!d.has_errors(), "{}", d.render(&site.sources));
        site
    }

    fn extras(sources: Option<Vec<IpAddr>>, forward: bool) -> Extras {
        Extras {
            wireguard: vec![WgPort {
                iface: "wg0".parse().unwrap(),
                port: Some(51820),
                sources,
                forward,
                origin: "site.toml:7".into(),
            }],
        }
    }

    fn index(text: &str, needle: &str) -> usize {
        text.find(needle)
            .unwrap_or_else(|| panic!("`{needle}` not in\n{text}"))
    }

    #[test]
    fn listen_port_from_peers_before_the_policy() {
        let s = site("[OPTIONS]\nenable: 1\n");
        let e = extras(
            Some(vec![
                "192.0.2.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap(),
            ]),
            true,
        );
        let p = compile_with_extras(&s, "hv1", Mode::Full, &e).unwrap();
        let rule = "-A RAMPART-HOST-IN -s 192.0.2.7/32 -p udp -m udp --dport 51820 -m comment --comment \"site.toml:7\" -j ACCEPT";
        let at = index(&p.v4, rule);
        assert!(at < index(&p.v4, "auto:policy-in"), "{}", p.v4);
        assert!(!p.v4.contains("2001:db8::7"));
        assert!(p
            .v6
            .contains("-A RAMPART-HOST-IN -s 2001:db8::7/128 -p udp -m udp --dport 51820"));
        let fwd = "-A RAMPART-HOST-FWD -i wg0 -o wg0 -m comment --comment \"auto:wireguard wg0 forwarding\" -j RETURN";
        assert!(p.v4.contains(fwd), "{}", p.v4);
        // Without extras: none of it.
        let plain = crate::compile_with(&s, "hv1", Mode::Full).unwrap();
        assert!(!plain.v4.contains("51820") && !plain.v4.contains("-i wg0"));
    }

    #[test]
    fn roaming_peers_open_the_port_to_any_source() {
        let s = site("[OPTIONS]\nenable: 1\n");
        let p = compile_with_extras(&s, "hv1", Mode::Noflush, &extras(None, false)).unwrap();
        assert!(p.v4.contains("-A RAMPART-HOST-IN -p udp -m udp --dport 51820 -m comment --comment \"site.toml:7\" -j ACCEPT"), "{}", p.v4);
        assert!(!p.v4.contains("-i wg0 -o wg0"));
    }
}

//! A change between two plans of one interface, as a value, and the one
//! `wg set` command that carries it out. Unlike `wg setconf` it keeps the
//! private key and the sessions of unchanged peers: removed peers go first
//! (so their AllowedIPs can move to a new peer), then additions and updates.

use crate::keys::PublicKey;
use crate::plan::{InterfacePlan, PeerPlan};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerChange {
    Remove(PublicKey),
    Add(PeerPlan),
    Update { old: PeerPlan, new: PeerPlan },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceDiff {
    /// `Some(new)` when the listen port changes.
    pub listen_port: Option<Option<u16>>,
    pub peers: Vec<PeerChange>,
}

impl InterfaceDiff {
    pub fn is_empty(&self) -> bool {
        self.listen_port.is_none() && self.peers.is_empty()
    }

    /// Arguments after `wg`: `set IF [listen-port N] peer K remove peer K2 ...`.
    /// Empty when there is nothing to do.
    pub fn wg_set_args(&self, interface: &str) -> Vec<String> {
        if self.is_empty() {
            return Vec::new();
        }
        let mut a = vec!["set".to_string(), interface.to_string()];
        if let Some(Some(p)) = self.listen_port {
            a.extend(["listen-port".into(), p.to_string()]);
        }
        for c in &self.peers {
            match c {
                PeerChange::Remove(k) => a.extend(["peer".into(), k.to_base64(), "remove".into()]),
                PeerChange::Add(p) | PeerChange::Update { new: p, .. } => {
                    a.extend(["peer".into(), p.public_key.to_base64()]);
                    if let Some(f) = &p.preshared_key_file {
                        a.extend(["preshared-key".into(), f.clone()]);
                    }
                    if let Some(e) = &p.endpoint {
                        a.extend(["endpoint".into(), e.clone()]);
                    }
                    a.extend([
                        "persistent-keepalive".into(),
                        p.persistent_keepalive
                            .map(|k| k.to_string())
                            .unwrap_or_else(|| "off".into()),
                    ]);
                    let ips: Vec<String> = p.allowed_ips.iter().map(|n| n.to_string()).collect();
                    a.extend(["allowed-ips".into(), ips.join(",")]);
                }
            }
        }
        a
    }
}

/// What turns `old` (what the interface has; `None`: nothing yet) into `new`.
pub fn diff(old: Option<&InterfacePlan>, new: &InterfacePlan) -> InterfaceDiff {
    let mut d = InterfaceDiff::default();
    let old_port = old.and_then(|o| o.listen_port);
    if old.is_none() || old_port != new.listen_port {
        d.listen_port = Some(new.listen_port);
    }
    let old_peers: &[PeerPlan] = old.map(|o| o.peers.as_slice()).unwrap_or(&[]);
    for o in old_peers {
        if !new.peers.iter().any(|n| n.public_key == o.public_key) {
            d.peers.push(PeerChange::Remove(o.public_key));
        }
    }
    for n in &new.peers {
        match old_peers.iter().find(|o| o.public_key == n.public_key) {
            None => d.peers.push(PeerChange::Add(n.clone())),
            Some(o) if o != n => d.peers.push(PeerChange::Update {
                old: o.clone(),
                new: n.clone(),
            }),
            Some(_) => {}
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::test_keypair;

    fn peer(name: &str, ips: &[&str]) -> PeerPlan {
        PeerPlan {
            name: name.parse().unwrap(),
            public_key: test_keypair(name).1,
            preshared_key_file: None,
            endpoint: Some("192.0.2.1:51820".into()),
            allowed_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            persistent_keepalive: None,
        }
    }

    fn iface(peers: Vec<PeerPlan>) -> InterfacePlan {
        InterfacePlan {
            network: "n".parse().unwrap(),
            owner: "me".parse().unwrap(),
            role: crate::plan::Role::Member,
            interface: "wg0".parse().unwrap(),
            addresses: vec![],
            listen_port: Some(51820),
            mtu: None,
            public_key: test_keypair("me").1,
            private_key_file: "/k".into(),
            peers,
            routes: vec![],
        }
    }

    #[test]
    fn removes_first_then_adds_and_updates_and_nothing_for_equal() {
        let old = iface(vec![
            peer("a", &["10.0.0.1/32"]),
            peer("b", &["10.0.0.2/32"]),
        ]);
        let new = iface(vec![
            peer("a", &["10.0.0.1/32", "10.1.0.0/24"]),
            peer("c", &["10.0.0.2/32"]),
        ]);
        let d = diff(Some(&old), &new);
        assert_eq!(d.listen_port, None);
        assert!(matches!(d.peers[0], PeerChange::Remove(k) if k == test_keypair("b").1));
        assert!(matches!(&d.peers[1], PeerChange::Update { new, .. } if new.name == "a"));
        assert!(matches!(&d.peers[2], PeerChange::Add(p) if p.name == "c"));
        let args = d.wg_set_args("wg0").join(" ");
        let b = test_keypair("b").1.to_base64();
        assert!(
            args.starts_with(&format!("set wg0 peer {b} remove peer ")),
            "{args}"
        );
        assert!(
            args.contains("allowed-ips 10.0.0.1/32,10.1.0.0/24"),
            "{args}"
        );
        assert!(diff(Some(&new), &new).is_empty());
        assert!(diff(Some(&new), &new).wg_set_args("wg0").is_empty());
        assert_eq!(diff(None, &new).listen_port, Some(Some(51820)));
    }
}

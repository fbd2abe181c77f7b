//! Peers, AllowedIPs, addresses and routes per topology, and the renderings.
mod common;
use common::{check, keys};
use ipnet::IpNet;
use rampart_wg::plan::Role;
use rampart_wg::Plan;

fn plan(text: &str) -> Plan {
    let (p, d) = check(text);
    assert!(!d.has_errors(), "{}", common::render(text));
    p.unwrap()
}

fn allowed(p: &Plan, net: &str, on: &str, peer: &str) -> Vec<String> {
    let i = p
        .get(net, on)
        .unwrap_or_else(|| panic!("no interface of {on}"));
    let pe = i
        .peers
        .iter()
        .find(|x| x.name == peer)
        .unwrap_or_else(|| panic!("{on} has no peer {peer}"));
    pe.allowed_ips.iter().map(|n| n.to_string()).collect()
}

fn peer_names(p: &Plan, net: &str, on: &str) -> Vec<String> {
    p.get(net, on)
        .unwrap()
        .peers
        .iter()
        .map(|x| x.name.to_string())
        .collect()
}

fn addr(p: &Plan, net: &str, on: &str) -> String {
    p.get(net, on).unwrap().addresses[0].to_string()
}

/// Seed 000: a firewall guest is the hub; the laptop reaches the
/// hypervisor's management /32 and the LAN through it.
const SEED_000: &str = r#"[[node]]
name = "xcp1"
endpoint = "198.51.100.10"
bridges = { xenbr0 = ["198.51.100.10/24"] }

[[wireguard]]
name = "mgmt"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
topology = "hub"
gateways = ["opnsense"]

[[wireguard.member]]
name = "opnsense"
guest = 100
endpoint = "198.51.100.11"
public_key = "K(opnsense)"
address = ["10.8.0.1"]
routes = ["198.51.100.10/32", "10.0.0.0/24"]

[[client]]
network = "mgmt"
name = "laptop"
public_key = "K(laptop)"
address = ["10.8.0.2"]
"#;

#[test]
fn seed_000_client_reaches_management_through_the_firewall() {
    let p = plan(SEED_000);
    assert_eq!(addr(&p, "mgmt", "laptop"), "10.8.0.2/24");
    assert_eq!(
        allowed(&p, "mgmt", "laptop", "opnsense"),
        ["10.8.0.1/32", "198.51.100.10/32", "10.0.0.0/24"]
    );
    let lap = p.get("mgmt", "laptop").unwrap();
    assert_eq!(lap.role, Role::Client);
    assert_eq!(lap.listen_port, None);
    assert_eq!(
        lap.peers[0].endpoint.as_deref(),
        Some("198.51.100.11:51820")
    );
    assert_eq!(lap.peers[0].persistent_keepalive, Some(25));
    let routes: Vec<String> = lap.routes.iter().map(|r| r.dest.to_string()).collect();
    assert_eq!(
        routes,
        ["10.0.0.0/24", "198.51.100.10/32"],
        "explicit routes; the pool is the address's connected route"
    );
    // The firewall knows the laptop by its /32 and no endpoint.
    assert_eq!(allowed(&p, "mgmt", "opnsense", "laptop"), ["10.8.0.2/32"]);
    let fw = p.get("mgmt", "opnsense").unwrap();
    assert_eq!(fw.peers[0].endpoint, None);
    assert_eq!(fw.peers[0].persistent_keepalive, None);

    let conf = rampart_wg::client_config(&p, "laptop", None).unwrap();
    assert!(
        conf.contains("AllowedIPs = 10.8.0.1/32, 198.51.100.10/32, 10.0.0.0/24"),
        "{conf}"
    );
    assert!(conf.contains("Endpoint = 198.51.100.11:51820"), "{conf}");
    assert!(conf.contains("PersistentKeepalive = 25"), "{conf}");
    assert!(!conf.lines().any(|l| l.starts_with("PrivateKey")), "{conf}");
}

#[test]
fn client_extra_routes_and_default_route_go_to_the_gateway_only_with_a_table() {
    let t = SEED_000.replace(
        "address = [\"10.8.0.2\"]",
        "address = [\"10.8.0.2\"]\nroutes = [\"0.0.0.0/0\"]",
    );
    let p = plan(&t);
    assert!(allowed(&p, "mgmt", "laptop", "opnsense").contains(&"0.0.0.0/0".to_string()));
    // Table = off and no `table`: no route for /0 at all, so it never hijacks the host.
    assert!(p
        .get("mgmt", "laptop")
        .unwrap()
        .routes
        .iter()
        .all(|r| r.dest.prefix_len() > 0));
    let t = t.replace(
        "gateways = [\"opnsense\"]",
        "gateways = [\"opnsense\"]\ntable = 42",
    );
    let p = plan(&t);
    let r = &p.get("mgmt", "laptop").unwrap().routes;
    assert!(
        r.iter()
            .any(|r| r.dest.prefix_len() == 0 && r.table == Some(42)),
        "{r:?}"
    );
}

fn mesh(names: &[&str]) -> String {
    let mut t = String::new();
    for (i, n) in names.iter().enumerate() {
        t.push_str(&format!(
            "[[node]]\nname = \"{n}\"\nendpoint = \"192.0.2.{}\"\n",
            i + 1
        ));
    }
    t.push_str("[[wireguard]]\nname = \"core\"\ninterface = \"wg0\"\npool = [\"10.0.0.0/24\", \"fd00:10::/64\"]\nlisten_port = 51820\n");
    for n in names {
        t.push_str(&format!(
            "[[wireguard.member]]\nname = \"{n}\"\npublic_key = \"K({n})\"\n"
        ));
    }
    t
}

#[test]
fn mesh_everyone_peers_with_everyone_by_host_address() {
    let p = plan(&mesh(&["host1", "host2", "host3"]));
    for me in ["host1", "host2", "host3"] {
        let i = p.get("core", me).unwrap();
        assert_eq!(i.peers.len(), 2);
        assert_eq!(i.addresses.len(), 2, "one IPv4 and one IPv6 address");
        for pe in &i.peers {
            let other = p.get("core", &pe.name).unwrap();
            let want: Vec<IpNet> = other
                .addresses
                .iter()
                .map(|a| IpNet::from(a.addr()))
                .collect();
            assert_eq!(pe.allowed_ips, want);
            assert!(pe.endpoint.as_ref().unwrap().starts_with("192.0.2."));
        }
    }
}

#[test]
fn allocation_is_stable_when_members_come_and_go() {
    let names: Vec<String> = (0..100).map(|i| format!("node{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let before = plan(&mesh(&refs));
    // Add ten, remove ten others.
    let mut after_names: Vec<&str> = refs[10..].to_vec();
    let extra: Vec<String> = (0..10).map(|i| format!("late{i}")).collect();
    after_names.extend(extra.iter().map(|s| s.as_str()));
    let after = plan(&mesh(&after_names));
    // A member whose home slot nobody else (before or after) shares keeps
    // its address, whatever else changes.
    let pool: IpNet = "10.0.0.0/24".parse().unwrap();
    let home = |n: &str| rampart_wg::plan::home_address("core", n, &pool);
    let everyone: Vec<&str> = refs.iter().chain(after_names.iter()).copied().collect();
    let mut moved = 0;
    let mut unique = 0;
    for n in &refs[10..] {
        let (b, a) = (
            &before.get("core", n).unwrap().addresses,
            &after.get("core", n).unwrap().addresses,
        );
        let alone = everyone
            .iter()
            .filter(|m| *m != n && home(m) == home(n))
            .count()
            == 0;
        if alone {
            unique += 1;
            assert_eq!(b, a, "{n} has a slot of its own but moved");
            assert_eq!(b[0].addr(), home(n));
        }
        if b != a {
            moved += 1;
        }
        // IPv6 pools are large enough that nobody collides.
        assert_eq!(b[1], a[1]);
    }
    assert!(
        unique >= 50,
        "only {unique} members had a slot of their own"
    );
    assert!(moved <= 9, "{moved} of 90 members changed address");
    // Deterministic: the same input gives the same plan.
    assert_eq!(plan(&mesh(&refs)), before);
    // All distinct.
    let mut seen = std::collections::HashSet::new();
    for i in &after.interfaces {
        for a in &i.addresses {
            assert!(seen.insert(a.addr()), "{a} twice");
        }
    }
}

#[test]
fn explicit_addresses_are_respected_and_skipped_by_allocation() {
    let t = mesh(&["a", "b", "c"]).replace(
        "name = \"b\"\npublic_key = \"K(b)\"",
        "name = \"b\"\npublic_key = \"K(b)\"\naddress = [\"10.0.0.1\", \"fd00:10::1\"]",
    );
    let p = plan(&t);
    assert_eq!(addr(&p, "core", "b"), "10.0.0.1/24");
    assert_eq!(
        p.get("core", "b").unwrap().addresses[1].to_string(),
        "fd00:10::1/64"
    );
}

#[test]
fn hub_members_peer_only_with_gateways() {
    let t = r#"[[node]]
name = "gw"
endpoint = "203.0.113.1"
[[node]]
name = "m1"
[[node]]
name = "m2"
[[wireguard]]
name = "h"
interface = "wg1"
pool = ["10.5.0.0/24"]
listen_port = 51821
topology = "hub"
gateways = ["gw"]
persistent_keepalive = 25
[[wireguard.member]]
name = "gw"
public_key = "K(gw)"
address = ["10.5.0.1"]
routes = ["172.16.0.0/24"]
[[wireguard.member]]
name = "m1"
public_key = "K(m1)"
address = ["10.5.0.11"]
routes = ["192.168.11.0/24"]
[[wireguard.member]]
name = "m2"
public_key = "K(m2)"
address = ["10.5.0.12"]
"#;
    let p = plan(t);
    assert_eq!(peer_names(&p, "h", "m1"), ["gw"]);
    assert_eq!(peer_names(&p, "h", "gw"), ["m1", "m2"]);
    // m2 reaches the whole pool, the gateway's LAN and m1's LAN through gw.
    assert_eq!(
        allowed(&p, "h", "m2", "gw"),
        [
            "10.5.0.1/32",
            "172.16.0.0/24",
            "10.5.0.0/24",
            "192.168.11.0/24"
        ]
    );
    assert_eq!(
        allowed(&p, "h", "gw", "m1"),
        ["10.5.0.11/32", "192.168.11.0/24"]
    );
    // Members without endpoint keep the NAT mapping open towards the gateway.
    assert_eq!(
        p.get("h", "m1").unwrap().peers[0].persistent_keepalive,
        Some(25)
    );
    assert_eq!(
        p.get("h", "gw").unwrap().peers[0].persistent_keepalive,
        None
    );
}

#[test]
fn partial_mesh_groups_reach_each_other_through_gateways() {
    let mut t = String::new();
    for (i, n) in ["eu1", "eu2", "eugw", "us1", "usgw"].iter().enumerate() {
        t.push_str(&format!(
            "[[node]]\nname = \"{n}\"\nendpoint = \"192.0.2.{}\"\n",
            i + 1
        ));
    }
    t.push_str(
        r#"[[wireguard]]
name = "p"
interface = "wg2"
pool = ["10.7.0.0/24"]
listen_port = 51822
topology = "partial"
gateways = ["eugw", "usgw"]
groups = { eu = ["eu1", "eu2", "eugw"], us = ["us1", "usgw"] }
"#,
    );
    for (n, a) in [
        ("eu1", 11),
        ("eu2", 12),
        ("eugw", 1),
        ("us1", 21),
        ("usgw", 2),
    ] {
        t.push_str(&format!("[[wireguard.member]]\nname = \"{n}\"\npublic_key = \"K({n})\"\naddress = [\"10.7.0.{a}\"]\n"));
    }
    let p = plan(&t);
    assert_eq!(peer_names(&p, "p", "eu1"), ["eu2", "eugw"]);
    assert_eq!(peer_names(&p, "p", "eugw"), ["eu1", "eu2", "usgw"]);
    assert_eq!(peer_names(&p, "p", "us1"), ["usgw"]);
    assert_eq!(allowed(&p, "p", "eu1", "eu2"), ["10.7.0.12/32"]);
    assert_eq!(
        allowed(&p, "p", "eu1", "eugw"),
        ["10.7.0.1/32", "10.7.0.0/24"]
    );
    assert_eq!(
        allowed(&p, "p", "eugw", "usgw"),
        ["10.7.0.2/32", "10.7.0.21/32"]
    );
}

#[test]
fn compiled_output_never_contains_private_keys() {
    let p = plan(SEED_000);
    let secret = rampart_wg::keys::test_keypair("opnsense").0.expose_base64();
    let i = p.get("mgmt", "opnsense").unwrap();
    let conf = rampart_wg::wg_quick_conf(i);
    let setconf = rampart_wg::wg_setconf(i);
    let dbg = format!("{p:?}");
    for text in [&conf, &setconf, &dbg] {
        assert!(!text.contains(&secret));
        assert!(!text.contains("PrivateKey ="), "{text}");
    }
    assert!(conf.contains("Table = off"), "{conf}");
    assert!(
        conf.contains("PostUp = wg set %i private-key /etc/rampart/wg/mgmt.key"),
        "{conf}"
    );
    assert!(conf.contains("Address = 10.8.0.1/24"), "{conf}");
    assert!(conf.contains("ListenPort = 51820"), "{conf}");
    assert!(!setconf.contains("Address"), "{setconf}");
    assert!(!setconf.contains("Table"), "{setconf}");
    // Rendering for the key store is the one place the key appears.
    let with = rampart_wg::wg_quick_conf_with_key(i, &rampart_wg::keys::test_keypair("opnsense").0);
    assert!(with.contains(&format!("PrivateKey = {secret}")));
}

#[test]
fn wg_quick_conf_parses_with_wg_after_stripping_wg_quick_keys() {
    // `wg-quick strip` is not available without a kernel module; `wg` itself
    // must accept our setconf text.
    let p = plan(&mesh(&["a", "b"]));
    let text = rampart_wg::wg_setconf(p.get("core", "a").unwrap());
    assert!(text.contains("[Peer]"));
    assert!(keys("K(b)").len() == 44);
}

#[test]
fn preshared_keys_are_files_per_pair() {
    let t = mesh(&["a", "b"]).replace(
        "listen_port = 51820",
        "listen_port = 51820\npreshared_keys = true",
    );
    let p = plan(&t);
    let a = &p.get("core", "a").unwrap().peers[0];
    let b = &p.get("core", "b").unwrap().peers[0];
    assert_eq!(
        a.preshared_key_file.as_deref(),
        Some("/etc/rampart/wg/psk/core/a--b.psk")
    );
    assert_eq!(a.preshared_key_file, b.preshared_key_file);
    let conf = rampart_wg::wg_quick_conf(p.get("core", "a").unwrap());
    assert!(
        conf.contains("preshared-key /etc/rampart/wg/psk/core/a--b.psk"),
        "{conf}"
    );
}

#[test]
fn preshared_pairs_give_only_the_listed_pairs_a_key() {
    let t = mesh(&["a", "b", "c"]).replace(
        "listen_port = 51820",
        "listen_port = 51820\npreshared_pairs = [[\"c\", \"a\"]]",
    );
    let p = plan(&t);
    let file = |on: &str, peer: &str| {
        p.get("core", on)
            .unwrap()
            .peers
            .iter()
            .find(|x| x.name == peer)
            .unwrap()
            .preshared_key_file
            .clone()
    };
    assert_eq!(
        file("a", "c").as_deref(),
        Some("/etc/rampart/wg/psk/core/a--c.psk")
    );
    assert_eq!(file("c", "a"), file("a", "c"));
    assert_eq!(file("a", "b"), None);
    assert_eq!(file("b", "c"), None);
    assert_eq!(
        p.preshared_pairs(),
        [(
            "core".parse().unwrap(),
            "a".parse().unwrap(),
            "c".parse().unwrap()
        )]
    );
}

#[test]
fn preshared_keys_leave_road_warriors_out() {
    // A road warrior's config would have to carry the key: its pair has none.
    let t = SEED_000.replace(
        "gateways = [\"opnsense\"]",
        "gateways = [\"opnsense\"]\npreshared_keys = true",
    );
    let p = plan(&t);
    let lap = p.get("mgmt", "laptop").unwrap();
    assert!(lap.peers.iter().all(|x| x.preshared_key_file.is_none()));
    let gw = p.get("mgmt", "opnsense").unwrap();
    for x in &gw.peers {
        assert_eq!(
            x.preshared_key_file.is_some(),
            x.name != "laptop",
            "{}",
            x.name
        );
    }
    let conf = rampart_wg::client_config(&p, "laptop", None).unwrap();
    assert!(!conf.contains("PresharedKey"), "{conf}");
}

#[test]
fn qr_codes_render_for_terminal_and_png() {
    let p = plan(SEED_000);
    let conf =
        rampart_wg::client_config(&p, "laptop", Some(&rampart_wg::PrivateKey::generate())).unwrap();
    let term = rampart_wg::qr_terminal(&conf).unwrap();
    assert!(term.lines().count() > 20, "{term}");
    assert!(term.contains('█') || term.contains('▀') || term.contains('▄'));
    let png = rampart_wg::qr_png(&conf, 4).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn listen_port_sources_are_the_peers_endpoints_unless_someone_roams() {
    let p = plan(&mesh(&["a", "b", "c"]));
    let mut s = p.get("core", "a").unwrap().listen_sources().unwrap();
    s.sort();
    assert_eq!(s, ["192.0.2.2:51820", "192.0.2.3:51820"]);
    // The firewall guest of seed 000 has a roaming client: any source.
    let p = plan(SEED_000);
    assert_eq!(p.get("mgmt", "opnsense").unwrap().listen_sources(), None);
    // The client itself listens on no fixed port.
    assert_eq!(p.get("mgmt", "laptop").unwrap().listen_sources(), None);
}

#[test]
fn hub_with_two_gateways_and_clients_on_both() {
    let t = r#"[[node]]
name = "gw1"
endpoint = "203.0.113.1"
[[node]]
name = "gw2"
endpoint = "203.0.113.2"
[[node]]
name = "m"
[[wireguard]]
name = "h"
interface = "wg0"
pool = ["10.5.0.0/24"]
listen_port = 51820
topology = "hub"
gateways = ["gw1", "gw2"]
[[wireguard.member]]
name = "gw1"
public_key = "K(gw1)"
address = ["10.5.0.1"]
[[wireguard.member]]
name = "gw2"
public_key = "K(gw2)"
address = ["10.5.0.2"]
[[wireguard.member]]
name = "m"
public_key = "K(m)"
address = ["10.5.0.3"]
[[client]]
network = "h"
name = "phone"
public_key = "K(phone)"
address = ["10.5.0.9"]
"#;
    let p = plan(t);
    assert_eq!(peer_names(&p, "h", "phone"), ["gw1", "gw2"]);
    // The first gateway carries the pool, the second only itself.
    assert_eq!(
        allowed(&p, "h", "phone", "gw1"),
        ["10.5.0.1/32", "10.5.0.0/24"]
    );
    assert_eq!(allowed(&p, "h", "phone", "gw2"), ["10.5.0.2/32"]);
    assert_eq!(allowed(&p, "h", "m", "gw1"), ["10.5.0.1/32", "10.5.0.0/24"]);
    assert_eq!(peer_names(&p, "h", "gw1"), ["gw2", "m", "phone"]);
    assert_eq!(allowed(&p, "h", "gw2", "phone"), ["10.5.0.9/32"]);
}

#[test]
fn partial_mesh_client_is_reached_through_its_gateway_from_everywhere() {
    let mut t = String::new();
    for (i, n) in ["eu1", "eugw", "us1", "usgw"].iter().enumerate() {
        t.push_str(&format!(
            "[[node]]\nname = \"{n}\"\nendpoint = \"192.0.2.{}\"\n",
            i + 1
        ));
    }
    t.push_str("[[wireguard]]\nname = \"p\"\ninterface = \"wg2\"\npool = [\"10.7.0.0/24\"]\nlisten_port = 51822\ntopology = \"partial\"\ngateways = [\"eugw\", \"usgw\"]\ngroups = { eu = [\"eu1\", \"eugw\"], us = [\"us1\", \"usgw\"] }\n");
    for (n, a) in [("eu1", 11), ("eugw", 1), ("us1", 21), ("usgw", 2)] {
        t.push_str(&format!("[[wireguard.member]]\nname = \"{n}\"\npublic_key = \"K({n})\"\naddress = [\"10.7.0.{a}\"]\n"));
    }
    t.push_str("[[client]]\nnetwork = \"p\"\nname = \"lap\"\npublic_key = \"K(lap)\"\naddress = [\"10.7.0.99\"]\nvia = [\"eugw\"]\n");
    let p = plan(&t);
    assert_eq!(allowed(&p, "p", "eugw", "lap"), ["10.7.0.99/32"]);
    assert!(allowed(&p, "p", "usgw", "eugw").contains(&"10.7.0.99/32".to_string()));
    assert_eq!(
        allowed(&p, "p", "us1", "usgw"),
        ["10.7.0.2/32", "10.7.0.0/24"]
    );
    assert_eq!(
        allowed(&p, "p", "lap", "eugw"),
        ["10.7.0.1/32", "10.7.0.0/24"]
    );
}

#[test]
fn partial_mesh_group_without_exactly_one_gateway_is_refused() {
    let t = "[[node]]\nname = \"a\"\nendpoint = \"192.0.2.1\"\n[[node]]\nname = \"b\"\nendpoint = \"192.0.2.2\"\n[[wireguard]]\nname = \"p\"\ninterface = \"wg0\"\npool = [\"10.7.0.0/24\"]\nlisten_port = 1\ntopology = \"partial\"\ngateways = [\"a\"]\ngroups = { x = [\"a\"], y = [\"b\"] }\n[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\n";
    let c = common::codes(t);
    assert!(
        c.iter().any(|x| x.0 == "E0108" && x.1 == 14 && x.2 == 28),
        "{c:?}"
    );
}

/// The all-nodes renderer (shared peer blocks, several threads once there
/// are 64+ interfaces) writes exactly what the one-interface renderer
/// writes, for a mesh and for a hub with clients (a peer seen with
/// different AllowedIPs from different interfaces).
#[test]
fn all_configs_at_once_match_one_by_one() {
    let mut t = String::new();
    for i in 0..80 {
        t.push_str(&format!(
            "[[node]]\nname = \"n{i}\"\nendpoint = \"192.0.2.{}\"\n",
            i + 1
        ));
    }
    t.push_str("[[wireguard]]\nname = \"m\"\ninterface = \"wg0\"\npool = [\"10.9.0.0/24\", \"fd09::/64\"]\nlisten_port = 51820\n");
    for i in 0..80 {
        t.push_str(&format!(
            "[[wireguard.member]]\nname = \"n{i}\"\npublic_key = \"K(n{i})\"\n"
        ));
    }
    t.push_str("[[wireguard]]\nname = \"h\"\ninterface = \"wg1\"\npool = [\"10.10.0.0/24\"]\nlisten_port = 51821\ntopology = \"hub\"\ngateways = [\"n0\"]\n");
    for i in 0..70 {
        t.push_str(&format!(
            "[[wireguard.member]]\nname = \"n{i}\"\npublic_key = \"K(h{i})\"\n"
        ));
    }
    t.push_str(
        "[[client]]\nnetwork = \"h\"\nname = \"lap\"\npublic_key = \"K(lap)\"\nvia = [\"n0\"]\n",
    );
    let p = plan(&t);
    let all = rampart_wg::wg_quick_confs(&p);
    assert_eq!(all.len(), p.interfaces.len());
    assert_eq!(p.interfaces.len(), 80 + 70 + 1);
    for (c, i) in all.iter().zip(&p.interfaces) {
        assert_eq!(
            *c,
            rampart_wg::wg_quick_conf(i),
            "{} on {}",
            i.network,
            i.owner
        );
    }
    assert_eq!(all[0].matches("[Peer]").count(), 79);
}

//! The full example of docs/wireguard.md compiles cleanly and means what
//! the document says.
mod common;

fn example() -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/wireguard.md"
    ))
    .unwrap();
    let start = doc.find("```toml\n").unwrap() + 8;
    let end = start + doc[start..].find("```").unwrap();
    let mut text = String::new();
    for (k, part) in doc[start..end].split("public_key = \"...\"").enumerate() {
        if k > 0 {
            text.push_str(&format!("public_key = \"K(doc{k})\""));
        }
        text.push_str(part);
    }
    text
}

#[test]
fn the_documented_site_has_no_diagnostics() {
    let t = example();
    let (plan, d) = common::check(&t);
    assert!(d.is_empty(), "{}", common::render(&t));
    let plan = plan.unwrap();
    let lap = plan.get("mgmt", "admin-laptop").unwrap();
    let allowed: Vec<String> = lap.peers[0]
        .allowed_ips
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(allowed, ["10.8.0.1/32", "198.51.100.10/32", "10.0.0.0/24"]);
    assert_eq!(
        lap.peers[0].endpoint.as_deref(),
        Some("198.51.100.11:51821")
    );
    let conf = rampart_wg::client_config(&plan, "admin-laptop", None).unwrap();
    assert!(
        conf.contains("AllowedIPs = 10.8.0.1/32, 198.51.100.10/32, 10.0.0.0/24"),
        "{conf}"
    );
    // 002: the desktop reaches the cluster pool through host1.
    let desk = plan.get("cluster", "desktop").unwrap();
    assert_eq!(desk.peers.len(), 1);
    assert_eq!(desk.peers[0].name, "host1");
    assert!(desk.peers[0]
        .allowed_ips
        .iter()
        .any(|n| n.to_string() == "10.0.0.0/24"));
    assert_eq!(
        plan.get("cluster", "host3").unwrap().listen_port,
        Some(51830)
    );
    assert_eq!(
        plan.get("cluster", "host1")
            .unwrap()
            .peers
            .iter()
            .find(|p| p.name == "host3")
            .unwrap()
            .endpoint
            .as_deref(),
        Some("[2001:db8::3]:51830")
    );
    // 004: kvm1 sends everything to the gateway, the /0 only into table 42.
    let kvm = plan.get("egress", "kvm1").unwrap();
    assert!(kvm.peers[0].allowed_ips.iter().any(|n| n.prefix_len() == 0));
    assert!(kvm
        .routes
        .iter()
        .all(|r| r.dest.prefix_len() > 0 || r.table == Some(42)));
    assert_eq!(kvm.peers[0].persistent_keepalive, Some(25));
    let gw = plan.get("egress", "cloudgw").unwrap();
    let to_kvm: Vec<String> = gw.peers[0]
        .allowed_ips
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(to_kvm, ["10.0.3.2/32", "192.168.100.0/24"]);
}

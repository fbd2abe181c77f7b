//! The WireGuard listen port the nft backend opens (via
//! `rampart_nft::compile_with_extras`) is seen by the simulator: a known
//! peer's endpoint reaches it, a stranger meets `policy_in DROP`.

use rampart_nft::{compile_with_extras, Caps, Extras, WgPort};
use rampart_sim::{simulate_plan, Packet};
use rampart_types::{Action, SiteFiles};

fn site() -> rampart_resolve::ir::Site {
    let files = SiteFiles::new()
        .with(
            "site.toml",
            "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\", \"2001:db8:1::10/64\"] }\n",
        )
        .with(
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[RULES]\nIN SSH(ACCEPT) -source 198.51.100.5\n",
        );
    let (site, diags) = rampart_resolve::load(&files);
    assert!(!diags.has_errors(), "{}", diags.render(&site.sources));
    site
}

fn extras(sources: Option<Vec<&str>>) -> Extras {
    Extras {
        wireguard: vec![WgPort {
            iface: "wg0".parse().unwrap(),
            port: Some(51820),
            sources: sources.map(|v| v.iter().map(|a| a.parse().unwrap()).collect()),
            forward: false,
            origin: "site.toml:19".into(),
        }],
    }
}

#[test]
fn listen_port_admits_known_endpoints_only() {
    let site = site();
    let plan = compile_with_extras(
        &site,
        "hv1",
        &Caps::default(),
        &extras(Some(vec!["203.0.113.2", "2001:db8::3"])),
    )
    .unwrap();
    for peer in ["203.0.113.2", "2001:db8::3"] {
        let t = simulate_plan(
            &site,
            &plan,
            &Packet::udp("outside", "host", 51820).source(peer),
        )
        .unwrap();
        assert_eq!(t.verdict, Action::Accept, "{peer}: {:?}", t.decided_by);
        assert_eq!(t.decided_by.unwrap().origin, "site.toml:19");
    }
    for stranger in ["203.0.113.66", "2001:db8::66"] {
        let t = simulate_plan(
            &site,
            &plan,
            &Packet::udp("outside", "host", 51820).source(stranger),
        )
        .unwrap();
        assert_eq!(t.verdict, Action::Drop, "{stranger}");
        assert_eq!(t.decided_by.unwrap().origin, "auto:policy_in DROP");
    }
    // Another port from a peer is still the policy's.
    let t = simulate_plan(
        &site,
        &plan,
        &Packet::udp("outside", "host", 51821).source("203.0.113.2"),
    )
    .unwrap();
    assert_eq!(t.verdict, Action::Drop);
}

#[test]
fn roaming_peers_open_the_port_to_anyone_and_no_extras_keeps_it_closed() {
    let site = site();
    let open = compile_with_extras(&site, "hv1", &Caps::default(), &extras(None)).unwrap();
    let p = Packet::udp("outside", "host", 51820).source("203.0.113.66");
    assert_eq!(
        simulate_plan(&site, &open, &p).unwrap().verdict,
        Action::Accept
    );
    let plain = rampart_nft::compile(&site, "hv1").unwrap();
    assert_eq!(
        simulate_plan(&site, &plain, &p).unwrap().verdict,
        Action::Drop
    );
    // And with no extras, compile_with_extras is compile.
    let same = compile_with_extras(&site, "hv1", &Caps::default(), &Extras::default()).unwrap();
    assert_eq!(same.script, plain.script);
}

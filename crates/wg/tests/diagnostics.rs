//! Every WireGuard item of bad-inputs.md (32-40): code, line and column.
mod common;
use common::{check, codes, render};

fn has(text: &str, code: &str, line: u32, col: u32) {
    let got = codes(text);
    assert!(
        got.contains(&(code, line, col)),
        "expected {code} at {line}:{col}, got {got:?}\n{}",
        render(text)
    );
}

#[test]
fn e0601_malformed_key_trailing_characters() {
    let t = r#"[[node]]
name = "a"
endpoint = "192.0.2.1"

[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820

[[wireguard.member]]
name = "a"
public_key = "K(a)xyz"
"#;
    has(t, "E0601", 13, 14);
}

#[test]
fn e0601_malformed_key_wrong_length() {
    let t = r#"[[node]]
name = "a"
[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
[[client]]
network = "m"
name = "laptop"
public_key = "AAAA"
"#;
    has(t, "E0601", 11, 14);
}

#[test]
fn e0602_private_key_in_site() {
    let t = r#"[[node]]
name = "a"
endpoint = "192.0.2.1"
  private_key = "K(a)"
"#;
    // Refused whether or not the rest of the TOML would accept the key.
    has(t, "E0602", 4, 3);
    let (_, d) = check(t);
    let shown = render(t);
    assert!(
        !shown.contains(&common::keys("K(a)")) || shown.contains("private_key"),
        "{shown}"
    );
    assert!(d.has_errors());
}

#[test]
fn e0602_wg_quick_private_key_line_pasted_in_site() {
    let t = "[[node]]\nname = \"a\"\n# pasted by mistake:\nPrivateKey = \"K(x)\"\n";
    has(t, "E0602", 4, 1);
}

const THREE: &str = r#"[[node]]
name = "a"
endpoint = "192.0.2.1"
[[node]]
name = "b"
endpoint = "192.0.2.2"
[[node]]
name = "c"
endpoint = "192.0.2.3"
[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
"#;

#[test]
fn e0603_two_peers_with_the_same_key() {
    let t = format!(
        "{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\n[[wireguard.member]]\nname = \"c\"\npublic_key = \"K(b)\"\n"
    );
    // Line 23 is c's key: a sees b and c with one key.
    has(&t, "E0603", 23, 14);
}

#[test]
fn e0604_peer_with_the_nodes_own_key() {
    let t = format!(
        "{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(a)\"\n"
    );
    has(&t, "E0604", 20, 14);
}

#[test]
fn e0605_overlapping_routes_of_two_peers() {
    let t = format!(
        "{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\nroutes = [\"10.1.0.0/16\"]\n[[wireguard.member]]\nname = \"c\"\npublic_key = \"K(c)\"\nroutes = [\"10.1.2.0/24\"]\n"
    );
    has(&t, "E0605", 25, 11);
}

#[test]
fn e0606_default_route_on_two_peers() {
    let t = format!(
        "{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\nroutes = [\"0.0.0.0/0\"]\n[[wireguard.member]]\nname = \"c\"\npublic_key = \"K(c)\"\nroutes = [\"0.0.0.0/0\"]\n"
    );
    has(&t, "E0606", 25, 11);
}

#[test]
fn e0607_allowed_ips_swallow_the_nodes_lan() {
    let t = r#"[[node]]
name = "a"
endpoint = "192.0.2.1"
bridges = { vmbr0 = ["192.168.10.5/24"] }
[[node]]
name = "b"
endpoint = "192.0.2.2"
[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
[[wireguard.member]]
name = "a"
public_key = "K(a)"
[[wireguard.member]]
name = "b"
public_key = "K(b)"
routes = ["10.8.0.0/24", "192.168.0.0/16"]
"#;
    has(t, "E0607", 19, 26);
}

#[test]
fn e0607_allowed_ips_swallow_the_nodes_own_endpoint() {
    let t = format!(
        "{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\nroutes = [\"192.0.2.0/24\"]\n"
    );
    has(&t, "E0607", 21, 11);
}

#[test]
fn e0608_address_outside_pool() {
    let t = format!("{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\naddress = [\"10.9.0.1\"]\n");
    has(&t, "E0608", 18, 12);
    // The network and broadcast addresses are not usable either.
    let t = format!("{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\naddress = [\"10.8.0.255\"]\n");
    has(&t, "E0608", 18, 12);
}

#[test]
fn e0609_address_used_twice() {
    let t = format!(
        "{THREE}[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\naddress = [\"10.8.0.1\"]\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\naddress = [\"10.8.0.1\"]\n"
    );
    has(&t, "E0609", 22, 12);
}

#[test]
fn e0610_bad_interface_names() {
    for bad in ["wg0-with-a-long-name", "wg 0", "wg/0", ""] {
        let t = format!("[[wireguard]]\nname = \"m\"\ninterface = \"{bad}\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\n");
        has(&t, "E0610", 3, 13);
    }
    for good in ["wg0", "wg_mgmt.1", "a=b+c-d", "fifteen_chars_x"] {
        let t = format!("[[wireguard]]\nname = \"m\"\ninterface = \"{good}\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\n");
        assert!(codes(&t).is_empty(), "{good}: {:?}", codes(&t));
    }
}

#[test]
fn e0611_two_interfaces_on_one_node_with_one_port() {
    let t = r#"[[node]]
name = "a"
endpoint = "192.0.2.1"
[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
[[wireguard.member]]
name = "a"
public_key = "K(a)"
[[wireguard]]
name = "n"
interface = "wg1"
pool = ["10.9.0.0/24"]
listen_port = 51820
[[wireguard.member]]
name = "a"
public_key = "K(a2)"
"#;
    has(t, "E0611", 16, 15);
}

#[test]
fn e0612_malformed_endpoints() {
    for bad in [
        "[2001:db8::1:51820",
        "2001:db8::1]:51820",
        "2001:db8::1:51820x",
        "host:",
        "[2001:db8::1]:",
        "1.2.3.4:99999",
        "300.1.1.1",
    ] {
        let t = format!("[[node]]\nname = \"a\"\nendpoint = \"{bad}\"\n");
        has(&t, "E0612", 3, 12);
    }
    for good in [
        "[2001:db8::1]:51820",
        "2001:db8::1",
        "vpn.example.org:51820",
        "198.51.100.7",
    ] {
        let t = format!("[[node]]\nname = \"a\"\nendpoint = \"{good}\"\n");
        assert!(codes(&t).is_empty(), "{good}: {:?}", codes(&t));
    }
}

#[test]
fn e0613_neither_side_has_an_endpoint() {
    let t = r#"[[node]]
name = "a"
[[node]]
name = "b"
[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
[[wireguard.member]]
name = "a"
public_key = "K(a)"
[[wireguard.member]]
name = "b"
public_key = "K(b)"
"#;
    has(t, "E0613", 14, 8);
}

#[test]
fn e0614_keepalive_out_of_range() {
    let t = r#"[[wireguard]]
name = "m"
interface = "wg0"
pool = ["10.8.0.0/24"]
listen_port = 51820
persistent_keepalive = 0
[[client]]
network = "m"
name = "c"
public_key = "K(c)"
persistent_keepalive = 70000
"#;
    has(t, "E0614", 6, 24);
    has(t, "E0614", 11, 24);
}

#[test]
fn e0615_mtu_below_1280_with_ipv6() {
    let t = "[[wireguard]]\nname = \"m\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\", \"fd00:8::/64\"]\nlisten_port = 51820\nmtu = 1200\n";
    has(t, "E0615", 6, 7);
    // Without IPv6 in the pool, 1200 is allowed.
    let t = "[[wireguard]]\nname = \"m\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\nmtu = 1200\n";
    assert!(codes(t).is_empty(), "{:?}", codes(t));
}

#[test]
fn e0617_preshared_pairs_that_are_not_two_peering_members() {
    // A hub: b and c peer only with the gateway a.
    let line = r#"preshared_pairs = [["a", "b"], ["b", "c"], ["a", "x"], ["a", "a"], ["a"], ["b", "a"], ["a", "laptop"]]"#;
    let t = format!(
        "{THREE}topology = \"hub\"\ngateways = [\"a\"]\n{line}\n[[wireguard.member]]\nname = \"a\"\npublic_key = \"K(a)\"\n[[wireguard.member]]\nname = \"b\"\npublic_key = \"K(b)\"\n[[wireguard.member]]\nname = \"c\"\npublic_key = \"K(c)\"\n[[client]]\nnetwork = \"m\"\nname = \"laptop\"\npublic_key = \"K(laptop)\"\n"
    );
    let col = |needle: &str| line.find(needle).unwrap() as u32 + 1;
    has(&t, "E0617", 17, col(r#"["b", "c"]"#)); // not peers in a hub
    has(&t, "E0617", 17, col(r#""x""#)); // not a member
    has(&t, "E0617", 17, col(r#"["a", "a"]"#)); // with itself
    has(&t, "E0617", 17, col(r#"["a"]"#)); // one name
    has(&t, "E0617", 17, col(r#"["b", "a"]"#)); // (a, b) again
    has(&t, "E0617", 17, col(r#""laptop""#)); // a road warrior
    let got: Vec<_> = codes(&t).into_iter().filter(|c| c.0 == "E0617").collect();
    assert_eq!(got.len(), 6, "{got:?}\n{}", render(&t));
    assert!(
        render(&t).contains("are not peers in network `m`"),
        "{}",
        render(&t)
    );
}

#[test]
fn unknown_key_in_wireguard_table_is_an_error_with_position() {
    let t = "[[wireguard]]\nname = \"m\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\nlisten_prot = 1\n";
    let got = codes(t);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, "E0103");
    assert_eq!(got[0].1, 6);
}

#[test]
fn rendered_diagnostic_shows_the_line_and_a_caret() {
    let t = "[[wireguard]]\nname = \"m\"\ninterface = \"wg0-far-too-long-name\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\n";
    let r = render(t);
    assert!(r.contains("error[E0610]"), "{r}");
    assert!(r.contains("site.toml:3:13"), "{r}");
    assert!(
        r.contains("3 | interface = \"wg0-far-too-long-name\""),
        "{r}"
    );
}

#[test]
fn e0602_is_not_raised_for_innocent_names() {
    // `private = true` on something else, a public key named as such.
    let t = "[[node]]\nname = \"a\"\nprivate = true\n\n[[client]]\n";
    assert!(!codes(t).iter().any(|c| c.0 == "E0602"), "{:?}", codes(t));
    // ... but a key-looking value under a psk name is refused.
    let t = "[[node]]\nname = \"a\"\npsk = \"K(x)\"\n";
    has(t, "E0602", 3, 1);
}

#[test]
fn default_route_table_must_not_be_main() {
    let t = "[[wireguard]]\nname = \"m\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\ntable = 254\n";
    has(t, "E0108", 6, 9);
}

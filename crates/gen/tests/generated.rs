//! The generator's promises: deterministic, valid, and the size asked for.

mod lint;

use rampart_gen::{generate, generate_pve_tree, GenError, GenParams};

fn params(nodes: u32, guests: u32, rules: u32, seed: u64) -> GenParams {
    GenParams {
        nodes,
        guests,
        rules_per_guest: rules,
        seed,
    }
}

#[test]
fn same_parameters_give_identical_bytes() {
    let p = params(7, 150, 12, 42);
    assert_eq!(generate(&p).unwrap(), generate(&p).unwrap());
}

#[test]
fn different_seeds_give_different_sites() {
    let a = generate(&params(7, 150, 12, 1)).unwrap();
    let b = generate(&params(7, 150, 12, 2)).unwrap();
    assert_eq!(
        a.files.keys().collect::<Vec<_>>(),
        b.files.keys().collect::<Vec<_>>(),
        "the same parameters name the same files"
    );
    assert_ne!(a.get("firewall/cluster.fw"), b.get("firewall/cluster.fw"));
    let differing = a
        .files
        .iter()
        .filter(|(k, v)| b.get(k) != Some(v.as_slice()))
        .count();
    assert!(differing > 100, "only {differing} files differ");
}

#[test]
fn counts_match_the_parameters() {
    let p = params(5, 40, 9, 3);
    let site = generate(&p).unwrap();
    let toml = String::from_utf8(site.get("site.toml").unwrap().to_vec()).unwrap();
    assert_eq!(toml.matches("[[node]]").count(), 5);
    assert_eq!(toml.matches("[[guest]]").count(), 40);
    let hosts = site
        .files
        .keys()
        .filter(|k| k.ends_with("/host.fw"))
        .count();
    assert_eq!(hosts, 5);
    let (errs, counts) = lint::check_site(&site);
    assert!(errs.is_empty(), "{errs:#?}");
    let guest_files: Vec<_> = counts
        .iter()
        .filter(|(k, _)| k.starts_with("firewall/") && !k.ends_with("cluster.fw"))
        .collect();
    assert_eq!(guest_files.len(), 40);
    for (file, n) in guest_files {
        assert_eq!(*n, 9, "{file} has {n} rules");
    }
}

#[test]
fn zero_rules_and_zero_guests_are_fine() {
    for p in [params(2, 10, 0, 1), params(1, 0, 10, 1)] {
        let site = generate(&p).unwrap();
        let (errs, counts) = lint::check_site(&site);
        assert!(errs.is_empty(), "{errs:#?}");
        for (file, n) in &counts {
            if file.starts_with("firewall/") && !file.ends_with("cluster.fw") {
                assert_eq!(*n, 0, "{file}");
            }
        }
    }
}

#[test]
fn generated_sites_are_valid_over_many_seeds_and_shapes() {
    for seed in 0..12 {
        for (n, g, r) in [(1, 30, 25), (3, 60, 10), (10, 200, 4), (4, 700, 15)] {
            let site = generate(&params(n, g, r, seed)).unwrap();
            let (errs, _) = lint::check_site(&site);
            assert!(
                errs.is_empty(),
                "seed {seed}, {n}/{g}/{r}: {} problems, first: {:#?}",
                errs.len(),
                &errs[..errs.len().min(10)]
            );
        }
    }
}

#[test]
fn every_macro_used_exists_with_its_exact_spelling() {
    let macros = lint::macros();
    assert_eq!(macros.len(), 88, "the reference table has 88 macros");
    let site = generate(&params(10, 1000, 20, 9)).unwrap();
    let mut used = std::collections::BTreeSet::new();
    for bytes in site.files.values() {
        let text = String::from_utf8(bytes.clone()).unwrap();
        for line in text.lines() {
            let line = line
                .split('#')
                .next()
                .unwrap()
                .trim()
                .trim_start_matches('|');
            let mut toks = line.split_whitespace();
            if !matches!(toks.next(), Some("IN" | "OUT" | "FORWARD")) {
                continue;
            }
            let act = toks.next().unwrap();
            if let Some(i) = act.find('(') {
                let name = &act[..i];
                assert!(macros.contains_key(name), "unknown macro {name} in {line}");
                used.insert(name.to_string());
            }
        }
    }
    assert!(
        used.len() >= 30,
        "a realistic mix uses many macros: {used:?}"
    );
}

#[test]
fn the_blacklist_scales_with_the_site_and_has_nomatch_holes() {
    let small = generate(&params(2, 10, 5, 1)).unwrap();
    let big = generate(&params(100, 2000, 5, 1)).unwrap();
    let entries = |s: &rampart_types::SiteFiles| {
        let t = String::from_utf8(s.get("firewall/cluster.fw").unwrap().to_vec()).unwrap();
        let body = t.split("[IPSET blacklist]").nth(1).unwrap();
        let body = &body[body.find('\n').unwrap() + 1..];
        let body = body.split("\n\n").next().unwrap();
        let lines: Vec<String> = body.lines().map(|l| l.to_string()).collect();
        lines
    };
    let (s, b) = (entries(&small), entries(&big));
    assert!(s.len() >= 20);
    assert!(b.len() >= 800, "{}", b.len());
    assert!(b.iter().any(|l| l.starts_with('!')), "nomatch entries");
    assert!(b.iter().any(|l| l.contains(':')), "IPv6 entries");
}

#[test]
fn features_of_a_realistic_site_are_all_present() {
    let site = generate(&params(6, 300, 12, 5)).unwrap();
    let all: String = site
        .files
        .values()
        .map(|v| String::from_utf8(v.clone()).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    for needle in [
        "[IPSET management]",
        "[IPSET blacklist]",
        "[IPSET ipfilter-net0]",
        "[IPSET ipfilter-net1]",
        "[group webserver]",
        "[group dbserver]",
        "GROUP webserver",
        "[ALIASES]",
        " -i net0",
        " -i net1",
        "-log ",
        "\n|IN ",
        "-icmp-type",
        "-p icmpv6",
        "2001:db8:",
        "-source +",
        "-dest ",
        "enable: 0",
        "ipfilter: 1",
        "macfilter: 1",
        "kind = \"ct\"",
        "kind = \"vm\"",
        "firewall = false",
        "dc/",
        "guest/",
    ] {
        assert!(all.contains(needle), "missing: {needle:?}");
    }
    // address ranges, address lists and port ranges/lists
    assert!(all
        .lines()
        .any(|l| l.contains("-source 198.51.100.") && l.contains('-') && l.contains("-p")));
    assert!(all.lines().any(|l| l.contains("-source ")
        && l.split("-source ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .contains(',')));
    assert!(all.lines().any(|l| l.contains("-dport ")
        && l.split("-dport ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .contains(':')));
}

#[test]
fn bad_parameters_are_refused() {
    assert_eq!(generate(&params(0, 10, 1, 1)), Err(GenError::NoNodes));
    assert!(matches!(
        generate(&params(40_000, 10, 1, 1)),
        Err(GenError::TooManyNodes(40_000))
    ));
    assert!(matches!(
        generate(&params(16_385, 4_000_000, 1, 1)),
        Err(GenError::AddressSpace { .. })
    ));
    assert!(generate(&params(1, 10, 5000, 1)).is_err());
}

#[test]
fn the_benchmark_site_has_the_promised_size() {
    // 1,000 nodes, 20,000 guests, 10 rules each: the benchmark site.
    let site = generate(&params(1000, 20_000, 10, 1)).unwrap();
    let guest_fw = site
        .files
        .keys()
        .filter(|k| k.starts_with("firewall/") && !k.ends_with("cluster.fw"))
        .count();
    assert_eq!(guest_fw, 20_000);
    let rules: usize = site
        .files
        .iter()
        .filter(|(k, _)| k.starts_with("firewall/") && !k.ends_with("cluster.fw"))
        .map(|(_, v)| {
            let t = std::str::from_utf8(v).unwrap();
            let body = t.split("[RULES]\n").nth(1).unwrap_or("");
            body.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .count()
        })
        .sum();
    assert_eq!(rules, 200_000);
}

#[test]
fn the_checker_used_above_does_catch_broken_sites() {
    let site = generate(&params(2, 4, 5, 1)).unwrap();
    let broken = |extra: &str| {
        let mut s = site.clone();
        let mut fw = s.get("firewall/100.fw").unwrap().to_vec();
        fw.extend_from_slice(extra.as_bytes());
        s.insert("firewall/100.fw", fw);
        let (errs, _) = lint::check_site(&s);
        assert!(!errs.is_empty(), "not caught: {extra}");
    };
    broken("IN Ssh(ACCEPT)\n");
    broken("IN SSH(ACCEPT) -source nosuchalias\n");
    broken("IN SSH(ACCEPT) -source +nosuchset\n");
    broken("GROUP nosuchgroup\n");
    broken("IN ACCEPT -p tcp -dport 70000\n");
    broken("IN ACCEPT -p tcp -dport 90:80\n");
    broken("IN ACCEPT -source 10.0.0.5/24\n");
    broken("IN ACCEPT -source 10.0.0.1 -dest 2001:db8::1\n");
    broken("IN ACCEPT -p icmp -source office_net6\n");
    broken("IN ACCEPT -i net7\n");
    broken("FORWARD ACCEPT\n");
    broken("IN ACCEPT -dport 80\n");

    // and a site.toml with a reused address
    let mut s = site.clone();
    let toml = String::from_utf8(s.get("site.toml").unwrap().to_vec()).unwrap();
    s.insert(
        "site.toml",
        toml.replacen("10.0.0.10/", "10.0.0.11/", 1)
            .replacen("10.0.1.10/", "10.0.0.11/", 1),
    );
    let (errs, _) = lint::check_site(&s);
    assert!(errs.iter().any(|e| e.contains("used twice")), "{errs:?}");
}

#[test]
fn the_pve_tree_layout_is_the_same_site_without_site_toml() {
    let p = params(4, 120, 8, 11);
    let toml_site = generate(&p).unwrap();
    let tree = generate_pve_tree(&p).unwrap();
    assert_eq!(tree, generate_pve_tree(&p).unwrap(), "deterministic");
    assert!(tree.get("site.toml").is_none());
    assert!(tree.get("corosync.conf").is_some());
    // identical firewall files
    for (k, v) in &toml_site.files {
        if k.ends_with(".fw") {
            assert_eq!(tree.get(k), Some(v.as_slice()), "{k}");
        }
    }
    // one .conf per guest, on the guest's node, with the same NICs
    let confs = lint::conf_guests(&tree);
    assert_eq!(confs.len(), 120);
    let toml: toml::Value =
        toml::from_str(std::str::from_utf8(toml_site.get("site.toml").unwrap()).unwrap()).unwrap();
    for g in toml["guest"].as_array().unwrap() {
        let id = g["id"].as_integer().unwrap() as u64;
        let (node, kind, nics) = &confs[&id];
        assert_eq!(g["node"].as_str().unwrap(), node);
        assert_eq!(g["kind"].as_str().unwrap(), kind);
        let tnics = g["nics"].as_array().unwrap();
        assert_eq!(tnics.len(), nics.len());
        for (t, c) in tnics.iter().zip(nics) {
            assert_eq!(t["name"].as_str().unwrap(), c.name);
            assert_eq!(t["bridge"].as_str().unwrap(), c.bridge);
            assert_eq!(t["mac"].as_str().unwrap(), c.mac);
            assert_eq!(t["firewall"].as_bool().unwrap(), c.firewall);
            if kind == "ct" {
                let addrs: std::collections::BTreeSet<String> = t["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(addrs, c.addresses);
            } else {
                assert!(c.addresses.is_empty(), "VM .conf files carry no addresses");
            }
        }
    }
    // and the firewall files check against the topology read from the tree
    let topo = lint::pve_topology(&tree);
    assert_eq!(topo.bridges.len(), 4);
    let (errs, _) = lint::check_fw(&tree, &topo);
    assert!(errs.is_empty(), "{errs:#?}");
}

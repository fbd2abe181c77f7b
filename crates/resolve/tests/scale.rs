//! Scale: the 1,000-node / 20,000-guest / ~200,000-rule site must parse and
//! resolve in under 2 s (release build) and well under 1 GiB. Ignored in the
//! normal (debug) test run; run with
//! `cargo test --release -p rampart-resolve --test scale -- --ignored --nocapture`.

use rampart_types::SiteFiles;
use std::fmt::Write;
use std::time::Instant;

/// A deterministic synthetic site (no randomness: every figure is reproducible).
pub fn synthetic(nodes: usize, guests: usize, rules_per_guest: usize) -> SiteFiles {
    let mut files = SiteFiles::new();
    let mut toml = String::from("[site]\nname = \"scale\"\n\n");
    for n in 0..nodes {
        let _ = write!(
            toml,
            "[[node]]\nname = \"hv{n}\"\nbridges = {{ vmbr0 = [\"10.{}.{}.1/16\", \"2001:db8:{n:x}::1/64\"], vmbr1 = [] }}\n\n",
            n / 250,
            n % 250
        );
    }
    for g in 0..guests {
        let id = 1000 + g;
        let _ = write!(
            toml,
            "[[guest]]\nid = {id}\nkind = \"{}\"\nnode = \"hv{}\"\nnics = [{{ name = \"net0\", bridge = \"vmbr0\", addresses = [\"10.{}.{}.{}/16\"] }}]\n\n",
            if g % 3 == 0 { "ct" } else { "vm" },
            g % nodes,
            100 + g / 65536,
            (g / 256) % 256,
            g % 256
        );
    }
    files.insert("site.toml", toml);
    let mut cluster = String::from("[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[ALIASES]\n");
    for a in 0..50 {
        let _ = writeln!(cluster, "host{a} 192.0.2.{a} # alias {a}");
    }
    let _ = writeln!(
        cluster,
        "v6host 2001:db8:ffff::1\n\n[IPSET management]\n198.51.100.0/24\n\n[IPSET blacklist]\n203.0.113.66\n"
    );
    for s in 0..50 {
        let _ = writeln!(
            cluster,
            "[IPSET set{s}]\n10.200.{s}.0/24\nhost{s}\n!10.200.{s}.7\n2001:db8:aaaa:{s:x}::/64\n"
        );
    }
    for grp in 0..20 {
        let _ = writeln!(
            cluster,
            "[group grp{grp}]\nIN HTTP(ACCEPT)\nIN HTTPS(ACCEPT) -source +set{grp}\nIN ACCEPT -p tcp -dport {} -source host{grp}\nOUT DNS(ACCEPT)\nIN Ping(ACCEPT)\n",
            8000 + grp
        );
    }
    cluster.push_str(
        "[RULES]\nIN SSH(ACCEPT) -source +management\nIN ACCEPT -p udp -dport 5404:5405 -source local_network\n",
    );
    for r in 0..18 {
        let _ = writeln!(
            cluster,
            "IN ACCEPT -p tcp -dport {} -source +set{}",
            9000 + r,
            r
        );
    }
    files.insert("firewall/cluster.fw", cluster);
    for g in 0..guests {
        let id = 1000 + g;
        let mut fw = String::from(
            "[OPTIONS]\nenable: 1\npolicy_in: DROP\n\n[IPSET allowed]\n10.0.0.0/8\n2001:db8::/32\n\n[RULES]\n",
        );
        for r in 0..rules_per_guest {
            let line = match r % 8 {
                0 => format!("GROUP grp{}", g % 20),
                1 => "IN SSH(ACCEPT) -source +allowed".to_string(),
                2 => format!(
                    "IN ACCEPT -p tcp -dport {} -source host{}",
                    1000 + r,
                    r % 50
                ),
                3 => "IN ACCEPT -p tcp -dport 80,443,8080:8090 -source 192.0.2.0/24,198.51.100.7"
                    .to_string(),
                4 => "OUT DROP -p udp -dport 25 -dest v6host".to_string(),
                5 => "IN DROP -p icmp -icmp-type echo-request -log info".to_string(),
                6 => "IN Web(ACCEPT) -i net0 -source +dc/set3".to_string(),
                _ => format!("|IN ACCEPT -p tcp -dport {}", 2000 + r),
            };
            fw.push_str(&line);
            fw.push('\n');
        }
        files.insert(format!("firewall/{id}.fw"), fw);
    }
    files
}

#[test]
fn small_synthetic_site_is_clean() {
    let files = synthetic(3, 12, 16);
    let (site, d) = rampart_resolve::load(&files);
    // The generator repeats rules; the policy lint (E0501/E0505) says so.
    assert!(
        d.items
            .iter()
            .all(|x| x.code == "E0501" || x.code == "E0505"),
        "{:#?}",
        d.items.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(site.guests.len(), 12);
}

#[test]
#[ignore]
fn large_site_parses_and_resolves_fast() {
    let files = synthetic(1000, 20_000, 10);
    let bytes: usize = files.files.values().map(|v| v.len()).sum();
    let t = Instant::now();
    let (ast, map, mut d) = rampart_syntax::parse_site(&files);
    let parsed = t.elapsed();
    let (site, more) = rampart_resolve::resolve(&ast, map);
    d.extend(more);
    let el = t.elapsed();
    println!(
        "parse: {:.3} s, resolve: {:.3} s",
        parsed.as_secs_f64(),
        (el - parsed).as_secs_f64()
    );
    let rules: usize = site.guests.iter().map(|g| g.rules.len()).sum::<usize>()
        + site
            .nodes
            .iter()
            .map(|n| n.firewall.rules.len())
            .sum::<usize>();
    let written: usize = files
        .files
        .iter()
        .filter(|(p, _)| p.ends_with(".fw"))
        .map(|(_, v)| v.iter().filter(|&&b| b == b'\n').count())
        .sum();
    println!(
        "parse+resolve: {} files, {} MB, {written} lines of .fw, {} IR rules, {} sets, {} diagnostics: {:.3} s",
        files.files.len(),
        bytes / 1_000_000,
        rules,
        site.sets.len(),
        d.items.len(),
        el.as_secs_f64()
    );
    if let Ok(s) = std::fs::read_to_string("/proc/self/status") {
        for l in s
            .lines()
            .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
        {
            println!("{l}");
        }
    }
    assert!(
        d.is_empty(),
        "{:#?}",
        d.items.iter().take(5).collect::<Vec<_>>()
    );
    assert!(el.as_secs_f64() < 2.0, "took {el:?}");
}

#[test]
#[ignore]
fn large_site_toml_alone() {
    let all = synthetic(1000, 20_000, 10);
    let files = SiteFiles::new().with("site.toml", all.get("site.toml").unwrap().to_vec());
    let t = Instant::now();
    let (ast, _, d) = rampart_syntax::parse_site(&files);
    println!(
        "site.toml alone: {:.3} s ({} guests, {} diagnostics)",
        t.elapsed().as_secs_f64(),
        ast.guests.len(),
        d.items.len()
    );
}

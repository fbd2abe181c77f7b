//! The bundled example sites (`examples/homelab`, `examples/pve-tree`) are
//! valid by the same strict checker the generator is held to, their Proxmox
//! `.conf` files agree with `site.toml`, and the home lab uses every rule
//! example of the Proxmox firewall document.

mod lint;

use rampart_types::SiteFiles;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(dir: &Path) -> SiteFiles {
    fn walk(root: &Path, dir: &Path, out: &mut SiteFiles) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut s = SiteFiles::new();
    walk(dir, dir, &mut s);
    s
}

fn text(site: &SiteFiles, p: &str) -> String {
    String::from_utf8(site.get(p).unwrap().to_vec()).unwrap()
}

#[test]
fn homelab_is_valid() {
    let site = load(&repo().join("examples/homelab"));
    let (errs, counts) = lint::check_site(&site);
    assert!(errs.is_empty(), "{errs:#?}");
    assert_eq!(counts.keys().filter(|k| k.ends_with("host.fw")).count(), 3);
    // cluster.fw, 3 host.fw, 7 guest .fw
    assert_eq!(counts.len(), 11, "{counts:?}");
}

#[test]
fn homelab_conf_files_agree_with_site_toml() {
    let site = load(&repo().join("examples/homelab"));
    let confs = lint::conf_guests(&site);
    let toml: toml::Value = toml::from_str(&text(&site, "site.toml")).unwrap();
    let guests = toml["guest"].as_array().unwrap();
    assert!(confs.values().any(|(_, k, _)| k == "vm"));
    assert!(confs.values().any(|(_, k, _)| k == "ct"));
    let mut seen = BTreeSet::new();
    for g in guests {
        let id = g["id"].as_integer().unwrap() as u64;
        let Some((node, kind, nics)) = confs.get(&id) else {
            panic!("guest {id} has no .conf");
        };
        seen.insert(id);
        assert_eq!(g["node"].as_str().unwrap(), node, "guest {id} node");
        assert_eq!(g["kind"].as_str().unwrap(), kind, "guest {id} kind");
        let tnics = g["nics"].as_array().unwrap();
        assert_eq!(tnics.len(), nics.len(), "guest {id} NIC count");
        for (t, c) in tnics.iter().zip(nics) {
            assert_eq!(t["name"].as_str().unwrap(), c.name, "guest {id}");
            assert_eq!(
                t["bridge"].as_str().unwrap(),
                c.bridge,
                "guest {id} {}",
                c.name
            );
            assert_eq!(
                t["mac"].as_str().unwrap().to_ascii_uppercase(),
                c.mac,
                "guest {id} {}",
                c.name
            );
            assert_eq!(
                t["firewall"].as_bool().unwrap(),
                c.firewall,
                "guest {id} {}",
                c.name
            );
            if kind == "ct" {
                let addrs: BTreeSet<String> = t["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(addrs, c.addresses, "guest {id} {} addresses", c.name);
            }
        }
    }
    assert_eq!(seen.len(), confs.len(), "a .conf without a site.toml guest");
}

/// Every configuration example of the Proxmox VE firewall document
/// (`shared/seeds/001`), as written there.
const DOCUMENT_EXAMPLES: &[&str] = &[
    "# enable firewall (cluster wide setting, default is disabled)",
    "enable: 1",
    "IN SSH(ACCEPT) -i net0",
    "IN SSH(ACCEPT) -i net0 # a comment",
    "IN SSH(ACCEPT) -i net0 -source 192.168.2.192  # only allow SSH from 192.168.2.192",
    "IN SSH(ACCEPT) -i net0 -source 10.0.0.1-10.0.0.10 # accept SSH for ip range",
    "IN SSH(ACCEPT) -i net0 -source 10.0.0.1,10.0.0.2,10.0.0.3 #accept ssh for ip list",
    "IN SSH(ACCEPT) -i net0 -source +mynetgroup   # accept ssh for ipset mynetgroup",
    "IN SSH(ACCEPT) -i net0 -source myserveralias   #accept ssh for alias myserveralias",
    "|IN SSH(ACCEPT) -i net0 # disabled rule",
    "[group webserver]",
    "IN  ACCEPT -p tcp -dport 80",
    "IN  ACCEPT -p tcp -dport 443",
    "GROUP webserver",
    "IN HTTP(ACCEPT) -source +management",
    "[IPSET management]",
    "192.168.2.10",
    "[IPSET blacklist]",
    "77.240.159.182",
    "213.87.123.0/24",
    "[IPSET ipfilter-net0] # only allow specified IPs on net0",
    "ips: 1",
    "ips_queues: 0",
];

#[test]
fn homelab_uses_every_example_of_the_proxmox_document() {
    let site = load(&repo().join("examples/homelab"));
    let lines: BTreeSet<String> = site
        .files
        .iter()
        .filter(|(k, _)| k.ends_with(".fw"))
        .flat_map(|(_, v)| {
            String::from_utf8(v.clone())
                .unwrap()
                .lines()
                .map(|l| l.trim_end().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    for ex in DOCUMENT_EXAMPLES {
        assert!(lines.contains(*ex), "example not used verbatim: {ex:?}");
    }
    // the local_network alias is overridden in cluster.fw
    let cluster = text(&site, "firewall/cluster.fw");
    assert!(cluster.lines().any(|l| l.starts_with("local_network ")));
    // the -i net0 examples sit in guests that have net0 (checked by the
    // linter), and mynetgroup/myserveralias are defined (likewise)
}

#[test]
fn pve_tree_is_a_valid_bare_proxmox_tree() {
    let site = load(&repo().join("examples/pve-tree"));
    assert!(
        site.get("site.toml").is_none(),
        "pve-tree has no site.toml on purpose"
    );
    let topo = lint::pve_topology(&site);
    // totem cluster_name is not a node
    assert!(topo.bridges.len() >= 2, "{:?}", topo.bridges.keys());
    assert!(!topo.guest_nics.is_empty());
    let (errs, counts) = lint::check_fw(&site, &topo);
    assert!(errs.is_empty(), "{errs:#?}");
    assert!(counts.keys().any(|k| k.ends_with("host.fw")));
    for id in topo.guest_nics.keys() {
        // every guest with a .fw file was checked against its NICs
        if site.get(&format!("firewall/{id}.fw")).is_some() {
            assert!(counts.contains_key(&format!("firewall/{id}.fw")));
        }
    }
    // ring0_addr of every node is an IP address
    let corosync = text(&site, "corosync.conf");
    let rings: Vec<_> = corosync
        .lines()
        .filter_map(|l| l.trim().strip_prefix("ring0_addr: "))
        .collect();
    assert_eq!(rings.len(), topo.bridges.len());
    for r in rings {
        r.parse::<std::net::IpAddr>().unwrap();
    }
}

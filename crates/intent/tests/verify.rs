//! Intents checked across the site: the labs' matrices, and what a miss
//! says (the deciding rule and its line, or the routing reason).

use rampart_intent::{check_files, render, Report};
use rampart_types::SiteFiles;
use std::path::Path;

fn read_dir(root: &Path, dir: &Path, files: &mut SiteFiles) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            read_dir(root, &p, files);
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

fn lab(name: &str) -> SiteFiles {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../labs")
        .join(name);
    let mut f = SiteFiles::new();
    read_dir(&root, &root, &mut f);
    f
}

fn report(files: &SiteFiles) -> Report {
    match check_files(files) {
        Ok(r) => r,
        Err((d, map)) => panic!("{}", d.render(&map)),
    }
}

fn edit(files: &SiteFiles, path: &str, f: impl Fn(&str) -> String) -> SiteFiles {
    let mut out = files.clone();
    let old = String::from_utf8(files.get(path).unwrap_or_default().to_vec()).unwrap();
    out.insert(path, f(&old));
    out
}

fn row<'a>(r: &'a Report, intent: &str) -> &'a rampart_intent::Row {
    r.matrix
        .rows
        .iter()
        .find(|x| x.intent == intent)
        .unwrap_or_else(|| panic!("no row {intent}"))
}

#[test]
fn wireguard_private_cluster_meets_every_intent() {
    let r = report(&lab("wireguard-private-cluster"));
    assert_eq!(r.matrix.misses(), 0, "{}", render::text(&r.matrix));
    assert!(r.matrix.rows.len() >= 15);
    // The road warrior reaches host2 through host1, which forwards.
    let x = row(&r, "desktop -> host2 via host1");
    assert_eq!(render::hops(&x.hops), "desktop -wg0-> host1 -wg0-> host2");
    let p = x.probe.as_ref().unwrap();
    assert_eq!((p.from.as_str(), p.to.as_str()), ("desktop", "host2"));
    assert_eq!(p.source.to_string(), "10.0.0.100");
    assert_eq!(p.dest.to_string(), "10.0.0.3");
    // GitLab from the internet meets host1's REJECT policy.
    let x = row(&r, "gitlab not from the internet");
    assert_eq!(x.got, Some(false));
    let d = x.decided_by.as_ref().unwrap();
    assert_eq!(
        (d.node.as_str(), d.origin.as_str()),
        ("host1", "auto:policy_in REJECT")
    );
    assert_eq!(x.probe.as_ref().unwrap().dest.to_string(), "203.0.113.10");
    // Over the VPN it is the host.fw line that admits it.
    let x = row(&r, "gitlab");
    assert_eq!(x.decided_by.as_ref().unwrap().origin, "host.fw:6");
    // The WireGuard port: open to a known peer (the listen rule's line).
    let x = row(&r, "wireguard port open to a known peer");
    assert_eq!(x.decided_by.as_ref().unwrap().origin, "site.toml:35");
}

#[test]
fn a_missing_firewall_rule_is_a_miss_naming_the_policy() {
    let f = edit(
        &lab("wireguard-private-cluster"),
        "nodes/host1/host.fw",
        |s| s.replace("IN HTTPS(ACCEPT) -i wg0", "|IN HTTPS(ACCEPT) -i wg0"),
    );
    let r = report(&f);
    let x = row(&r, "gitlab");
    assert!(!x.ok());
    assert_eq!(x.got, Some(false));
    assert_eq!(
        x.decided_by.as_ref().unwrap().origin,
        "auto:policy_in REJECT"
    );
    let t = render::text(&r.matrix);
    assert!(t.contains("MISS  gitlab "), "{t}");
    let d = r
        .matrix
        .diagnostics(&r.expects)
        .render(&r.world.site.sources);
    assert!(
        d.contains("error[E0506]: intent `gitlab` (HTTPS) expects reachable, got unreachable"),
        "{d}"
    );
}

#[test]
fn a_closed_wireguard_port_breaks_the_tunnel() {
    // host1 drops WireGuard before rampart's listen rule: the road warrior
    // cannot dial it, so nothing through host1 works.
    let f = edit(
        &lab("wireguard-private-cluster"),
        "nodes/host1/host.fw",
        |s| format!("{s}IN DROP -p udp -dport 51820\n"),
    );
    let r = report(&f);
    let x = row(&r, "desktop -> host1");
    assert_eq!(x.got, Some(false));
    assert!(
        x.reason
            .as_deref()
            .unwrap()
            .contains("WireGuard port 51820/udp of host1 closed"),
        "{x:?}"
    );
    assert_eq!(x.decided_by.as_ref().unwrap().origin, "host.fw:7");
}

#[test]
fn a_client_without_the_route_reaches_nothing_beyond_it() {
    // An address in no AllowedIPs of the desktop leaves it unencrypted, to
    // the internet, where a private address goes nowhere.
    let f = edit(&lab("wireguard-private-cluster"), "site.toml", |s| {
        format!("{s}\n[[expect]]\nname = \"off-tunnel\"\nfrom = \"desktop\"\nto = \"10.9.9.9\"\nreachable = false\n")
    });
    let r = report(&f);
    let x = row(&r, "off-tunnel");
    assert_eq!(x.got, Some(false));
    assert!(
        x.reason.as_deref().unwrap().contains("private address"),
        "{x:?}"
    );
}

#[test]
fn unknown_endpoints_and_qualifiers_are_diagnosed() {
    let f = edit(&lab("wireguard-private-cluster"), "site.toml", |s| {
        format!("{s}\n[[expect]]\nfrom = \"dekstop\"\nto = \"host1@vmbr9\"\nreachable = true\n")
    });
    let Err((d, map)) = check_files(&f) else {
        panic!("accepted");
    };
    let t = d.render(&map);
    assert!(
        t.contains("error[E0416]: unknown endpoint `dekstop`"),
        "{t}"
    );
    assert!(t.contains("did you mean `desktop`?"), "{t}");
    assert!(t.contains("error[E0416]: `host1` has no `vmbr9`"), "{t}");
    assert!(t.contains("did you mean `vmbr0`?"), "{t}");
}

#[test]
fn allow_list_is_the_vpn_pool() {
    let r = report(&lab("wireguard-private-cluster"));
    let l = rampart_intent::allowlist::allowlist(&r, "gitlab", &[]).unwrap();
    let t = rampart_intent::allowlist::nginx(&l, "gitlab");
    assert!(t.contains("allow 10.0.0.0/24;"), "{t}");
    assert!(t.ends_with("deny all;\n"), "{t}");
    assert!(!t.contains("allow all"), "{t}");
    // A list that would admit a source that must stay out is refused.
    let e =
        rampart_intent::allowlist::allowlist(&r, "gitlab", &["203.0.113.0/24".parse().unwrap()])
            .unwrap_err();
    assert!(e.contains("must not reach host1"), "{e}");
}

#[test]
fn every_lab_meets_its_intents() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../labs");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if !p.join("site.toml").exists() {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let r = report(&lab(&name));
        assert!(!r.matrix.rows.is_empty(), "{name} has no intents");
        assert_eq!(r.matrix.misses(), 0, "{name}:\n{}", render::text(&r.matrix));
        n += 1;
    }
    assert!(n >= 3, "labs found: {n}");
}

#[test]
fn egress_guest_leaves_through_the_gateway_and_is_masqueraded() {
    let r = report(&lab("kvm-transparent-egress"));
    let x = row(&r, "guest reaches the internet through the cloud");
    assert_eq!(
        render::hops(&x.hops),
        "vm139 -> kvm1 -wg1-> cloudgw -> internet"
    );
    assert_eq!(
        x.notes,
        ["cloudgw masquerades 192.168.100.139 to 203.0.113.50"]
    );
    // The hypervisor drops its guests (the egress profile's line).
    let x = row(&r, "guest cannot reach the hypervisor");
    assert_eq!(x.decided_by.as_ref().unwrap().origin, "site.toml:62");
    // Without the egress profile the guest's private address goes out
    // unmasqueraded and the internet cannot answer it.
    let f = edit(&lab("kvm-transparent-egress"), "site.toml", |s| {
        s.replace(
            "[[egress]]\nnode = \"kvm1\"\nsubnet = \"192.168.100.0/24\"\nnetwork = \"egress\"\n",
            "",
        )
    });
    let r = report(&f);
    let x = row(&r, "guest reaches the internet through the cloud");
    assert_eq!(x.got, Some(false), "{x:?}");
    assert!(
        x.reason.as_deref().unwrap().contains("cannot answer"),
        "{x:?}"
    );
}

#[test]
fn lockdown_admits_the_vpn_and_refuses_the_rest() {
    let r = report(&lab("xcpng-opnsense-wireguard"));
    let x = row(&r, "admin SSH over the VPN");
    assert_eq!(render::hops(&x.hops), "admin-laptop -wg0-> vm100 -> xcp1");
    let p = x.probe.as_ref().unwrap();
    assert_eq!(
        (p.source.to_string(), p.dest.to_string()),
        ("10.8.0.2".into(), "198.51.100.10".into())
    );
    let x = row(&r, "internal VMs cannot manage the host");
    assert_eq!(render::hops(&x.hops), "vm101 -> vm100 -> xcp1");
    assert_eq!(x.got, Some(false));
}

//! Incremental apply in the real kernel: the difference sent to a running
//! plan leaves exactly the ruleset a full apply of the new plan gives, and
//! anything unexpected falls back to the full replace. Each test makes its
//! own network namespaces (unique names, removed on drop).

use rampart_apply::{
    apply, status, ApplyMode, ApplyOpts, Drift, Error, HostSystem, IpFamily, Plan, Programs,
    System, TableRef,
};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!(
            "rampart-incr-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        sh("ip", &["netns", "add", &name]);
        Netns { name }
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.name.as_str()];
        full.extend_from_slice(args);
        sh("ip", &full)
    }

    fn sys(&self) -> HostSystem {
        HostSystem::in_netns(&self.name)
    }

    /// Both rampart tables as the kernel lists them, normalized: staged
    /// names without their hash (`host-in.1a2b3c4d5e` -> `host-in`, see
    /// `twophase`) and each table's objects in name order (the kernel lists
    /// them in the order they were made, which differs between a fresh
    /// apply and one that restaged a single chain).
    fn listing(&self) -> String {
        let mut out = String::new();
        for fam in ["inet", "bridge"] {
            let text = self.exec(&["nft", "-s", "list", "table", fam, "rampart"]);
            let text = unhash(&text);
            let body = text
                .trim_end()
                .strip_suffix('}')
                .unwrap_or(&text)
                .to_string();
            let (head, rest) = body.split_once('\n').unwrap_or((&body, ""));
            let mut objs: Vec<&str> = rest.split("\n\n").map(|o| o.trim_end()).collect();
            objs.sort();
            out.push_str(&format!("{head}\n{}\n}}\n", objs.join("\n\n")));
        }
        out
    }

    /// The kernel's (staged) name of a plan object.
    fn kname(&self, what: &str, name: &str) -> String {
        let j = self.exec(&["nft", "-j", "-t", "list", what]);
        let key = format!("\"name\": \"{name}.");
        let i = j.find(&key).unwrap_or_else(|| panic!("{name} not in {j}"));
        let start = i + "\"name\": \"".len();
        let end = start + j[start..].find('"').unwrap();
        j[start..end].to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Drop the 10-hex-digit hash suffix of staged names.
fn unhash(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.'
            && i + 11 <= b.len()
            && b[i + 1..i + 11]
                .iter()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            && b.get(i + 11).is_none_or(|c| !c.is_ascii_alphanumeric())
            && i > 0
            && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'-' || b[i - 1] == b'_')
        {
            i += 11;
            continue;
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

fn sh(prog: &str, args: &[&str]) -> String {
    let out = Command::new(prog).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A plan shaped like the compiler's output: hash and interval sets, a
/// verdict map, hook and regular chains with anonymous sets, logging and
/// comments, and a bridge table.
fn script(v: u32) -> String {
    let (port, extra_bl, guest_target, bl_range, log_rule) = match v {
        1 => (
            "{ 22, 80 }",
            "",
            "nic-a",
            "10.9.1.0-10.9.1.44",
            "",
        ),
        _ => (
            "{ 22, 443, 8000-8010 }",
            "\t\t\t203.0.113.7,\n\t\t\t198.51.100.0/25,\n",
            "nic-b",
            "10.9.1.0-10.9.1.40",
            "\t\ttcp dport 111 limit rate 1/second burst 5 packets log prefix \":0:6:PVEFW-HOST-IN: DROP: \" group 0 comment \"cluster.fw:78\"\n",
        ),
    };
    let mut mgmt = String::new();
    for i in 0..200u32 {
        if v == 1 || i % 7 != 0 {
            mgmt.push_str(&format!("\t\t\t192.168.{}.{},\n", i / 100, i % 100 + 1));
        }
    }
    if v != 1 {
        mgmt.push_str("\t\t\t192.168.9.9,\n");
    }
    format!(
        "#!/usr/sbin/nft -f\n# rampart plan: generated.\n\n\
table inet rampart\ndelete table inet rampart\ntable inet rampart {{\n\
\tset mgmt_v4 {{\n\t\ttype ipv4_addr\n\t\tcomment \"ipset management (auto:management)\"\n\t\telements = {{\n{mgmt}\t\t}}\n\t}}\n\
\tset bl_v4 {{\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\tcomment \"ipset blacklist (cluster.fw:38)\"\n\t\telements = {{\n\t\t\t77.240.159.182,\n\t\t\t{bl_range},\n{extra_bl}\t\t}}\n\t}}\n\
\tset empty_v6 {{\n\t\ttype ipv6_addr\n\t\tcomment \"ipset ipfilter-net1 (100.fw:18)\"\n\t}}\n\
\tmap guest-in-v4 {{\n\t\ttype ipv4_addr : verdict\n\t\telements = {{\n\t\t\t10.0.0.20 : jump {guest_target},\n\t\t\t10.0.0.21 : jump nic-b,\n\t\t}}\n\t}}\n\
\tchain hook-input {{\n\t\ttype filter hook input priority 0; policy accept;\n\t\tct state established,related accept comment \"auto:conntrack\"\n\t\tiifname \"lo\" accept comment \"auto:loopback\"\n\t\tjump host-in comment \"auto:host IN\"\n\t\tip daddr vmap @guest-in-v4\n\t}}\n\
\tchain host-in {{\n\t\tip saddr @bl_v4 drop comment \"auto:blacklist cluster.fw:38\"\n\t\tip saddr @mgmt_v4 tcp dport {port} return comment \"cluster.fw:64\"\n{log_rule}\t\tdrop comment \"auto:policy_in DROP\"\n\t}}\n\
\tchain nic-a {{\n\t\tcomment \"guest 100 net0 IN\"\n\t\ttcp dport 80 return comment \"100.fw:3\"\n\t\tdrop\n\t}}\n\
\tchain nic-b {{\n\t\tcomment \"guest 101 net0 IN\"\n\t\tdrop\n\t}}\n\
}}\n\n\
table bridge rampart\ndelete table bridge rampart\ntable bridge rampart {{\n\
\tmap nic-in-mark {{\n\t\ttype ifname : mark\n\t\telements = {{\n\t\t\t\"tap100i0\" : 0x00010000,\n\t\t}}\n\t}}\n\
\tchain hook-prerouting {{\n\t\ttype filter hook prerouting priority -200; policy accept;\n\t\tmeta mark set iifname map @nic-in-mark comment \"auto:datapath ingress NIC\"\n\t}}\n\
}}\n"
    )
}

fn plan(v: u32) -> Plan {
    Plan::nftables("node1".parse().unwrap(), script(v))
}

/// The ruleset the kernel runs after a plain full apply of `p` in a fresh namespace.
fn full_listing(p: &Plan) -> String {
    let ns = Netns::new("ref");
    let tmp = tempfile::tempdir().unwrap();
    let out = apply(&ns.sys(), p, &ApplyOpts::new(tmp.path())).unwrap();
    assert!(matches!(out.mode, ApplyMode::Full { .. }));
    ns.listing()
}

#[test]
fn incremental_apply_leaves_the_same_ruleset_as_a_full_apply() {
    let ns = Netns::new("same");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    let first = apply(&ns.sys(), &plan(1), &opts).unwrap();
    assert!(
        matches!(&first.mode, ApplyMode::Full { why } if why.contains("no nftables plan")),
        "{:?}",
        first.mode
    );
    let out = apply(&ns.sys(), &plan(2), &opts).unwrap();
    match &out.mode {
        ApplyMode::Incremental {
            chains,
            elements_added,
            elements_deleted,
        } => {
            // host-in changed; the hook chain's body jumps to it, so it is
            // restaged too (the staged names cover what they reference).
            assert_eq!(
                chains,
                &vec![
                    "inet rampart hook-input".to_string(),
                    "inet rampart host-in".to_string()
                ]
            );
            // mgmt: 29 gone, 1 new; blacklist: 1 range replaced, 2 new;
            // the map: one value changed.
            assert_eq!(
                (*elements_added, *elements_deleted),
                (1 + 3 + 1, 29 + 1 + 1)
            );
        }
        other => panic!("expected an incremental apply, got {other:?}"),
    }
    assert_eq!(ns.listing(), full_listing(&plan(2)));
    assert_eq!(status(&ns.sys(), tmp.path()).unwrap().drift, Drift::InSync);
    // And back again.
    let back = apply(&ns.sys(), &plan(1), &opts).unwrap();
    assert!(
        matches!(back.mode, ApplyMode::Incremental { .. }),
        "{:?}",
        back.mode
    );
    assert_eq!(ns.listing(), full_listing(&plan(1)));
}

#[test]
fn a_kernel_changed_behind_rampart_gets_the_full_replace() {
    let ns = Netns::new("chg");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1), &opts).unwrap();
    let nic_a = ns.kname("chains", "nic-a");
    ns.exec(&["nft", "flush", "chain", "inet", "rampart", &nic_a]);
    let out = apply(&ns.sys(), &plan(2), &opts).unwrap();
    assert!(
        matches!(&out.mode, ApplyMode::Full { why } if why.contains("changed since")),
        "{:?}",
        out.mode
    );
    assert_eq!(ns.listing(), full_listing(&plan(2)));

    // Someone else's table counts too: the generation is the namespace's.
    ns.exec(&["nft", "add", "table", "ip", "docker"]);
    let out = apply(&ns.sys(), &plan(1), &opts).unwrap();
    assert!(matches!(out.mode, ApplyMode::Full { .. }), "{:?}", out.mode);
    assert_eq!(ns.listing(), full_listing(&plan(1)));
    ns.exec(&["nft", "list", "table", "ip", "docker"]);
}

#[test]
fn a_structure_change_stages_only_the_new_object() {
    let ns = Netns::new("struct");
    let tmp = tempfile::tempdir().unwrap();
    let opts = ApplyOpts::new(tmp.path());
    apply(&ns.sys(), &plan(1), &opts).unwrap();
    let mut p = plan(1);
    p.ruleset = p.ruleset.replace(
        "\tchain nic-b {",
        "\tchain nic-c {\n\t\tdrop\n\t}\n\tchain nic-b {",
    );
    let out = apply(&ns.sys(), &p, &opts).unwrap();
    assert!(
        matches!(&out.mode, ApplyMode::Incremental { chains, .. } if chains == &vec!["inet rampart nic-c".to_string()]),
        "{:?}",
        out.mode
    );
    assert_eq!(ns.listing(), full_listing(&p));
    // Off by choice.
    let opts = ApplyOpts {
        incremental: false,
        ..ApplyOpts::new(tmp.path())
    };
    let out = apply(&ns.sys(), &plan(2), &opts).unwrap();
    assert!(matches!(out.mode, ApplyMode::Full { .. }), "{:?}", out.mode);
}

/// A system that claims the ruleset generation never moves: the kernel
/// then really differs from the record, and the incremental transaction is
/// refused by the kernel.
struct StuckGeneration(HostSystem, String);

impl System for StuckGeneration {
    fn nft_genid(&self) -> Option<String> {
        Some(self.1.clone())
    }
    fn nft_check(&self, s: &str) -> Result<(), Error> {
        self.0.nft_check(s)
    }
    fn nft_apply(&self, s: &str) -> Result<(), Error> {
        self.0.nft_apply(s)
    }
    fn nft_tables(&self) -> Result<Vec<TableRef>, Error> {
        self.0.nft_tables()
    }
    fn nft_list_json(&self, a: &[&str]) -> Result<String, Error> {
        self.0.nft_list_json(a)
    }
    fn nft_list_table(&self, t: &TableRef) -> Result<String, Error> {
        self.0.nft_list_table(t)
    }
    fn ipt_check(&self, f: IpFamily, t: &str) -> Result<(), Error> {
        self.0.ipt_check(f, t)
    }
    fn ipt_restore(&self, f: IpFamily, t: &str) -> Result<(), Error> {
        self.0.ipt_restore(f, t)
    }
    fn ipt_save(&self, f: IpFamily) -> Result<String, Error> {
        self.0.ipt_save(f)
    }
    fn ipset_restore(&self, t: &str) -> Result<(), Error> {
        self.0.ipset_restore(t)
    }
    fn sysctl_get(&self, k: &str) -> Result<String, Error> {
        self.0.sysctl_get(k)
    }
    fn sysctl_set(&self, k: &str, v: &str) -> Result<(), Error> {
        self.0.sysctl_set(k, v)
    }
    fn exec_prefix(&self) -> Vec<String> {
        self.0.exec_prefix()
    }
    fn programs(&self) -> Programs {
        self.0.programs()
    }
    fn schedule(&self, s: &Path, d: u64, u: &str) -> Result<String, Error> {
        self.0.schedule(s, d, u)
    }
}

#[test]
fn a_refused_difference_falls_back_to_the_full_replace() {
    let ns = Netns::new("refused");
    let tmp = tempfile::tempdir().unwrap();
    let sys = StuckGeneration(ns.sys(), "stuck".into());
    let opts = ApplyOpts::new(tmp.path());
    apply(&sys, &plan(1), &opts).unwrap();
    // The element the difference deletes is gone already: the kernel
    // refuses the whole incremental transaction.
    let mgmt = ns.kname("sets", "mgmt_v4");
    ns.exec(&[
        "nft",
        "delete",
        "element",
        "inet",
        "rampart",
        &mgmt,
        "{ 192.168.0.1 }",
    ]);
    let out = apply(&sys, &plan(2), &opts).unwrap();
    // The refused in-place change is retried as a fresh staging of everything.
    assert!(
        matches!(&out.mode, ApplyMode::Full { .. }),
        "{:?}",
        out.mode
    );
    assert_eq!(ns.listing(), full_listing(&plan(2)));
}

/// The namespace's ruleset generation (moves once per committed transaction).
fn genid(ns: &Netns) -> u32 {
    rampart_apply::netlink::nft_genid(Some(&ns.name)).unwrap()
}

#[test]
fn a_rules_only_change_to_a_staged_plan_is_one_transaction_in_place() {
    let ns = Netns::new("inplace");
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = ApplyOpts::new(tmp.path());
    // The agent's way: the kernel hash is recorded later (check_drift).
    opts.record_kernel_hash = false;
    apply(&ns.sys(), &plan(1), &opts).unwrap();
    let nic_a = ns.kname("chains", "nic-a");
    let host_in = ns.kname("chains", "host-in");
    assert_eq!(
        rampart_apply::check_drift(&ns.sys(), tmp.path()).unwrap(),
        Drift::InSync
    );
    let p1 = plan(1);
    // One rule of a guest chain and one of the host chain (next to a rule
    // with an anonymous set) change, one rule is added.
    let mut p = plan(1);
    p.ruleset = p
        .ruleset
        .replace("tcp dport 80 return", "tcp dport 8080 return")
        .replace(
            "\t\tdrop comment \"auto:policy_in DROP\"",
            "\t\ttcp dport 9 drop comment \"x.fw:1\"\n\t\tdrop comment \"auto:policy_in DROP\"",
        );
    let before = genid(&ns);
    let out = apply(&ns.sys(), &p, &opts).unwrap();
    assert_eq!(genid(&ns), before + 1, "one transaction");
    assert_eq!(
        out.mode,
        ApplyMode::Incremental {
            chains: vec![
                "inet rampart host-in".to_string(),
                "inet rampart nic-a".to_string()
            ],
            elements_added: 0,
            elements_deleted: 0,
        },
        "{:?}",
        out.not_incremental
    );
    // Same kernel names (nothing renamed), the same ruleset a full apply gives.
    assert_eq!(ns.kname("chains", "nic-a"), nic_a);
    assert_eq!(ns.kname("chains", "host-in"), host_in);
    assert_eq!(ns.listing(), full_listing(&p));
    // Drift: cheap while nothing moved; the kernel hash is recorded now.
    assert_eq!(status(&ns.sys(), tmp.path()).unwrap().drift, Drift::InSync);
    assert_eq!(
        rampart_apply::check_drift(&ns.sys(), tmp.path()).unwrap(),
        Drift::InSync
    );
    // And back, in place again.
    let before = genid(&ns);
    let back = apply(&ns.sys(), &p1, &opts).unwrap();
    assert_eq!(genid(&ns), before + 1, "{:?}", back.not_incremental);
    assert_eq!(ns.listing(), full_listing(&p1));
    // A structure change after in-place changes is staged, and still
    // leaves what a full apply gives (pinned names are not reused blindly).
    let staged = apply(&ns.sys(), &plan(2), &opts).unwrap();
    assert!(
        matches!(staged.mode, ApplyMode::Incremental { .. }),
        "{:?}",
        staged.mode
    );
    assert_eq!(ns.listing(), full_listing(&plan(2)));
    apply(&ns.sys(), &p, &opts).unwrap();
    assert_eq!(ns.listing(), full_listing(&p));
    // Someone flushes a chain: the drift check sees it (the generation
    // moved, the listing differs from the hash recorded when idle).
    assert_eq!(
        rampart_apply::check_drift(&ns.sys(), tmp.path()).unwrap(),
        Drift::InSync
    );
    let nic_a = ns.kname("chains", "nic-a");
    ns.exec(&["nft", "flush", "chain", "inet", "rampart", &nic_a]);
    assert!(matches!(
        rampart_apply::check_drift(&ns.sys(), tmp.path()).unwrap(),
        Drift::Drifted { .. }
    ));
    assert!(matches!(
        status(&ns.sys(), tmp.path()).unwrap().drift,
        Drift::Drifted { .. }
    ));
    // Repair: the generation moved, so the whole plan is staged anew.
    let fixed = apply(&ns.sys(), &p, &opts).unwrap();
    assert!(fixed.not_incremental.is_some());
    assert_eq!(ns.listing(), full_listing(&p));
    // Another table's commit moves the generation without drift: the
    // record takes the new generation once the listing matched.
    rampart_apply::check_drift(&ns.sys(), tmp.path()).unwrap();
    ns.exec(&["nft", "add", "table", "ip", "docker"]);
    assert_eq!(
        rampart_apply::check_drift(&ns.sys(), tmp.path()).unwrap(),
        Drift::InSync
    );
    let before = genid(&ns);
    let out = apply(&ns.sys(), &p1, &opts).unwrap();
    assert_eq!(genid(&ns), before + 1, "{:?}", out.not_incremental);
    assert_eq!(ns.listing(), full_listing(&p1));
}

/// A rule between rules with interval sets (never recreated) is positioned
/// by handle. `nft` would fetch every rule first; apply sends nft's own
/// compilation of the rules as its netlink batch with the positions set:
/// one transaction, the same ruleset a full apply gives, anonymous hash
/// sets, comments, jumps and log prefixes intact. A batch computed against
/// another generation is refused whole by the kernel.
#[test]
fn a_rule_between_interval_sets_is_positioned_by_rampart_s_own_batch() {
    let ns = Netns::new("batch");
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = ApplyOpts::new(tmp.path());
    opts.record_kernel_hash = false;
    let around = |middle: &str| {
        let mut p = plan(1);
        p.ruleset = p.ruleset.replace(
            "\t\ttcp dport 80 return comment \"100.fw:3\"\n",
            &format!(
                "\t\tip saddr {{ 10.1.0.0/16, 10.2.0.1 }} tcp dport 80 return comment \"100.fw:3\"\n{middle}\t\tip6 saddr {{ fd00::/8 }} return comment \"100.fw:9\"\n"
            ),
        );
        p
    };
    let p1 = around("\t\ttcp dport 81 return comment \"100.fw:5\"\n");
    apply(&ns.sys(), &p1, &opts).unwrap();
    let p2 = around(
        "\t\tip saddr { 10.3.0.1, 10.3.0.2 } tcp dport { 22, 443 } return comment \"100.fw:5\"\n\
         \t\ttcp dport 99 limit rate 1/second burst 5 packets log prefix \":100:in:5: DROP: \" group 0 comment \"100.fw:6\"\n\
         \t\ttcp dport 99 jump nic-b comment \"100.fw:7\"\n",
    );
    for (from, to) in [(&p1, &p2), (&p2, &p1), (&p1, &p2)] {
        let before = genid(&ns);
        let out = apply(&ns.sys(), to, &opts).unwrap();
        assert!(
            matches!(out.mode, ApplyMode::Incremental { .. }),
            "{:?}",
            out.not_incremental
        );
        assert_eq!(genid(&ns), before + 1, "one transaction");
        let steps: Vec<&str> = out.timings.steps.iter().map(|(n, _)| *n).collect();
        // p1 -> p2 positions new rules; p2 -> p1 too (81 between the sets).
        assert!(
            steps.contains(&"kernel (own netlink batch)"),
            "{steps:?} ({} -> {})",
            from.ruleset.len(),
            to.ruleset.len()
        );
        assert_eq!(ns.listing(), full_listing(to));
    }

    // The same kind of change computed against a generation that has moved
    // since: the kernel refuses the whole batch and nothing changes.
    let nic_a = ns.kname("chains", "nic-a");
    let listing = ns.exec(&["nft", "-a", "list", "chain", "inet", "rampart", &nic_a]);
    let handle_of = |needle: &str| -> u64 {
        let line = listing.lines().find(|l| l.contains(needle)).unwrap();
        line.rsplit("handle ")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let t = TableRef {
        family: "inet".into(),
        name: "rampart".into(),
    };
    let cmds = vec![rampart_apply::inplace::Cmd::InsertBefore {
        table: t,
        chain: nic_a.clone(),
        handle: handle_of("fd00::/8"),
        rule: "tcp dport 7 drop comment \"stale\"".into(),
    }];
    let stale = genid(&ns);
    ns.exec(&["nft", "add", "table", "ip", "other"]);
    let before = ns.listing();
    let err = ns
        .sys()
        .nft_apply_in_place(&cmds, &[], Some(stale))
        .unwrap_err();
    assert!(err.to_string().contains("netlink batch"), "{err}");
    assert_eq!(ns.listing(), before);
    // With the current generation it goes in, before that rule.
    assert!(ns
        .sys()
        .nft_apply_in_place(&cmds, &[], Some(genid(&ns)))
        .unwrap());
    let after = ns.exec(&["nft", "list", "chain", "inet", "rampart", &nic_a]);
    let at = |s: &str| {
        after
            .find(s)
            .unwrap_or_else(|| panic!("{s} not in {after}"))
    };
    assert!(at("dport 7 drop") < at("fd00::/8"), "{after}");
    assert!(at("dport 99 jump") < at("dport 7 drop"), "{after}");
}

/// Set elements added and removed on a running staged plan: one
/// transaction of rampart's own element messages under the sets' kernel
/// names (no chain restaged, nothing renamed), leaving exactly the ruleset
/// a full apply of the new plan gives: hash set entries, interval ranges
/// that grow, merge, split and shrink, a range to the end of the address
/// space, an empty set's first elements and a set emptied.
#[test]
fn set_element_changes_are_one_transaction_in_place() {
    let ns = Netns::new("elems");
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = ApplyOpts::new(tmp.path());
    opts.record_kernel_hash = false;
    let base = plan(1);
    apply(&ns.sys(), &base, &opts).unwrap();
    let bl = ns.kname("sets", "bl_v4");
    let host_in = ns.kname("chains", "host-in");
    let steps: Vec<(&str, Box<dyn Fn(&str) -> String>)> = vec![
        (
            "a management address added",
            Box::new(|s: &str| {
                s.replace(
                    "\t\t\t192.168.0.1,\n",
                    "\t\t\t192.168.0.1,\n\t\t\t192.168.7.7,\n",
                )
            }),
        ),
        (
            "an address after the last one",
            Box::new(|s: &str| {
                s.replace(
                    "\t\t\t10.9.1.0-10.9.1.44,\n",
                    "\t\t\t10.9.1.0-10.9.1.44,\n\t\t\t10.99.0.1,\n",
                )
            }),
        ),
        (
            "a blacklist range grows by one address",
            Box::new(|s: &str| s.replace("10.9.1.0-10.9.1.44", "10.9.1.0-10.9.1.45")),
        ),
        (
            "a range split in two",
            Box::new(|s: &str| {
                s.replace(
                    "\t\t\t10.9.1.0-10.9.1.44,\n",
                    "\t\t\t10.9.1.0-10.9.1.9,\n\t\t\t10.9.1.11-10.9.1.44,\n",
                )
            }),
        ),
        (
            "a range to the last address and a management address gone",
            Box::new(|s: &str| {
                s.replace(
                    "\t\t\t10.9.1.0-10.9.1.44,\n",
                    "\t\t\t10.9.1.0-10.9.1.44,\n\t\t\t255.255.255.0/24,\n",
                )
                .replace("\t\t\t192.168.0.5,\n", "")
            }),
        ),
        (
            "an empty set gets its first elements",
            Box::new(|s: &str| {
                s.replace(
                    "\t\tcomment \"ipset ipfilter-net1 (100.fw:18)\"\n\t}",
                    "\t\tcomment \"ipset ipfilter-net1 (100.fw:18)\"\n\t\telements = {\n\t\t\t2001:db8::7,\n\t\t}\n\t}",
                )
            }),
        ),
        (
            "the blacklist emptied",
            Box::new(|s: &str| {
                s.replace(
                    "\t\telements = {\n\t\t\t77.240.159.182,\n\t\t\t10.9.1.0-10.9.1.44,\n\t\t}\n",
                    "",
                )
            }),
        ),
    ];
    let mut current = base.clone();
    for (what, edit) in &steps {
        for target in [edit(&base.ruleset), base.ruleset.clone()] {
            let mut p = base.clone();
            p.ruleset = target;
            assert_ne!(p.ruleset, current.ruleset, "{what}: the edit applies");
            let before = genid(&ns);
            let out = apply(&ns.sys(), &p, &opts).unwrap();
            assert_eq!(genid(&ns), before + 1, "{what}: one transaction");
            assert!(
                out.timings
                    .steps
                    .iter()
                    .any(|(n, _)| *n == "kernel (own netlink batch)"),
                "{what}: sent by rampart, not nft: {} {:?}",
                out.timings,
                out.not_incremental
            );
            match &out.mode {
                ApplyMode::Incremental { chains, .. } => {
                    assert!(chains.is_empty(), "{what}: {chains:?}")
                }
                other => panic!("{what}: {other:?} {:?}", out.not_incremental),
            }
            assert_eq!(ns.kname("sets", "bl_v4"), bl, "{what}");
            assert_eq!(ns.kname("chains", "host-in"), host_in, "{what}");
            assert_eq!(ns.listing(), full_listing(&p), "{what}");
            current = p;
        }
    }
    // A stale generation refuses the element batch whole.
    let stale = genid(&ns) - 1;
    let change = rampart_apply::inplace::SetChange {
        table: TableRef {
            family: "inet".into(),
            name: "rampart".into(),
        },
        kname: bl.clone(),
        shape: rampart_apply::setelem::SetShape {
            key: rampart_apply::setelem::KeyKind::Ipv4,
            interval: true,
        },
        deleted: vec![],
        added: vec!["10.200.0.1".into()],
        was_empty: false,
    };
    assert!(ns
        .sys()
        .nft_apply_in_place(&[], std::slice::from_ref(&change), Some(stale))
        .is_err());
    assert!(!ns
        .exec(&["nft", "list", "set", "inet", "rampart", &bl])
        .contains("10.200.0.1"));
    ns.sys()
        .nft_apply_in_place(&[], &[change], Some(genid(&ns)))
        .unwrap();
    assert!(ns
        .exec(&["nft", "list", "set", "inet", "rampart", &bl])
        .contains("10.200.0.1"));
}

//! Property (issue 16): hostile strings in every free-text field of a site
//! (rule, group, ipset, entry and alias comments, disabled rules, guest
//! names, intent names and reasons) are accepted by `check`, compile, and
//! once loaded with `nft -f` into a fresh network namespace leave exactly
//! rampart's own tables and chains, with as many rules as the plan, and no
//! file outside `--out`. The text can never become script.

mod common;

use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Characters that mean something to nft, iptables-restore, shells,
/// terminals or TOML, plus non-ASCII and bidi overrides.
const NASTY: &[char] = &[
    '"', '\\', '{', '}', ';', '#', '/', '.', '$', '\'', '`', ' ', '\t', '\x1b', '\x07', '\x7f',
    'é', '中', '\u{202e}', '@', '*', '[', ']', '|', '&', '<', '>', 'a', 'Z', '0', '-', '=', ':',
];

/// Text for a line-based file (no line break).
fn line_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(NASTY), 1..60)
        .prop_map(|v| v.into_iter().collect::<String>())
        // A `.fw` comment's leading/trailing blanks are trimmed; keep one
        // visible character at the start so the comment is not empty.
        .prop_map(|s| format!("x{s}"))
}

/// Text for a TOML string: anything, line breaks and NUL included.
fn any_text() -> impl Strategy<Value = String> {
    let mut all: Vec<char> = NASTY.to_vec();
    all.extend(['\n', '\r', '\0']);
    prop::collection::vec(prop::sample::select(all), 0..60)
        .prop_map(|v| v.into_iter().collect::<String>())
}

fn toml_str(s: &str) -> String {
    let mut t = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => t.push_str("\\\""),
            '\\' => t.push_str("\\\\"),
            c if c.is_control() => t.push_str(&format!("\\u{:04X}", c as u32)),
            c => t.push(c),
        }
    }
    t.push('"');
    t
}

#[derive(Debug)]
struct Texts {
    rule: String,
    disabled: String,
    group: String,
    group_rule: String,
    ipset: String,
    entry: String,
    alias: String,
    guest_rule: String,
    guest_name: String,
    intent: String,
    reason: String,
}

fn texts() -> impl Strategy<Value = Texts> {
    (
        (
            line_text(),
            line_text(),
            line_text(),
            line_text(),
            line_text(),
            line_text(),
        ),
        (line_text(), line_text(), any_text(), any_text(), any_text()),
    )
        .prop_map(
            |(
                (rule, disabled, group, group_rule, ipset, entry),
                (alias, guest_rule, guest_name, intent, reason),
            )| Texts {
                rule,
                disabled,
                group,
                group_rule,
                ipset,
                entry,
                alias,
                guest_rule,
                guest_name,
                intent,
                reason,
            },
        )
}

fn site_files(t: &Texts) -> Vec<(String, String)> {
    let toml = format!(
        "[[node]]\nname = \"hv1\"\nbridges = {{ vmbr0 = [\"192.0.2.10/24\"] }}\n\n\
         [[guest]]\nid = 100\nnode = \"hv1\"\nname = {}\n\
         nics = [{{ name = \"net0\", bridge = \"vmbr0\", addresses = [\"192.0.2.20/24\"] }}]\n\n\
         [[expect]]\nname = {}\nfrom = \"internet\"\nto = \"vm100\"\nport = 443\nreachable = true\nreason = {}\n",
        toml_str(&t.guest_name),
        toml_str(&t.intent),
        toml_str(&t.reason),
    );
    let cluster = format!(
        "[OPTIONS]\nenable: 1\n\n\
         [ALIASES]\nweb 192.0.2.20 # {}\n\n\
         [IPSET admins] # {}\n192.0.2.99 # {}\n\n\
         [group webgrp] # {}\nIN ACCEPT -p tcp -dport 443 # {}\n\n\
         [RULES]\nIN ACCEPT -source +admins -p tcp -dport 22 -log info # {}\n\
         |IN ACCEPT -p tcp -dport 23 # {}\n",
        t.alias, t.ipset, t.entry, t.group, t.group_rule, t.rule, t.disabled
    );
    let guest = format!(
        "[OPTIONS]\nenable: 1\n\n[RULES]\nGROUP webgrp\nIN ACCEPT -dest web -p tcp -dport 80 -log info # {}\n",
        t.guest_rule
    );
    vec![
        ("site.toml".into(), toml),
        ("firewall/cluster.fw".into(), cluster),
        ("firewall/100.fw".into(), guest),
    ]
}

fn all_files(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

/// (family, table) pairs, (family, table, chain) triples and the rule count
/// of `nft -j list ruleset` output.
fn kernel_shape(
    json: &[u8],
) -> (
    BTreeSet<(String, String)>,
    BTreeSet<(String, String, String)>,
    usize,
) {
    let v: serde_json::Value = serde_json::from_slice(json).expect("nft -j output");
    let mut tables = BTreeSet::new();
    let mut chains = BTreeSet::new();
    let mut rules = 0;
    for o in v["nftables"].as_array().unwrap() {
        if let Some(t) = o.get("table") {
            tables.insert((
                t["family"].as_str().unwrap().into(),
                t["name"].as_str().unwrap().into(),
            ));
        }
        if let Some(c) = o.get("chain") {
            chains.insert((
                c["family"].as_str().unwrap().into(),
                c["table"].as_str().unwrap().into(),
                c["name"].as_str().unwrap().into(),
            ));
        }
        if o.get("rule").is_some() {
            rules += 1;
        }
    }
    (tables, chains, rules)
}

fn one_case(t: &Texts) -> Result<(), TestCaseError> {
    let files = site_files(t);
    let work = tempfile::tempdir().unwrap();
    let site = work.path().join("site");
    for (p, body) in &files {
        let path = site.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let o = rampart(&["check", site.to_str().unwrap()]);
    let out = text(&o);
    prop_assert_eq!(
        o.status.code(),
        Some(0),
        "check refused free text:\n{}",
        out
    );
    prop_assert!(
        !out.contains('\x1b') && !out.contains('\u{202e}'),
        "raw escape echoed:\n{}",
        out
    );

    // The plan, through the library: what the kernel must end up with.
    let mut sf = rampart_types::SiteFiles::new();
    for (p, body) in &files {
        sf.insert(p.as_str(), body.as_bytes().to_vec());
    }
    let opts = rampart_plan::PlanOpts {
        force: true,
        ..Default::default()
    };
    let plan =
        rampart_plan::build(&sf, "hv1", &opts).map_err(|r| TestCaseError::fail(r.rendered))?;
    let want_tables: BTreeSet<(String, String)> = plan
        .model
        .ruleset
        .tables
        .iter()
        .map(|t| (t.family.name().to_string(), t.name.clone()))
        .collect();
    let want_chains: BTreeSet<(String, String, String)> = plan
        .model
        .ruleset
        .tables
        .iter()
        .flat_map(|t| {
            t.chains
                .iter()
                .map(move |c| (t.family.name().to_string(), t.name.clone(), c.name.clone()))
        })
        .collect();
    let want_rules: usize = plan
        .model
        .ruleset
        .tables
        .iter()
        .flat_map(|t| t.chains.iter())
        .map(|c| c.rules.len())
        .sum();

    let out_dir = work.path().join("out");
    let before = all_files(work.path());
    let o = rampart(&[
        "compile",
        site.to_str().unwrap(),
        "--all",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    prop_assert_eq!(o.status.code(), Some(0), "compile:\n{}", text(&o));
    let after = all_files(work.path());
    for p in after.difference(&before) {
        prop_assert!(
            p.starts_with(&out_dir),
            "written outside --out: {}",
            p.display()
        );
    }
    let script = out_dir.join("hv1/ruleset.nft");
    prop_assert!(script.exists());

    let ns = common::Ns::new("hostile");
    let load = Command::new("ip")
        .args(["netns", "exec", &ns.0, "nft", "-f"])
        .arg(&script)
        .output()
        .unwrap();
    prop_assert!(
        load.status.success(),
        "nft -f refused the script: {}",
        text(&load)
    );
    let list = ns.nft(&["-j", "list", "ruleset"]);
    prop_assert!(list.status.success(), "{}", text(&list));
    let (tables, chains, rules) = kernel_shape(&list.stdout);
    prop_assert_eq!(tables, want_tables);
    prop_assert_eq!(chains, want_chains);
    prop_assert_eq!(rules, want_rules);
    Ok(())
}

proptest! {
    // Each case runs check, compile and a namespace: a modest count keeps
    // this test under a minute in CI.
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_free_text_never_becomes_script(t in texts()) {
        if !common::is_root() {
            eprintln!("skipped: needs root");
            return Ok(());
        }
        one_case(&t)?;
    }
}

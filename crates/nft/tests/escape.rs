//! The printer quotes every string of the model through one function
//! (rampart_types::escape::nft_str): a comment, log prefix or interface
//! name holding nft syntax stays one string. Checked by the kernel: the
//! script loads and the namespace holds exactly the one table, chain and
//! rule of the model.

mod common;

use rampart_nft::model::{
    Chain, Dir, Hook, Match, Rule, Ruleset, Stmt, Table, TableFamily, Verdict,
};

const EVIL: &str = "x\" ; }\ntable inet evil { chain c { type filter hook input priority -1000; policy accept; } }\n# \\ é \x1b[31m";

fn ruleset() -> Ruleset {
    let mut t = Table::new(TableFamily::Inet, "rampart");
    let mut c = Chain::base("input", Hook::Input, 0);
    c.comment = Some(EVIL.into());
    c.rules.push(
        Rule::new(EVIL)
            .m(Match::Ifname {
                dir: Dir::Src,
                name: EVIL.into(),
            })
            .s(Stmt::Log {
                prefix: EVIL.into(),
                group: 0,
            })
            .v(Verdict::Accept),
    );
    t.chains.push(c);
    Ruleset {
        tables: vec![t],
        absent: vec![],
    }
}

#[test]
fn hostile_strings_stay_inside_their_quotes() {
    let script = rampart_nft::print::script(&ruleset(), EVIL);
    assert!(
        !script
            .lines()
            .any(|l| l.trim_start().starts_with("table inet evil")),
        "{script}"
    );
    assert!(!script.contains('\x1b'), "{script}");
    // Every quoted string of the ruleset (after the `#` header) is cut to nft's limit.
    let body: String = script
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for q in body.split('"').skip(1).step_by(2) {
        assert!(q.len() <= 127, "{q}");
    }
}

#[test]
fn the_kernel_gets_exactly_the_model() {
    if !nix_is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let ns = common::NetNs::new("escape");
    let script = rampart_nft::print::script(&ruleset(), EVIL);
    ns.nft_load(&script)
        .unwrap_or_else(|e| panic!("{e}\n{script}"));
    let out = ns.ok(&["nft", "-j", "list", "ruleset"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let objs = v["nftables"].as_array().unwrap();
    let count = |k: &str| objs.iter().filter(|o| o.get(k).is_some()).count();
    assert_eq!(count("table"), 1, "{out}");
    assert_eq!(count("chain"), 1, "{out}");
    assert_eq!(count("rule"), 1, "{out}");
    let t = objs.iter().find_map(|o| o.get("table")).unwrap();
    assert_eq!(t["name"], "rampart");
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

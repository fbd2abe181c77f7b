//! The syntax tree a .fw file gives, with its spans.

use rampart_syntax::ast::*;
use rampart_syntax::parse_site;
use rampart_types::{Action, Direction, LogLevel, PortRange, Proto, SiteFiles};

const NODE: &str = "[[node]]\nname = \"hv1\"\n";

/// Parse `text` as cluster.fw. These tests are about lines, not about the
/// file saying `enable:` (E0707, crates/resolve/tests/bad_inputs.rs, case42_*), so
/// that one diagnostic is left out.
fn cluster(text: &str) -> (FwFile, rampart_types::Diagnostics) {
    let (ast, _, mut d) = parse_site(
        &SiteFiles::new()
            .with("site.toml", NODE)
            .with("firewall/cluster.fw", text),
    );
    d.items.retain(|x| x.code != "E0707");
    (ast.cluster.expect("cluster.fw parsed"), d)
}

#[test]
fn a_rule_line_with_every_option() {
    let (f, d) = cluster(
        "[RULES]\n  IN ACCEPT -i vmbr0 -source 10.0.0.0/8 --dest +dc/web -p tcp -dport 22,80:90,https -sport 1024:65535 -log info # all of them\n",
    );
    assert!(d.is_empty(), "{d:?}");
    let r = &f.rules[0];
    assert!(r.enabled);
    assert_eq!(r.comment.as_deref(), Some("all of them"));
    assert_eq!((r.span.line, r.span.col), (2, 3));
    let RuleBody::Rule { dir, verb, opts } = &r.body else {
        panic!()
    };
    assert_eq!(dir.value, Direction::In);
    assert_eq!(verb.value, RuleVerb::Plain(Action::Accept));
    assert_eq!(opts.iface.as_ref().unwrap().value, "vmbr0");
    assert_eq!(opts.proto.as_ref().unwrap().value, Proto::Tcp);
    assert_eq!(
        opts.dport.as_ref().unwrap().value,
        vec![
            PortRange::single(22),
            PortRange::new(80, 90),
            PortRange::single(443)
        ]
    );
    assert_eq!(opts.log.as_ref().unwrap().value, LogLevel::Info);
    match &opts.dest.as_ref().unwrap().value {
        AddrSpec::Set(n) => assert_eq!(
            (n.scope, n.name.as_str(), n.span.col),
            (Scope::Dc, "web", 49)
        ),
        o => panic!("{o:?}"),
    }
}

#[test]
fn directions_and_group_are_case_insensitive_macros_too() {
    let (f, d) = cluster(
        "[rules]\nin ssh(ACCEPT)\nOut DROP\nforward DROP\n[Group g1]\nIN ACCEPT\n[RULES2]\n",
    );
    let codes: Vec<&str> = d.items.iter().map(|x| x.code).collect();
    assert_eq!(codes, vec!["E0101"], "{d:?}");
    assert_eq!(f.rules.len(), 3);
    match &f.rules[0].body {
        RuleBody::Rule { verb, .. } => assert!(matches!(
            verb.value,
            RuleVerb::Macro {
                action: Action::Accept,
                ..
            }
        )),
        o => panic!("{o:?}"),
    }
    assert_eq!(f.groups[0].name.value, "g1");
}

#[test]
fn ipset_entries_and_section_comments() {
    let (f, d) = cluster("[IPSET ipfilter-net0] # only allow these\n192.0.2.10 # web\n!192.0.2.11\n10.0.0.1-10.0.0.5\ndc/monitor\n");
    assert!(d.is_empty(), "{d:?}");
    let s = &f.ipsets[0];
    assert_eq!(s.comment.as_deref(), Some("only allow these"));
    assert_eq!(s.entries.len(), 4);
    assert_eq!(s.entries[0].comment.as_deref(), Some("web"));
    assert!(s.entries[1].nomatch);
    assert!(
        matches!(&s.entries[3].item, SetItem::Alias(n) if n.scope == Scope::Dc && n.name == "monitor")
    );
}

#[test]
fn groups_take_only_i() {
    let (ast, _, d) = parse_site(&SiteFiles::new().with("site.toml", NODE).with(
        "firewall/100.fw",
        "[RULES]\nGROUP web -i net1\nGROUP web -p tcp\n",
    ));
    let f = &ast.guest_fw[&100];
    assert_eq!(f.rules.len(), 1);
    assert!(
        matches!(&f.rules[0].body, RuleBody::Group { iface: Some(i), .. } if i.value == "net1")
    );
    assert_eq!(d.items[0].code, "E0117");
    assert_eq!(
        (d.items[0].span.unwrap().line, d.items[0].span.unwrap().col),
        (3, 11)
    );
}

#[test]
fn guests_cannot_forward_and_forward_cannot_reject() {
    let (_, _, d) = parse_site(
        &SiteFiles::new()
            .with("site.toml", NODE)
            .with("firewall/100.fw", "[RULES]\nFORWARD ACCEPT\n"),
    );
    assert_eq!(d.items[0].code, "E0120");
    let (_, d) = cluster("[RULES]\nFORWARD REJECT -p tcp\n");
    assert_eq!(
        (d.items[0].code, d.items[0].span.unwrap().col),
        ("E0120", 9)
    );
}

#[test]
fn rule_option_problems() {
    let (_, d) = cluster(
        "[RULES]\nIN ACCEPT -x 1\nIN ACCEPT -p\nIN ACCEPT -p tcp -p udp\nIN ACCEPT stray\nIN\n",
    );
    let got: Vec<(&str, u32, u32)> = d
        .items
        .iter()
        .map(|x| (x.code, x.span.unwrap().line, x.span.unwrap().col))
        .collect();
    assert_eq!(
        got,
        vec![
            ("E0117", 2, 11),
            ("E0118", 3, 11),
            ("E0119", 4, 18),
            ("E0116", 5, 11),
            ("E0116", 6, 1)
        ]
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    let (_, d) = cluster("[RULES]\nIN ACCEPT -p tcp -dport 22 # für alle\nIN ACCEPT -source bäd\n");
    // `bäd` is an alias name with a non-ASCII letter: illegal; the column counts characters.
    assert_eq!(
        (
            d.items[0].code,
            d.items[0].span.unwrap().col,
            d.items[0].span.unwrap().len
        ),
        ("E0408", 19, 3)
    );
}

#[test]
fn all_88_macros_parse_in_any_case() {
    for m in rampart_syntax::tables::macros() {
        let text = format!(
            "[RULES]\nIN {}(ACCEPT)\nOUT {}(DROP)\n",
            m.name,
            m.name.to_lowercase()
        );
        let (f, d) = cluster(&text);
        assert!(d.is_empty(), "{}: {d:?}", m.name);
        assert_eq!(f.rules.len(), 2);
    }
}

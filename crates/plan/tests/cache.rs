//! A plan made through a warm [`PlanCache`] (the agent's: it planned the
//! previous revision) is the same as one made from scratch: the plan, the
//! files `rampart compile` writes, the nftables model, every diagnostic and
//! its `file:line`, and every refusal, after any change to the site.

use proptest::prelude::*;
use rampart_plan::{build, build_cached, load_cached, PlanCache, PlanOpts};
use rampart_types::SiteFiles;

fn site() -> SiteFiles {
    rampart_gen::generate(&rampart_gen::GenParams {
        nodes: 2,
        guests: 6,
        rules_per_guest: 8,
        seed: 11,
    })
    .expect("generate")
}

fn nodes(files: &SiteFiles) -> Vec<String> {
    let mut n: Vec<String> = files
        .files
        .keys()
        .filter_map(|p| p.strip_prefix("nodes/")?.strip_suffix("/host.fw"))
        .map(str::to_owned)
        .collect();
    n.push("pve9".into()); // not in the site: refused the same way
    n
}

/// Each node's cache (as each node's agent keeps one), and one shared by
/// all nodes in turn.
#[derive(Default)]
struct Caches {
    per_node: std::collections::BTreeMap<String, PlanCache>,
    shared: PlanCache,
}

/// Plan every node through its cache and from scratch; they must be equal
/// (compared in full through `Debug`, which prints every field). Returns
/// how many nodes planned.
fn same(files: &SiteFiles, caches: &mut Caches, what: &str) -> usize {
    let opts = PlanOpts::default();
    let mut ok = 0;
    for node in nodes(files) {
        let cold = build(files, &node, &opts);
        let cache = caches.per_node.entry(node.clone()).or_default();
        // As the agent plans: load, build, give back what the cache lent.
        let (warm, site) = match load_cached(files, &opts, cache) {
            Ok(site) => (site.build_cached(&node, cache), Some(site)),
            Err(r) => (Err(r), None),
        };
        let (c, w) = (format!("{cold:#?}"), format!("{warm:#?}"));
        if c != w {
            let at = c
                .lines()
                .zip(w.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{what}, node {node}: the warm plan differs from the cold one at line {at}:\ncold: {}\nwarm: {}",
                c.lines().nth(at).unwrap_or(""),
                w.lines().nth(at).unwrap_or("")
            );
        }
        ok += usize::from(cold.is_ok());
        if let Some(site) = site {
            cache.recycle(site, &node, warm.ok().map(|p| p.model));
        }
        // The one-call form, one cache for every node (nothing given back).
        let shared = format!(
            "{:#?}",
            build_cached(files, &node, &opts, &mut caches.shared)
        );
        assert!(c == shared, "{what}, node {node}: build_cached differs");
    }
    ok
}

fn text(files: &SiteFiles, path: &str) -> String {
    String::from_utf8(files.files[path].clone()).unwrap()
}

fn edit(files: &mut SiteFiles, path: &str, f: impl FnOnce(String) -> String) {
    let t = f(text(files, path));
    files.files.insert(path.into(), t.into_bytes());
}

/// `line` inserted after the first line of `path` starting with `after`.
fn insert_after(files: &mut SiteFiles, path: &str, after: &str, line: &str) {
    edit(files, path, |t| {
        let at = t
            .lines()
            .scan(0, |pos, l| {
                let here = *pos;
                *pos += l.len() + 1;
                Some((here, l))
            })
            .find(|(_, l)| l.starts_with(after))
            .unwrap_or_else(|| panic!("no line `{after}` in {path}"));
        let eol = at.0 + at.1.len() + 1;
        format!("{}{line}\n{}", &t[..eol], &t[eol..])
    });
}

/// The first line of `path` starting with `prefix`, replaced by `with`.
fn replace_line(files: &mut SiteFiles, path: &str, prefix: &str, with: &str) {
    edit(files, path, |t| {
        let line = t
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line `{prefix}` in {path}"))
            .to_owned();
        t.replacen(&line, with, 1)
    });
}

#[test]
fn warm_plans_equal_cold_plans_after_every_kind_of_change() {
    let mut files = site();
    let mut cache = Caches::default();
    assert_eq!(same(&files, &mut cache, "first revision"), 2);
    assert_eq!(same(&files, &mut cache, "same revision again"), 2);

    // A guest rule's port.
    let guest = "firewall/100.fw";
    insert_after(&mut files, guest, "[RULES]", "IN ACCEPT -p tcp -dport 4711");
    assert_eq!(same(&files, &mut cache, "guest rule added"), 2);
    replace_line(
        &mut files,
        guest,
        "IN ACCEPT -p tcp -dport 4711",
        "IN ACCEPT -p tcp -dport 4712",
    );
    assert_eq!(same(&files, &mut cache, "guest rule's port changed"), 2);

    // The cluster's ipsets: an entry more, a duplicate (a warning at a line),
    // a nomatch hole.
    let cluster = "firewall/cluster.fw";
    insert_after(&mut files, cluster, "[IPSET blacklist]", "203.0.113.7");
    assert_eq!(same(&files, &mut cache, "blacklist entry added"), 2);
    insert_after(&mut files, cluster, "[IPSET blacklist]", "203.0.113.7");
    assert_eq!(same(&files, &mut cache, "blacklist entry duplicated"), 2);
    insert_after(&mut files, cluster, "[IPSET blacklist]", "!203.0.113.7");
    assert_eq!(same(&files, &mut cache, "blacklist nomatch entry"), 2);
    // Lines above every set move: the same entries at other lines.
    edit(&mut files, cluster, |t| format!("# moved\n\n{t}"));
    assert_eq!(same(&files, &mut cache, "cluster.fw lines moved"), 2);

    // An alias an ipset names, then a group.
    replace_line(
        &mut files,
        cluster,
        "jumphost ",
        "jumphost 192.168.101.11 # moved",
    );
    assert_eq!(same(&files, &mut cache, "alias changed"), 2);
    edit(&mut files, cluster, |t| {
        let at = t
            .find("[group ")
            .or_else(|| t.find("[GROUP "))
            .expect("a group");
        let eol = at + t[at..].find('\n').unwrap() + 1;
        format!("{}IN ACCEPT -p tcp -dport 4713\n{}", &t[..eol], &t[eol..])
    });
    assert_eq!(same(&files, &mut cache, "group rule added"), 2);

    // host.fw, site.toml.
    insert_after(
        &mut files,
        "nodes/pve1/host.fw",
        "[RULES]",
        "IN ACCEPT -p tcp -dport 4714",
    );
    assert_eq!(same(&files, &mut cache, "host.fw rule added"), 2);
    edit(&mut files, "site.toml", |t| {
        format!("# a comment first\n{t}")
    });
    assert_eq!(same(&files, &mut cache, "site.toml lines moved"), 2);

    // A file removed (every later file's id moves), then added back.
    let gone = files.files.remove("firewall/101.fw").unwrap();
    assert_eq!(same(&files, &mut cache, "guest file removed"), 2);
    files.files.insert("firewall/101.fw".into(), gone);
    assert_eq!(same(&files, &mut cache, "guest file back"), 2);

    // Errors refuse the same way, with the same lines; fixed, it plans again.
    insert_after(
        &mut files,
        guest,
        "[RULES]",
        "IN ACCEPT -p tcp -dport 99999",
    );
    assert_eq!(same(&files, &mut cache, "a bad guest rule"), 0);
    edit(&mut files, guest, |t| {
        t.replacen("IN ACCEPT -p tcp -dport 99999\n", "", 1)
    });
    assert_eq!(same(&files, &mut cache, "the bad rule removed"), 2);
    insert_after(&mut files, cluster, "[IPSET blacklist]", "203.0.113.0/33");
    assert_eq!(same(&files, &mut cache, "a bad blacklist entry"), 0);
    files = site();
    assert_eq!(same(&files, &mut cache, "back to the first revision"), 2);
}

/// One random edit of one line of one file.
#[derive(Debug, Clone)]
enum Edit {
    Delete,
    Duplicate,
    SwapWithNext,
    /// Replace the `n`th digit of the line by `d`.
    Digit(usize, char),
    RemoveFile,
}

fn apply(files: &mut SiteFiles, file: usize, line: usize, e: &Edit) {
    let paths: Vec<String> = files.files.keys().cloned().collect();
    let path = &paths[file % paths.len()];
    if let Edit::RemoveFile = e {
        files.files.remove(path);
        return;
    }
    let t = text(files, path);
    let mut lines: Vec<String> = t.lines().map(str::to_owned).collect();
    if lines.is_empty() {
        return;
    }
    let i = line % lines.len();
    match e {
        Edit::Delete => {
            lines.remove(i);
        }
        Edit::Duplicate => lines.insert(i, lines[i].clone()),
        Edit::SwapWithNext if i + 1 < lines.len() => lines.swap(i, i + 1),
        Edit::SwapWithNext => {}
        Edit::Digit(n, d) => {
            let l = &lines[i];
            if let Some((at, _)) = l
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .nth(*n % 8)
            {
                lines[i] = format!("{}{d}{}", &l[..at], &l[at + 1..]);
            }
        }
        Edit::RemoveFile => unreachable!(),
    }
    files
        .files
        .insert(path.clone(), (lines.join("\n") + "\n").into_bytes());
}

fn an_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => Just(Edit::Delete),
        2 => Just(Edit::Duplicate),
        2 => Just(Edit::SwapWithNext),
        6 => (0usize..8, proptest::char::range('0', '9')).prop_map(|(n, d)| Edit::Digit(n, d)),
        1 => Just(Edit::RemoveFile),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// Random edits, one revision after another through one cache: every
    /// warm plan (or refusal) equals the cold one.
    #[test]
    fn warm_equals_cold_over_random_edits(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), an_edit()), 1..5)
    ) {
        let mut files = site();
        let mut cache = Caches::default();
        same(&files, &mut cache, "first revision");
        for (n, (file, line, e)) in edits.iter().enumerate() {
            apply(&mut files, *file, *line, e);
            same(&files, &mut cache, &format!("after edit {n} ({e:?})"));
        }
    }
}

/// `compile --all` plans every node from one loaded site, which shares the
/// compiled sets and the profiles between nodes: each node's plan is the
/// same as that node planned alone.
#[test]
fn nodes_planned_from_one_loaded_site_equal_each_planned_alone() {
    let files = rampart_gen::generate(&rampart_gen::GenParams {
        nodes: 4,
        guests: 12,
        rules_per_guest: 6,
        seed: 5,
    })
    .expect("generate");
    let opts = PlanOpts::default();
    let site = rampart_plan::load(&files, &opts).expect("load");
    let names: Vec<String> = site.ir.nodes.iter().map(|n| n.name.to_string()).collect();
    assert_eq!(names.len(), 4);
    for node in names.iter().rev().chain(names.iter()) {
        let shared = format!("{:?}", site.build(node));
        let alone = format!("{:?}", build(&files, node, &opts));
        assert_eq!(shared, alone, "node {node}");
    }
}

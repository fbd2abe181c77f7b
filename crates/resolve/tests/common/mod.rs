#![allow(dead_code)]
//! Test helpers: a small valid site to put one bad file into.

use rampart_resolve::ir::Site;
use rampart_types::{Diagnostic, Diagnostics, SiteFiles};

pub const SITE_TOML: &str = r#"[[node]]
name = "hv1"
bridges = { vmbr0 = ["192.0.2.10/24", "2001:db8:1::10/64"] }

[[node]]
name = "hv2"
bridges = { vmbr0 = ["192.0.2.11/24"] }

[[guest]]
id = 100
kind = "vm"
node = "hv1"
nics = [{ name = "net0", bridge = "vmbr0", mac = "0e:00:00:00:64:00", addresses = ["192.0.2.100/24"], firewall = true }]
"#;

/// The base site plus the given files (which may replace site.toml). A
/// site given no `firewall/cluster.fw` gets one that says `enable: 0` (a
/// missing one is an error, docs/fail-closed.md).
pub fn site(files: &[(&str, &[u8])]) -> SiteFiles {
    let mut s = SiteFiles::new().with("site.toml", SITE_TOML);
    for (p, b) in files {
        s.insert(*p, b.to_vec());
    }
    if s.get("firewall/cluster.fw").is_none() {
        s.insert("firewall/cluster.fw", "[OPTIONS]\nenable: 0\n");
    }
    s
}

pub fn load(files: &[(&str, &str)]) -> (Site, Diagnostics) {
    let v: Vec<(&str, &[u8])> = files.iter().map(|(p, t)| (*p, t.as_bytes())).collect();
    rampart_resolve::load(&site(&v))
}

pub fn diags(files: &[(&str, &str)]) -> Diagnostics {
    load(files).1
}

pub fn cluster(text: &str) -> Diagnostics {
    diags(&[("firewall/cluster.fw", text)])
}

/// Assert a diagnostic with `code` at `path:line:col` exists; returns it.
pub fn expect_at(
    d: &Diagnostics,
    sources: &rampart_types::SourceMap,
    code: &str,
    path: &str,
    line: u32,
    col: u32,
) -> Diagnostic {
    let found = d.items.iter().find(|x| {
        x.code == code
            && x.span
                .is_some_and(|s| s.line == line && s.col == col && sources.path(s.file) == path)
    });
    match found {
        Some(x) => x.clone(),
        None => panic!(
            "expected {code} at {path}:{line}:{col}; got:\n{}",
            d.items
                .iter()
                .map(|x| format!(
                    "  {} {} at {:?}",
                    x.code,
                    x.message,
                    x.span
                        .map(|s| (sources.path(s.file).to_string(), s.line, s.col))
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Load the files and assert the diagnostic.
pub fn expect(files: &[(&str, &str)], code: &str, path: &str, line: u32, col: u32) -> Diagnostic {
    let (site, d) = load(files);
    expect_at(&d, &site.sources, code, path, line, col)
}

pub fn expect_cluster(text: &str, code: &str, line: u32, col: u32) -> Diagnostic {
    expect(
        &[("firewall/cluster.fw", text)],
        code,
        "firewall/cluster.fw",
        line,
        col,
    )
}

pub fn expect_bytes(
    files: &[(&str, &[u8])],
    code: &str,
    path: &str,
    line: u32,
    col: u32,
) -> Diagnostic {
    let (site, d) = rampart_resolve::load(&site(files));
    expect_at(&d, &site.sources, code, path, line, col)
}

pub fn assert_clean(d: &Diagnostics) {
    assert!(d.is_empty(), "expected no diagnostics, got: {:#?}", d.items);
}

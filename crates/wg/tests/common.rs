#![allow(dead_code)]
//! Helpers shared by the integration tests.
use rampart_types::{Diagnostics, FileId};

/// Replace `K(name)` with the (stable, test-only) public key of `name`.
pub fn keys(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("K(") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(')').unwrap() + i;
        let name = &rest[i + 2..end];
        out.push_str(&rampart_wg::keys::test_keypair(name).1.to_base64());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

pub fn check(text: &str) -> (Option<rampart_wg::Plan>, Diagnostics) {
    rampart_wg::check(FileId(0), &keys(text))
}

/// (code, line, col) of every diagnostic.
pub fn codes(text: &str) -> Vec<(&'static str, u32, u32)> {
    let (_, d) = check(text);
    d.items
        .iter()
        .map(|x| {
            (
                x.code,
                x.span.map(|s| s.line).unwrap_or(0),
                x.span.map(|s| s.col).unwrap_or(0),
            )
        })
        .collect()
}

pub fn render(text: &str) -> String {
    let mut map = rampart_types::SourceMap::new();
    map.add("site.toml", keys(text));
    let (_, d) = check(text);
    d.render(&map)
}

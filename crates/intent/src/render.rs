//! The matrix as an aligned text table or as JSON.

use crate::verify::{Matrix, Row};
use serde::Serialize;

fn word(b: Option<bool>) -> &'static str {
    match b {
        Some(true) => "reachable",
        Some(false) => "unreachable",
        None => "error",
    }
}

fn decided(r: &Row) -> String {
    match (&r.decided_by, &r.reason) {
        (Some(d), _) => format!("{} {}", d.node, d.origin),
        (None, Some(reason)) => reason.clone(),
        (None, None) => "-".into(),
    }
}

/// `desktop -wg0-> host1 -> host2`.
pub fn hops(h: &[String]) -> String {
    let mut s = String::new();
    for (i, x) in h.iter().enumerate() {
        if i > 0 {
            s.push(' ');
            if !x.starts_with('-') {
                s.push_str("-> ");
            }
        }
        s.push_str(x);
    }
    s
}

/// An aligned table, one line per row, misses marked `MISS`, then the
/// details of each miss and a summary line.
pub fn text(m: &Matrix) -> String {
    let head = [
        "",
        "intent",
        "service",
        "expected",
        "got",
        "decided by",
        "hops",
    ];
    let mut lines: Vec<[String; 7]> = vec![head.map(str::to_string)];
    for r in &m.rows {
        lines.push([
            if r.ok() { "ok".into() } else { "MISS".into() },
            r.intent.clone(),
            r.service.clone(),
            word(Some(r.expected)).into(),
            word(r.got).into(),
            decided(r),
            hops(&r.hops),
        ]);
    }
    let mut w = [0usize; 7];
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for l in &lines {
        let mut s = String::new();
        for (i, c) in l.iter().enumerate() {
            if i == 6 {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    }
    for r in m.rows.iter().filter(|r| !r.ok()) {
        out.push_str(&format!(
            "\nmiss: {} ({}, {}): expected {}, got {}\n",
            r.intent,
            r.service,
            r.origin,
            word(Some(r.expected)),
            word(r.got)
        ));
        if let Some(p) = &r.probe {
            out.push_str(&format!(
                "  packet: {} {} -> {}{}\n",
                p.proto,
                p.source,
                p.dest,
                p.dport.map(|d| format!(":{d}")).unwrap_or_default()
            ));
        }
        if let Some(d) = &r.decided_by {
            out.push_str(&format!(
                "  decided by {} on {} [{}]: {}\n",
                d.origin, d.node, d.chain, d.rule
            ));
        }
        if let Some(x) = &r.reason {
            out.push_str(&format!("  {x}\n"));
        }
        for n in &r.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        if let Some(x) = &r.why {
            out.push_str(&format!("  reason: {x}\n"));
        }
    }
    out.push_str(&summary(m));
    out.push('\n');
    out
}

/// `12 intents (14 probes): 14 as expected, 0 missed`.
pub fn summary(m: &Matrix) -> String {
    let mut names: Vec<&str> = m.rows.iter().map(|r| r.intent.as_str()).collect();
    names.dedup();
    let miss = m.misses();
    format!(
        "{} intents ({} rows): {} as expected, {miss} missed",
        names.len(),
        m.rows.len(),
        m.rows.len() - miss
    )
}

#[derive(Serialize)]
struct Json<'a> {
    rows: &'a [Row],
    passed: usize,
    missed: usize,
}

/// The matrix as JSON: `{"rows": [...], "passed": N, "missed": M}`; each
/// row carries its lab probe.
pub fn json(m: &Matrix) -> String {
    let miss = m.misses();
    serde_json::to_string_pretty(&Json {
        rows: &m.rows,
        passed: m.rows.len() - miss,
        missed: miss,
    })
    .expect("matrix serializes")
}

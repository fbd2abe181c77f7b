//! `[[expect]]` tables of `site.toml`, with spans (see `docs/intents.md`).

use rampart_syntax::suggest::did_you_mean;
use rampart_syntax::tables::{find_macro, macros};
use rampart_types::{codes, Diagnostic, Diagnostics, Family, FileId, Proto, Span};
use serde::Serialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// An endpoint as written: `hv1`, `vm100@net1`, `internet`, `192.0.2.5`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointSpec {
    /// The whole text.
    pub text: String,
    /// Before the `@`.
    pub base: String,
    /// After the `@` (`public`, a bridge, a NIC, a WireGuard network or interface).
    pub qual: Option<String>,
    #[serde(skip)]
    pub span: Span,
}

/// What is probed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum What {
    /// A macro of macros.tsv, by index into [`rampart_syntax::tables::macros`].
    Macro(usize),
    /// `service = "any"`.
    Any,
    /// `proto` and/or `port` (`proto` `None`: tcp with a port, ping without).
    Proto {
        proto: Option<Proto>,
        port: Option<u16>,
    },
}

/// One `[[expect]]` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expect {
    /// `name`, or `FROM -> TO WHAT`.
    pub name: String,
    pub from: EndpointSpec,
    pub to: EndpointSpec,
    pub what: What,
    pub family: Option<Family>,
    pub reachable: bool,
    pub reason: Option<String>,
    /// The `[[expect]]` header line.
    #[serde(skip)]
    pub span: Span,
}

impl Expect {
    /// `site.toml:LINE` of the `[[expect]]` header.
    pub fn origin(&self) -> String {
        format!("site.toml:{}", self.span.line)
    }
}

pub fn what_label(w: &What) -> String {
    match w {
        What::Macro(i) => macros()[*i].name.to_string(),
        What::Any => "any".into(),
        What::Proto { proto, port } => match (proto, port) {
            (Some(p), Some(n)) => format!("{p}/{n}"),
            (None, Some(n)) => format!("tcp/{n}"),
            (Some(p), None) => p.to_string(),
            (None, None) => "ping".into(),
        },
    }
}

const KEYS: &[&str] = &[
    "name",
    "from",
    "to",
    "service",
    "proto",
    "port",
    "family",
    "reachable",
    "reason",
];

struct Cx<'a> {
    file: FileId,
    text: &'a str,
    line_starts: Vec<usize>,
    diags: Diagnostics,
}

impl Cx<'_> {
    fn span(&self, r: std::ops::Range<usize>) -> Span {
        let start = r.start.min(self.text.len());
        let li = match self.line_starts.binary_search(&start) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let ls = self.line_starts[li];
        let line_end = self.text[ls..]
            .find('\n')
            .map_or(self.text.len(), |p| ls + p);
        let col = self.text[ls..start].chars().count() as u32 + 1;
        let end = r.end.min(line_end).max(start);
        let len = self.text[start..end].chars().count() as u32;
        Span::new(self.file, li as u32 + 1, col, len)
    }
    fn err(&mut self, code: codes::Code, span: Span, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::new(code, msg).at(span)
    }
    /// The line of the `[[expect]]` header before byte `at`.
    fn header(&self, at: usize) -> Span {
        let before = &self.text[..at.min(self.text.len())];
        match before.rfind("[[expect]]") {
            Some(p) => self.span(p..p + "[[expect]]".len()),
            None => self.span(at..at),
        }
    }
}

#[derive(serde::Deserialize)]
struct Top {
    #[serde(default)]
    expect: Option<Spanned<toml::Value>>,
}

/// Parse the `[[expect]]` tables of `site.toml` (file `file`). A `site.toml`
/// that is not valid TOML gives no intents and no diagnostics here (the site
/// parser reports it).
pub fn parse(file: FileId, text: &str) -> (Vec<Expect>, Diagnostics) {
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let mut cx = Cx {
        file,
        text,
        line_starts,
        diags: Diagnostics::new(),
    };
    let Ok(top) = toml::from_str::<Top>(text) else {
        return (vec![], cx.diags);
    };
    let Some(list) = top.expect else {
        return (vec![], cx.diags);
    };
    let span = list.span();
    // Re-read with spans per entry.
    #[derive(serde::Deserialize)]
    struct Spans {
        expect: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
    }
    let entries = match toml::from_str::<Spans>(text) {
        Ok(s) => s.expect,
        Err(_) => {
            let d = cx.err(
                codes::SITE_TOML,
                cx.span(span),
                "`expect` must be an array of tables: write each intent as `[[expect]]`",
            );
            cx.diags.push(d);
            return (vec![], cx.diags);
        }
    };
    let mut out = Vec::new();
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    for e in &entries {
        let first = e
            .get_ref()
            .keys()
            .map(|k| k.span().start)
            .min()
            .unwrap_or(e.span().start);
        let header = cx.header(first);
        if let Some(x) = entry(&mut cx, e.get_ref(), header) {
            if let Some(prev) = names.get(&x.name) {
                let d = cx
                    .err(
                        codes::DUPLICATE_NAME,
                        x.span,
                        format!("two intents named `{}`", x.name),
                    )
                    .note(format!("the first is at site.toml:{}", prev.line));
                cx.diags.push(d);
                continue;
            }
            names.insert(x.name.clone(), x.span);
            out.push(x);
        }
    }
    (out, cx.diags)
}

fn entry(
    cx: &mut Cx,
    t: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    header: Span,
) -> Option<Expect> {
    let mut ok = true;
    let mut strings: BTreeMap<&str, (String, Span)> = BTreeMap::new();
    let mut reachable = None;
    let mut port = None;
    for (k, v) in t {
        let key = k.get_ref().as_str();
        let vspan = cx.span(v.span());
        match key {
            "name" | "from" | "to" | "service" | "proto" | "family" | "reason" => {
                match v.get_ref() {
                    toml::Value::String(s) => {
                        strings.insert(
                            KEYS.iter().find(|x| **x == key).copied().unwrap_or("?"),
                            (s.clone(), vspan),
                        );
                    }
                    o => {
                        let d = cx.err(
                            codes::SITE_TOML,
                            vspan,
                            format!("`{key}` must be a string, found {}", o.type_str()),
                        );
                        cx.diags.push(d);
                        ok = false;
                    }
                }
            }
            "reachable" => match v.get_ref() {
                toml::Value::Boolean(b) => reachable = Some(*b),
                o => {
                    let d = cx.err(
                        codes::SITE_TOML,
                        vspan,
                        format!("`reachable` must be true or false, found {}", o.type_str()),
                    );
                    cx.diags.push(d);
                    ok = false;
                }
            },
            "port" => match v.get_ref() {
                toml::Value::Integer(n) if (1..=65535).contains(n) => port = Some(*n as u16),
                toml::Value::Integer(n) => {
                    let d = cx.err(
                        codes::PORT_OUT_OF_RANGE,
                        vspan,
                        format!("port {n} is out of range (1-65535)"),
                    );
                    cx.diags.push(d);
                    ok = false;
                }
                o => {
                    let d = cx.err(
                        codes::SITE_TOML,
                        vspan,
                        format!("`port` must be an integer, found {}", o.type_str()),
                    );
                    cx.diags.push(d);
                    ok = false;
                }
            },
            _ => {
                let mut d = cx
                    .err(
                        codes::SITE_TOML,
                        cx.span(k.span()),
                        format!("unknown key `{key}` in [[expect]]"),
                    )
                    .note(format!("keys of [[expect]]: {}", KEYS.join(", ")));
                if let Some(h) = did_you_mean(key, KEYS.iter().copied()) {
                    d = d.hint(h);
                }
                cx.diags.push(d);
                ok = false;
            }
        }
    }
    let mut required = |what: &str, present: bool, cx: &mut Cx| {
        if !present {
            let d = cx.err(
                codes::SITE_TOML,
                header,
                format!("[[expect]] without `{what}`"),
            );
            cx.diags.push(d);
            ok = false;
        }
    };
    required("from", strings.contains_key("from"), cx);
    required("to", strings.contains_key("to"), cx);
    required("reachable", reachable.is_some(), cx);

    let ep = |key: &str, cx: &mut Cx| -> Option<EndpointSpec> {
        let (s, span) = strings.get(key)?.clone();
        let (base, qual) = match s.split_once('@') {
            Some((b, q)) => (b.trim().to_string(), Some(q.trim().to_string())),
            None => (s.trim().to_string(), None),
        };
        if base.is_empty() || qual.as_deref() == Some("") {
            let d = cx.err(
                codes::UNKNOWN_ENDPOINT,
                span,
                format!("`{s}` is not an endpoint"),
            );
            cx.diags.push(d);
            return None;
        }
        Some(EndpointSpec {
            text: s,
            base,
            qual,
            span,
        })
    };
    let from = ep("from", cx);
    let to = ep("to", cx);

    let family = match strings.get("family") {
        None => None,
        Some((f, span)) => match f.to_ascii_lowercase().as_str() {
            "ipv4" | "inet" | "4" => Some(Family::V4),
            "ipv6" | "inet6" | "6" => Some(Family::V6),
            _ => {
                let d = cx
                    .err(codes::SITE_TOML, *span, format!("unknown family `{f}`"))
                    .note("families: ipv4, ipv6");
                cx.diags.push(d);
                ok = false;
                None
            }
        },
    };

    let proto = match strings.get("proto") {
        None => None,
        Some((p, span)) => match p.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "icmp" | "ping" => Some(Proto::Icmp),
            "icmpv6" | "ipv6-icmp" => Some(Proto::Icmpv6),
            _ => {
                let mut d = cx
                    .err(
                        codes::UNKNOWN_PROTOCOL,
                        *span,
                        format!("unknown protocol `{p}` for an intent"),
                    )
                    .note("intents probe tcp, udp, icmp or icmpv6");
                if let Some(h) = did_you_mean(p, ["tcp", "udp", "icmp", "icmpv6"]) {
                    d = d.hint(h);
                }
                cx.diags.push(d);
                ok = false;
                None
            }
        },
    };
    if let (Some(p @ (Proto::Icmp | Proto::Icmpv6)), Some(_)) = (&proto, port) {
        let (_, span) = strings["proto"].clone();
        let d = cx.err(
            codes::PORT_WITH_PORTLESS_PROTO,
            span,
            format!("`port` given with `{p}`, which has no ports"),
        );
        cx.diags.push(d);
        ok = false;
    }

    let what = match strings.get("service") {
        Some((s, span)) => {
            if proto.is_some() || port.is_some() {
                let d = cx
                    .err(
                        codes::MACRO_CONFLICT,
                        *span,
                        "`service` together with `proto` or `port`",
                    )
                    .note("give a service (macro) or a protocol and port, not both");
                cx.diags.push(d);
                ok = false;
            }
            if s.eq_ignore_ascii_case("any") {
                What::Any
            } else {
                match find_macro(s) {
                    Some(i) => What::Macro(i),
                    None => {
                        let mut d = cx
                            .err(codes::UNKNOWN_MACRO, *span, format!("unknown macro `{s}`"))
                            .note("services are the macros of macros.tsv, or `any`");
                        if let Some(h) = did_you_mean(s, macros().iter().map(|m| m.name)) {
                            d = d.hint(h);
                        }
                        cx.diags.push(d);
                        ok = false;
                        What::Any
                    }
                }
            }
        }
        None => What::Proto { proto, port },
    };
    if !ok {
        return None;
    }
    let (from, to) = (from?, to?);
    let name = match strings.get("name") {
        Some((n, _)) => n.clone(),
        None => format!("{} -> {} {}", from.text, to.text, what_label(&what)),
    };
    Some(Expect {
        name,
        from,
        to,
        what,
        family,
        reachable: reachable?,
        reason: strings.get("reason").map(|(r, _)| r.clone()),
        span: header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_types::SourceMap;

    fn run(text: &str) -> (Vec<Expect>, String) {
        let mut map = SourceMap::new();
        let id = map.add("site.toml", text);
        let (x, d) = parse(id, text);
        (x, d.render(&map))
    }

    #[test]
    fn entries_with_defaults() {
        let (x, d) = run(
            "[[node]]\nname = \"hv1\"\n\n[[expect]]\nfrom = \"internet\"\nto = \"hv1@public\"\nport = 22\nreachable = false\n\n[[expect]]\nname = \"dns\"\nfrom = \"vm100\"\nto = \"hv1\"\nservice = \"dns\"\nfamily = \"ipv6\"\nreachable = true\nreason = \"resolver\"\n",
        );
        assert_eq!(d, "");
        assert_eq!(x.len(), 2);
        assert_eq!(x[0].name, "internet -> hv1@public tcp/22");
        assert_eq!(x[0].to.base, "hv1");
        assert_eq!(x[0].to.qual.as_deref(), Some("public"));
        assert_eq!(x[0].origin(), "site.toml:4");
        assert!(!x[0].reachable);
        assert_eq!(x[1].what, What::Macro(find_macro("DNS").unwrap()));
        assert_eq!(x[1].family, Some(Family::V6));
        assert_eq!(x[1].origin(), "site.toml:10");
    }

    #[test]
    fn unknown_macro_names_the_line_and_suggests() {
        let (x, d) =
            run("[[expect]]\nfrom = \"a\"\nto = \"b\"\nservice = \"SHH\"\nreachable = true\n");
        assert!(x.is_empty());
        assert!(d.contains("error[E0310]: unknown macro `SHH`"), "{d}");
        assert!(d.contains("site.toml:4:11"), "{d}");
        assert!(d.contains("did you mean `SSH`?"), "{d}");
    }

    #[test]
    fn bad_entries_are_diagnosed_each() {
        let (x, d) = run(
            "[[expect]]\nfrom = \"a\"\nto = \"b\"\nport = 70000\nreachable = true\n\n[[expect]]\nfrom = \"a\"\nreachabel = true\n\n[[expect]]\nfrom = \"a\"\nto = \"b\"\nproto = \"icmp\"\nport = 5\nreachable = \"yes\"\n",
        );
        assert!(x.is_empty());
        assert!(
            d.contains("error[E0301]: port 70000 is out of range"),
            "{d}"
        );
        assert!(d.contains("unknown key `reachabel` in [[expect]]"), "{d}");
        assert!(d.contains("did you mean `reachable`?"), "{d}");
        assert!(d.contains("[[expect]] without `to`"), "{d}");
        assert!(d.contains("error[E0304]"), "{d}");
        assert!(d.contains("`reachable` must be true or false"), "{d}");
    }

    #[test]
    fn duplicate_names() {
        let (x, d) = run(
            "[[expect]]\nname = \"n\"\nfrom = \"a\"\nto = \"b\"\nreachable = true\n[[expect]]\nname = \"n\"\nfrom = \"a\"\nto = \"c\"\nreachable = true\n",
        );
        assert_eq!(x.len(), 1);
        assert!(d.contains("error[E0414]: two intents named `n`"), "{d}");
        assert!(d.contains("site.toml:6"), "{d}");
    }

    #[test]
    fn no_expect_no_output_and_garbage_never_panics() {
        assert_eq!(run("[[node]]\nname = \"x\"\n").0.len(), 0);
        assert_eq!(run("[[expect]\nfrom=").0.len(), 0);
        let (_, d) = run("expect = 5\n");
        assert!(d.contains("array of tables"), "{d}");
    }
}

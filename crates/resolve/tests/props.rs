//! Property tests: arbitrary bytes and mutated valid files go through parse
//! and resolve without a panic, and every diagnostic points inside its file.

mod common;
use proptest::prelude::*;
use rampart_types::SiteFiles;

const VALID_CLUSTER: &str = "[OPTIONS]\nenable: 1\npolicy_in: DROP\nlog_ratelimit: enable=1,rate=1/second,burst=5\n\n[ALIASES]\nmonitor 203.0.113.9 # uptime\nv6 2001:db8::1\n\n[IPSET management]\n198.51.100.5 # admin\n!198.51.100.6\nmonitor\n\n[IPSET blacklist]\n77.240.159.182\n\n[RULES]\nIN HTTPS(ACCEPT) -source monitor\nIN Ping(ACCEPT)\nIN ACCEPT -p tcp -dport 8080,9000:9010 -source 203.0.113.0/24 -log info\n|IN ACCEPT -p tcp -dport 9000\nIN REJECT -p tcp -dport 25\nOUT ACCEPT -dest v6 -p icmpv6 -icmp-type echo-request\nFORWARD DROP -source 10.0.0.1-10.0.0.9\n\n[group webserver]\nIN HTTP(ACCEPT)\nIN ACCEPT -p tcp -dport 443 -source +dc/management\n";
const VALID_GUEST: &str = "[OPTIONS]\nenable: 1\nipfilter: 1\nips_queues: 0:1\n\n[ALIASES]\nsrv 10.2.2.2\n\n[IPSET ipfilter-net0]\n192.0.2.100\n\n[RULES]\nGROUP webserver -i net0\nIN SSH(ACCEPT) -i net0 -source srv,10.0.0.1\nOUT DNS(ACCEPT)\nIN DROP --proto udp --dport 53 --source +guest/ipfilter-net0\n";
const VALID_HOST: &str = "[OPTIONS]\nenable: 1\nnf_conntrack_helpers: ftp\n\n[RULES]\nIN DROP -p tcp -dport 8080 -source 203.0.113.66 -i vmbr0\n";
const VALID_CONF: &str =
    "name: web\nnet0: virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,tag=10\n";

fn check_spans(files: &SiteFiles) {
    let (site, d) = rampart_resolve::load(files);
    for x in &d.items {
        let _ = x.render(&site.sources);
        if let Some(s) = x.span {
            let f = site.sources.get(s.file).expect("span names a known file");
            if f.text.is_empty() {
                continue;
            }
            let line = site
                .sources
                .line_text(s.file, s.line)
                .unwrap_or_else(|| panic!("{} points past the end of {}: {x:?}", x.code, f.path));
            let n = line.chars().count() as u32;
            assert!(
                s.col >= 1 && s.col <= n + 1,
                "{} col {} outside a line of {n} chars: {x:?}",
                x.code,
                s.col
            );
            assert!(
                s.col - 1 + s.len <= n + 1,
                "{} span runs past the line end: {x:?}",
                x.code
            );
        }
    }
}

fn site_with(path: &str, bytes: Vec<u8>) -> SiteFiles {
    common::site(&[
        ("firewall/cluster.fw", VALID_CLUSTER.as_bytes()),
        ("firewall/100.fw", VALID_GUEST.as_bytes()),
        ("nodes/hv1/host.fw", VALID_HOST.as_bytes()),
        ("qemu-server/100.conf", VALID_CONF.as_bytes()),
        (path, &bytes),
    ])
}

const PATHS: &[&str] = &[
    "firewall/cluster.fw",
    "firewall/100.fw",
    "nodes/hv1/host.fw",
    "site.toml",
    "qemu-server/100.conf",
    "lxc/100.conf",
    "corosync.conf",
];

fn valid_of(path: &str) -> &'static str {
    match path {
        "firewall/cluster.fw" => VALID_CLUSTER,
        "firewall/100.fw" => VALID_GUEST,
        "nodes/hv1/host.fw" => VALID_HOST,
        "site.toml" => common::SITE_TOML,
        _ => VALID_CONF,
    }
}

/// Pieces that make mutations hit the grammar rather than only break it.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "#",
    "|",
    ",",
    ",,",
    ":",
    "-",
    "--",
    "+",
    "!",
    "/",
    "(",
    ")",
    " ",
    "\n",
    "\r",
    "\r\n",
    "\0",
    "\u{feff}",
    "é",
    "\t",
    "IN",
    "OUT",
    "FORWARD",
    "GROUP",
    "ACCEPT",
    "DROP",
    "REJECT",
    "SSH(ACCEPT)",
    "Ping(DROP)",
    "-p",
    "tcp",
    "icmp",
    "icmpv6",
    "-dport",
    "-sport",
    "-source",
    "-dest",
    "-i",
    "net0",
    "net9",
    "-icmp-type",
    "echo-request",
    "-log",
    "info",
    "+management",
    "dc/",
    "guest/",
    "local_network",
    "10.0.0.1",
    "10.0.0.0/33",
    "::/0",
    "0",
    "65536",
    "90:80",
    "[RULES]",
    "[OPTIONS]",
    "[IPSET x1]",
    "[group g1]",
    "[ALIASES]",
    "enable: 1",
    "GROUP webserver",
    "GROUP g1",
    "=",
    "\"",
    "[[guest]]",
    "id = 100",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, usize),
    DupLine(usize),
    SwapLines(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..12).prop_map(|(a, b)| Mutation::Delete(a, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        any::<usize>().prop_map(Mutation::DupLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    for m in muts {
        let n = b.len().max(1);
        match m {
            Mutation::Delete(a, len) => {
                let s = a % n;
                let e = (s + len).min(b.len());
                if s < e {
                    b.drain(s..e);
                }
            }
            Mutation::Insert(a, t) => {
                let s = (a % (b.len() + 1)).min(b.len());
                b.splice(s..s, TOKENS[*t].bytes());
            }
            Mutation::DupLine(a) | Mutation::SwapLines(a, _) | Mutation::Truncate(a)
                if b.is_empty() =>
            {
                let _ = a;
            }
            Mutation::DupLine(a) => {
                let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
                let i = a % lines.len();
                let mut out: Vec<u8> = Vec::new();
                for (j, l) in lines.iter().enumerate() {
                    out.extend_from_slice(l);
                    out.push(b'\n');
                    if j == i {
                        out.extend_from_slice(l);
                        out.push(b'\n');
                    }
                }
                b = out;
            }
            Mutation::SwapLines(x, y) => {
                let mut lines: Vec<Vec<u8>> =
                    b.split(|&c| c == b'\n').map(|l| l.to_vec()).collect();
                let n = lines.len();
                lines.swap(x % n, y % n);
                b = lines.join(&b'\n');
            }
            Mutation::Truncate(a) => b.truncate(a % n),
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(path in 0..PATHS.len(), bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_spans(&site_with(PATHS[path], bytes));
    }

    #[test]
    fn arbitrary_text_never_panics(path in 0..PATHS.len(), text in "\\PC{0,300}") {
        check_spans(&site_with(PATHS[path], text.into_bytes()));
    }

    #[test]
    fn mutated_valid_files_never_panic(path in 0..PATHS.len(), muts in proptest::collection::vec(mutation(), 1..8)) {
        let bytes = apply(valid_of(PATHS[path]), &muts);
        check_spans(&site_with(PATHS[path], bytes));
    }

    #[test]
    fn token_soup_never_panics(path in 0..PATHS.len(), toks in proptest::collection::vec(0..TOKENS.len(), 0..60)) {
        let text: String = toks.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(" ");
        check_spans(&site_with(PATHS[path], text.into_bytes()));
    }
}

const HEADERS: &[&str] = &[
    "[RULES]",
    "[OPTIONS]",
    "[ALIASES]",
    "[IPSET s1]",
    "[group g1]",
    "[[node]]",
    "nodelist {\n node {",
    "",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    /// Short lines of tokens under a real section header: reaches the
    /// per-line parsers with odd shapes (`|` alone, a flag without a value...).
    #[test]
    fn line_soup_never_panics(
        path in 0..PATHS.len(),
        header in 0..HEADERS.len(),
        lines in proptest::collection::vec((proptest::collection::vec(0..TOKENS.len(), 0..6), any::<bool>()), 0..12),
    ) {
        let mut text = format!("{}\n", HEADERS[header]);
        for (toks, spaced) in lines {
            let sep = if spaced { " " } else { "" };
            text.push_str(&toks.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(sep));
            text.push('\n');
        }
        check_spans(&site_with(PATHS[path], text.into_bytes()));
    }
}

#[test]
fn regression_pipe_alone_on_a_line() {
    let (site, d) = rampart_resolve::load(&site_with(
        "firewall/cluster.fw",
        b"[RULES]\n|\n| # x\n".to_vec(),
    ));
    common::expect_at(&d, &site.sources, "E0116", "firewall/cluster.fw", 2, 1);
}

#[test]
fn the_valid_inputs_are_valid() {
    let files = site_with("qemu-server/100.conf", VALID_CONF.as_bytes().to_vec());
    let (_, d) = rampart_resolve::load(&files);
    common::assert_clean(&d);
}

//! Every name in a site is untrusted (issue 16, docs/trust-model.md):
//! each kind of name with a hostile value is refused by `check` at its
//! line and column, and `compile`, `apply`, `push` and the agent refuse
//! the site themselves (they never rely on `check` having run).

mod common;

use std::path::Path;
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

fn site(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write_site(d.path(), files);
    d
}

fn write_site(root: &Path, files: &[(&str, &str)]) {
    for (p, t) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, t).unwrap();
    }
}

const KEY_A: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
const KEY_B: &str = "KCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4/QEFCQ0RFRkc=";
const CLUSTER: &str = "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -p tcp -dport 22\n";

/// The hostile values, as raw strings (escaped for TOML where they go there).
fn hostile() -> Vec<(&'static str, String)> {
    vec![
        ("newline", "a\nb".into()),
        ("quote", "a\"b".into()),
        ("brace", "a{b".into()),
        ("semicolon", "a;b".into()),
        ("hash", "a#b".into()),
        ("slash", "a/b".into()),
        ("dotdot", "..".into()),
        ("traversal", "../../trav".into()),
        ("nul", "a\0b".into()),
        ("non-ascii", "pvé".into()),
        ("empty", String::new()),
        ("over-long", "a".repeat(300)),
        ("escape", "a\x1b[31mb".into()),
    ]
}

/// A TOML basic string holding `s`.
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

struct Kind {
    what: &'static str,
    /// site.toml with `@@` where the (TOML-quoted) name goes.
    toml: &'static str,
}

const NODE_OK: &str = "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n";

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            what: "node name",
            toml: "[[node]]\nname = @@\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n",
        },
        Kind {
            what: "site name",
            toml: "[site]\nname = @@\n\n[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n",
        },
        Kind {
            what: "bridge name",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { @@ = [\"192.0.2.10/24\"] }\n",
        },
        Kind {
            what: "guest's node",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[guest]]\nid = 100\nnode = @@\n",
        },
        Kind {
            what: "NIC bridge",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[guest]]\nid = 100\nnode = \"hv1\"\nnics = [{ name = \"net0\", bridge = @@ }]\n",
        },
        Kind {
            what: "WireGuard network",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[wireguard]]\nname = @@\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\n\n[[wireguard.member]]\nname = \"hv1\"\npublic_key = \"KEYA\"\n",
        },
        Kind {
            what: "WireGuard interface",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[wireguard]]\nname = \"mgmt\"\ninterface = @@\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\n\n[[wireguard.member]]\nname = \"hv1\"\npublic_key = \"KEYA\"\n",
        },
        Kind {
            what: "WireGuard member",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[wireguard]]\nname = \"mgmt\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\n\n[[wireguard.member]]\nname = @@\npublic_key = \"KEYA\"\nguest = 100\nendpoint = \"192.0.2.50\"\n",
        },
        Kind {
            what: "WireGuard client",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[wireguard]]\nname = \"mgmt\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\ntopology = \"hub\"\ngateways = [\"hv1\"]\n\n[[wireguard.member]]\nname = \"hv1\"\npublic_key = \"KEYA\"\n\n[[client]]\nnetwork = \"mgmt\"\nname = @@\npublic_key = \"KEYB\"\n",
        },
        Kind {
            what: "lockdown node",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[lockdown]]\nnode = @@\nallow = [\"192.0.2.0/24\"]\n",
        },
        Kind {
            what: "egress bridge",
            toml: "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n\n[[egress]]\nnode = \"hv1\"\nsubnet = \"192.0.2.0/24\"\nnetwork = \"mgmt\"\nbridge = @@\n",
        },
    ]
}

/// (line, column) of `@@` in `t`.
fn place(t: &str) -> (u64, u64) {
    let i = t.find("@@").unwrap();
    let line = t[..i].matches('\n').count() as u64 + 1;
    let col = t[..i].rfind('\n').map_or(i, |n| i - n - 1) as u64 + 1;
    (line, col)
}

fn check_json(dir: &Path) -> (Option<i32>, serde_json::Value, String) {
    let o = rampart(&["check", "--format", "json", dir.to_str().unwrap()]);
    let v: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("json: {e}: {}", text(&o)));
    (o.status.code(), v, text(&o))
}

/// An error at `line` (and, when it is a name error, at `col`).
fn assert_refused_at(
    case: &str,
    code: Option<i32>,
    v: &serde_json::Value,
    out: &str,
    file: &str,
    line: u64,
    col: Option<u64>,
) {
    assert_eq!(code, Some(1), "{case}: check must refuse\n{out}");
    let diags = v["diagnostics"].as_array().unwrap();
    let here: Vec<&serde_json::Value> = diags
        .iter()
        .filter(|d| d["severity"] == "error" && d["file"] == file && d["line"] == line)
        .collect();
    assert!(!here.is_empty(), "{case}: no error at {file}:{line}\n{out}");
    if let Some(col) = col {
        let named = here
            .iter()
            .find(|d| d["code"] == "E0408" || d["code"] == "E0407" || d["code"] == "E0610");
        let d = named.unwrap_or_else(|| panic!("{case}: no name error at line {line}\n{out}"));
        assert_eq!(d["col"], col, "{case}: column\n{out}");
        let msg = d["message"].as_str().unwrap();
        assert!(
            !msg.contains('\n') && !msg.contains('\0') && !msg.contains('\x1b'),
            "{case}: the message quotes the name raw: {msg:?}"
        );
    }
    // The text rendering never echoes a control character either.
    assert!(
        !out.contains('\x1b') && !out.contains('\0'),
        "{case}: raw escape in output"
    );
}

#[test]
fn every_name_kind_refuses_hostile_values_at_their_line_and_column() {
    let mut n = 0;
    for k in kinds() {
        for (label, value) in hostile() {
            let toml = k.toml.replace("KEYA", KEY_A).replace("KEYB", KEY_B);
            let (line, col) = place(&toml);
            let body = toml.replace("@@", &toml_str(&value));
            let d = site(&[("site.toml", &body), ("firewall/cluster.fw", CLUSTER)]);
            let (code, v, out) = check_json(d.path());
            let case = format!("{} = {label}", k.what);
            assert_refused_at(&case, code, &v, &out, "site.toml", line, Some(col));
            n += 1;
        }
    }
    assert!(n > 100);
}

#[test]
fn every_fw_name_kind_refuses_hostile_tokens_at_their_line() {
    // Tokens of a .fw line: no whitespace or line breaks can be in them.
    let values = [
        "a\"b",
        "a{b",
        "a;b",
        "a/b",
        "..",
        "../../trav",
        "pvé",
        &"a".repeat(300),
        "a\x1bb",
    ];
    let cases: Vec<(&str, &str)> = vec![
        ("ipset", "[OPTIONS]\nenable: 1\n\n[IPSET @@]\n192.0.2.1\n"),
        ("alias", "[OPTIONS]\nenable: 1\n\n[ALIASES]\n@@ 192.0.2.1\n"),
        (
            "group",
            "[OPTIONS]\nenable: 1\n\n[group @@]\nIN ACCEPT -p tcp -dport 22\n",
        ),
        (
            "interface",
            "[OPTIONS]\nenable: 1\n\n[RULES]\nIN ACCEPT -i @@ -p tcp -dport 22\n",
        ),
    ];
    for (what, fw) in cases {
        for v in values {
            let (line, col) = place(fw);
            let body = fw.replace("@@", v);
            let d = site(&[("site.toml", NODE_OK), ("firewall/cluster.fw", &body)]);
            let (code, j, out) = check_json(d.path());
            let case = format!("{what} = {v:?}");
            // `a"b`-style tokens may also be read as a malformed entry; the
            // error is on the line either way, at the name when it is a name error.
            let col = (what != "interface" || !v.contains('"')).then_some(col);
            assert_refused_at(&case, code, &j, &out, "firewall/cluster.fw", line, col);
        }
    }
}

#[test]
fn a_node_directory_with_a_hostile_name_is_refused() {
    for dir in ["a b", "a;b", "pvé", "a\nb", "x..y", "-x"] {
        let d = site(&[("firewall/cluster.fw", CLUSTER)]);
        write_site(d.path(), &[(&format!("nodes/{dir}/host.fw"), CLUSTER)]);
        let o = rampart(&["check", d.path().to_str().unwrap()]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{dir:?}: {out}");
        assert!(out.contains("E0408"), "{dir:?}: {out}");
        assert!(!out.contains("a\nb"), "{dir:?}: raw newline echoed: {out}");
    }
}

#[test]
fn guest_ids_must_be_vmids() {
    for id in ["\"100\"", "-1", "99", "1000000000", "\"100;\""] {
        let body = format!("{NODE_OK}\n[[guest]]\nid = {id}\nnode = \"hv1\"\n");
        let d = site(&[("site.toml", &body), ("firewall/cluster.fw", CLUSTER)]);
        let (code, v, out) = check_json(d.path());
        assert_refused_at(&format!("id = {id}"), code, &v, &out, "site.toml", 6, None);
    }
}

#[test]
fn nic_names_are_net_and_a_number() {
    // site.toml: a NIC's `name` (its number is the mark slot and the
    // `ipfilter-netN` set name).
    let mut values: Vec<(String, String)> = hostile()
        .into_iter()
        .map(|(l, v)| (l.to_string(), v))
        .collect();
    for v in ["net+5", "net-1", "eth0", "net1 ", "net\u{0661}"] {
        values.push((v.to_string(), v.to_string()));
    }
    for (label, value) in values {
        let body = format!(
            "{NODE_OK}\n[[guest]]\nid = 100\nnode = \"hv1\"\nnics = [{{ name = {}, bridge = \"vmbr0\" }}]\n",
            toml_str(&value)
        );
        let d = site(&[("site.toml", &body), ("firewall/cluster.fw", CLUSTER)]);
        let (code, v, out) = check_json(d.path());
        assert_refused_at(
            &format!("NIC name = {label}"),
            code,
            &v,
            &out,
            "site.toml",
            8,
            None,
        );
    }
    // A Proxmox guest config: `net+5` reads as a number but names no NIC;
    // refused at its line, not taken for NIC 5.
    let d = site(&[
        ("site.toml", NODE_OK),
        ("firewall/cluster.fw", CLUSTER),
        (
            "nodes/hv1/qemu-server/100.conf",
            "name: vm\nnet+5: virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1\n",
        ),
    ]);
    let (code, v, out) = check_json(d.path());
    assert_refused_at(
        "net+5 in a .conf",
        code,
        &v,
        &out,
        "nodes/hv1/qemu-server/100.conf",
        2,
        Some(1),
    );
}

// ------------------------------------------------- the two cases of issue 16

const INJECTION: &str = "pwn\ntable inet rampart_x { chain c { type filter hook input priority -1000; policy accept; tcp dport 0-65535 accept; } }\n#";

fn injection_site() -> tempfile::TempDir {
    let body = format!(
        "{NODE_OK}\n[[node]]\nname = {}\nbridges = {{ vmbr0 = [\"192.0.2.11/24\"] }}\n",
        toml_str(INJECTION)
    );
    site(&[("site.toml", &body), ("firewall/cluster.fw", CLUSTER)])
}

fn traversal_site() -> tempfile::TempDir {
    let body = format!(
        "{NODE_OK}\n[[node]]\nname = \"../../trav\"\nbridges = {{ vmbr0 = [\"192.0.2.11/24\"] }}\n"
    );
    site(&[("site.toml", &body), ("firewall/cluster.fw", CLUSTER)])
}

#[test]
fn check_refuses_the_injection_and_the_traversal_naming_the_line() {
    for (d, what) in [
        (injection_site(), "injection"),
        (traversal_site(), "traversal"),
    ] {
        let o = rampart(&["check", d.path().to_str().unwrap()]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {out}");
        assert!(out.contains("error[E0408]"), "{what}: {out}");
        assert!(out.contains("--> site.toml:6:8"), "{what}: {out}");
        assert!(
            !out.contains("\ntable inet rampart_x"),
            "{what}: the name is echoed raw: {out}"
        );
    }
}

#[test]
fn compile_refuses_and_writes_nothing_anywhere() {
    for (d, what) in [
        (injection_site(), "injection"),
        (traversal_site(), "traversal"),
    ] {
        let work = tempfile::tempdir().unwrap();
        let out_dir = work.path().join("a/b/OUT");
        std::fs::create_dir_all(&out_dir).unwrap();
        let o = rampart(&[
            "compile",
            d.path().to_str().unwrap(),
            "--all",
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {t}");
        assert!(t.contains("site.toml:6:8"), "{what}: {t}");
        assert!(
            !t.lines().any(|l| l.starts_with("table inet rampart_x")),
            "{what}: {t}"
        );
        assert!(!work.path().join("trav").exists() && !work.path().join("a/trav").exists());
        assert_eq!(
            std::fs::read_dir(&out_dir).unwrap().count(),
            0,
            "{what}: wrote into OUT"
        );
        // And printing to stdout prints no ruleset at all.
        let o = rampart(&["compile", d.path().to_str().unwrap(), "--all"]);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            !String::from_utf8_lossy(&o.stdout).contains("table inet"),
            "{what}"
        );
    }
}

#[test]
fn push_refuses_before_connecting() {
    // Port 1 on loopback: a push that got as far as etcd would fail to
    // connect; the refusal comes first and says nothing was pushed.
    for (d, what) in [
        (injection_site(), "injection"),
        (traversal_site(), "traversal"),
    ] {
        let o = rampart(&[
            "push",
            d.path().to_str().unwrap(),
            "--etcd",
            "http://127.0.0.1:1",
        ]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {t}");
        assert!(t.contains("nothing was pushed"), "{what}: {t}");
        assert!(t.contains("site.toml:6:8"), "{what}: {t}");
    }
    // The same for a WireGuard client name (push checks WireGuard too).
    let body = format!(
        "{NODE_OK}\n[[wireguard]]\nname = \"mgmt\"\ninterface = \"wg0\"\npool = [\"10.8.0.0/24\"]\nlisten_port = 51820\ntopology = \"hub\"\ngateways = [\"hv1\"]\n\n[[wireguard.member]]\nname = \"hv1\"\npublic_key = \"{KEY_A}\"\n\n[[client]]\nnetwork = \"mgmt\"\nname = \"../../x\"\npublic_key = \"{KEY_B}\"\n"
    );
    let d = site(&[("site.toml", &body), ("firewall/cluster.fw", CLUSTER)]);
    let o = rampart(&[
        "push",
        d.path().to_str().unwrap(),
        "--etcd",
        "http://127.0.0.1:1",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("nothing was pushed") && t.contains("E0408"),
        "{t}"
    );
}

#[test]
fn apply_and_agent_refuse_in_a_namespace_leaving_it_untouched() {
    if !common::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    for (d, what) in [
        (injection_site(), "injection"),
        (traversal_site(), "traversal"),
    ] {
        let ns = common::Ns::new("names");
        let state = tempfile::tempdir().unwrap();
        let o = rampart(&[
            "apply",
            d.path().to_str().unwrap(),
            "--node",
            "hv1",
            "--netns",
            &ns.0,
            "--state-dir",
            state.path().to_str().unwrap(),
        ]);
        let t = text(&o);
        assert_ne!(o.status.code(), Some(0), "{what}: apply: {t}");
        assert!(t.contains("site.toml:6:8"), "{what}: apply: {t}");
        let o = rampart(&[
            "agent",
            "--site",
            d.path().to_str().unwrap(),
            "--node",
            "hv1",
            "--once",
            "--netns",
            &ns.0,
            "--state-dir",
            state.path().to_str().unwrap(),
        ]);
        let t = text(&o);
        assert_ne!(o.status.code(), Some(0), "{what}: agent: {t}");
        let l = ns.nft(&["list", "ruleset"]);
        assert!(
            String::from_utf8_lossy(&l.stdout).trim().is_empty(),
            "{what}: the namespace got rules: {}",
            String::from_utf8_lossy(&l.stdout)
        );
        assert!(
            !state.path().join("current.plan").exists(),
            "{what}: a plan was recorded"
        );
    }
}

#[test]
fn lab_names_cannot_leave_the_lab_directory() {
    for name in ["../..", "a/b", "..", ".hidden", "a\nb"] {
        let o = rampart(&["lab", "down", "--name", name]);
        let t = text(&o);
        assert_ne!(o.status.code(), Some(0), "{name:?}: {t}");
        assert!(t.contains("bad lab name"), "{name:?}: {t}");
        assert!(!t.contains("a\nb"), "{name:?}: {t}");
    }
}

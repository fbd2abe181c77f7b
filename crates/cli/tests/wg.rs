//! `rampart wg ...` and the WireGuard part of `rampart check`, through the
//! built binary, on sites in temporary directories.

use rampart_wg::PrivateKey;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn rampart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("run rampart")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// `wg pubkey` of a private key text, by the real tool.
fn wg_pubkey(private: &str) -> String {
    let mut c = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wg is installed");
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{private}\n").as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

struct Site {
    dir: tempfile::TempDir,
    /// Private keys of the other participants (b, c, phone), to prove they
    /// never show up either.
    secrets: Vec<String>,
}

impl Site {
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn site(&self) -> String {
        self.dir.path().join("site").to_str().unwrap().to_string()
    }
    fn keys(&self, node: &str) -> String {
        self.dir
            .path()
            .join(format!("keys-{node}"))
            .to_str()
            .unwrap()
            .to_string()
    }
    fn toml(&self) -> String {
        fs::read_to_string(self.dir.path().join("site/site.toml")).unwrap()
    }
    /// Every byte a user could see: the site files.
    fn all_site_text(&self) -> String {
        let mut s = String::new();
        for e in fs::read_dir(self.dir.path().join("site")).unwrap() {
            s.push_str(&fs::read_to_string(e.unwrap().path()).unwrap_or_default());
        }
        s
    }
}

const PLACEHOLDER: &str = "\"...\"";

/// Three nodes in a mesh `core`, a hub `mgmt` on `a`, a road warrior
/// `phone` through `a`. `a`'s keys are placeholders until enrolled.
fn site() -> Site {
    let kb = PrivateKey::generate();
    let kc = PrivateKey::generate();
    let kp = PrivateKey::generate();
    let text = format!(
        r#"# the test site
[[node]]
name = "a"
endpoint = "203.0.113.1"
bridges = {{ vmbr0 = ["10.20.0.1/24"] }}

[[node]]
name = "b"
endpoint = "203.0.113.2"

[[node]]
name   = "c"     # odd spacing, kept
endpoint = "203.0.113.3"

[[wireguard]]
name = "core"
interface = "wg0"
pool = ["10.0.0.0/24"]
listen_port = 51820

[[wireguard.member]]
name = "a"
public_key = {PLACEHOLDER}   # filled in by `rampart wg enroll`
address = ["10.0.0.1"]

[[wireguard.member]]
name = "b"
public_key = "{b}"

[[wireguard.member]]
name = "c"
public_key = '{c}'

[[client]]
network = "core"
name = "phone"
public_key = "{p}"
via = ["a"]

[[wireguard]]
name = "mgmt"
interface = "wg-mgmt"
pool = ["10.8.0.0/24"]
listen_port = 51821
topology = "hub"
gateways = ["a"]
member = [
  {{ name = "a", public_key = {PLACEHOLDER}, address = ["10.8.0.1"] }},
  {{ name = "b", public_key = "{b}" }},
]
"#,
        b = kb.public_key(),
        c = kc.public_key(),
        p = kp.public_key(),
    );
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("site")).unwrap();
    fs::write(dir.path().join("site/site.toml"), text).unwrap();
    Site {
        dir,
        secrets: vec![kb.expose_base64(), kc.expose_base64(), kp.expose_base64()],
    }
}

fn read_key(dir: &str, name: &str) -> String {
    fs::read_to_string(Path::new(dir).join(name))
        .unwrap()
        .trim()
        .to_string()
}

fn assert_secret_absent(secret: &str, o: &Output, s: &Site) {
    assert!(!out(o).contains(secret), "private key on stdout");
    assert!(!err(o).contains(secret), "private key on stderr");
    assert!(
        !s.all_site_text().contains(secret),
        "private key in the site"
    );
}

#[test]
fn enroll_makes_a_private_store_and_edits_only_the_public_key_lines() {
    let s = site();
    let before = s.toml();
    let keys = s.keys("a");
    let o = rampart(&["wg", "enroll", &s.site(), "--node", "a", "--keys", &keys]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));

    // The store: 0700, one 0600 key per network `a` is in.
    assert_eq!(mode(Path::new(&keys)), 0o700);
    for f in ["core.key", "mgmt.key"] {
        assert_eq!(mode(&Path::new(&keys).join(f)), 0o600, "{f}");
    }
    let core = read_key(&keys, "core.key");
    let mgmt = read_key(&keys, "mgmt.key");

    // stdout: the public keys only, one per network, as `wg pubkey` computes them.
    let (pc, pm) = (wg_pubkey(&core), wg_pubkey(&mgmt));
    assert_eq!(out(&o), format!("{pc}\n{pm}\n"));
    for secret in [&core, &mgmt] {
        assert_secret_absent(secret, &o, &s);
    }

    // site.toml: only the two placeholder lines changed, and on them only the key.
    let after = s.toml();
    let (bl, al): (Vec<&str>, Vec<&str>) =
        (before.split('\n').collect(), after.split('\n').collect());
    assert_eq!(bl.len(), al.len());
    let mut changed = Vec::new();
    for (x, y) in bl.iter().zip(&al) {
        if x != y {
            changed.push((*x, *y));
        }
    }
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(
        changed[0].1,
        format!("public_key = \"{pc}\"   # filled in by `rampart wg enroll`")
    );
    assert_eq!(
        changed[0].0.replace(PLACEHOLDER, &format!("\"{pc}\"")),
        changed[0].1
    );
    assert_eq!(
        changed[1].0.replace(PLACEHOLDER, &format!("\"{pm}\"")),
        changed[1].1
    );

    // Again: same keys, nothing rewritten.
    let o2 = rampart(&["wg", "enroll", &s.site(), "--node", "a", "--keys", &keys]);
    assert_eq!(o2.status.code(), Some(0), "{}", err(&o2));
    assert_eq!(out(&o2), out(&o));
    assert_eq!(s.toml(), after);
    assert_eq!(read_key(&keys, "core.key"), core);
    assert_eq!(
        fs::read_dir(&keys).unwrap().count(),
        2,
        "no temporaries left"
    );

    // The site now checks clean.
    let c = rampart(&["check", &s.site()]);
    assert_eq!(c.status.code(), Some(0), "{}{}", out(&c), err(&c));
}

#[test]
fn enroll_of_a_node_in_no_network_is_a_usage_error() {
    let s = site();
    let before = s.toml();
    let o = rampart(&[
        "wg",
        "enroll",
        &s.site(),
        "--node",
        "zz",
        "--keys",
        &s.keys("zz"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("`zz` is a member of no `[[wireguard]]` network"),
        "{}",
        err(&o)
    );
    assert!(
        !Path::new(&s.keys("zz")).exists(),
        "no key made for nothing"
    );
    assert_eq!(s.toml(), before);
}

#[test]
fn enroll_refuses_a_store_open_to_others() {
    let s = site();
    let keys = s.keys("a");
    fs::create_dir(&keys).unwrap();
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o755)).unwrap();
    let before = s.toml();
    let o = rampart(&["wg", "enroll", &s.site(), "--node", "a", "--keys", &keys]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("E0616"), "{}", err(&o));
    assert_eq!(s.toml(), before);
    assert_eq!(fs::read_dir(&keys).unwrap().count(), 0);
}

fn enrolled() -> Site {
    let s = site();
    let o = rampart(&[
        "wg",
        "enroll",
        &s.site(),
        "--node",
        "a",
        "--keys",
        &s.keys("a"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    s
}

/// `[section]` / `Key = value` lines of a wg-quick config.
fn parse_conf(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut secs: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            secs.push((name.to_string(), Vec::new()));
            continue;
        }
        let (k, v) = line
            .split_once(" = ")
            .unwrap_or_else(|| panic!("not `Key = value`: {line}"));
        secs.last_mut()
            .expect("a line before any section")
            .1
            .push((k.into(), v.into()));
    }
    secs
}

fn get<'a>(sec: &'a [(String, String)], key: &str) -> Option<&'a str> {
    sec.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[test]
fn client_config_with_a_generated_key_matches_wg_pubkey_and_the_site() {
    let s = enrolled();
    let o = rampart(&["wg", "client", &s.site(), "phone", "--generate-key"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let conf = parse_conf(&out(&o));
    assert_eq!(conf[0].0, "Interface");
    let addr = get(&conf[0].1, "Address").unwrap();
    assert!(
        addr.starts_with("10.0.0.") && addr.ends_with("/24"),
        "{addr}"
    );
    let private = get(&conf[0].1, "PrivateKey")
        .expect("PrivateKey line")
        .to_string();
    let public = wg_pubkey(&private);
    // The site now holds the matching public key for the client (and was
    // told so on stderr), never the private one.
    assert!(
        s.toml().contains(&format!("public_key = \"{public}\"")),
        "{}",
        s.toml()
    );
    assert!(err(&o).contains(&public));
    assert!(!s.all_site_text().contains(&private));
    assert!(!err(&o).contains(&private));
    // One peer: `a`, with its endpoint, its enrolled key and the pool.
    assert_eq!(conf.len(), 2);
    assert_eq!(conf[1].0, "Peer");
    let a_core = wg_pubkey(&read_key(&s.keys("a"), "core.key"));
    assert_eq!(get(&conf[1].1, "PublicKey"), Some(a_core.as_str()));
    assert_eq!(get(&conf[1].1, "Endpoint"), Some("203.0.113.1:51820"));
    assert_eq!(
        get(&conf[1].1, "AllowedIPs"),
        Some("10.0.0.1/32, 10.0.0.0/24")
    );
    assert_eq!(get(&conf[1].1, "PersistentKeepalive"), Some("25"));

    // `--key FILE` with that same key gives the same config.
    let kf = s.path().join("phone.key");
    fs::write(&kf, format!("{private}\n")).unwrap();
    let o2 = rampart(&[
        "wg",
        "client",
        &s.site(),
        "phone",
        "--key",
        kf.to_str().unwrap(),
    ]);
    assert_eq!(o2.status.code(), Some(0), "{}", err(&o2));
    assert_eq!(out(&o2), out(&o));
}

#[test]
fn client_config_without_a_key_says_which_key_to_insert() {
    let s = enrolled();
    let o = rampart(&["wg", "client", &s.site(), "phone"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = out(&o);
    assert!(!text.lines().any(|l| l.starts_with("PrivateKey")), "{text}");
    let site_key = s
        .toml()
        .lines()
        .skip_while(|l| !l.contains("name = \"phone\""))
        .find_map(|l| {
            l.strip_prefix("public_key = \"")
                .map(|k| k.trim_end_matches('"').to_string())
        })
        .unwrap();
    let hint = text
        .lines()
        .find(|l| l.starts_with("# PrivateKey"))
        .expect("placeholder line");
    assert!(hint.contains("phone") && hint.contains(&site_key), "{hint}");
    for secret in &s.secrets {
        assert_secret_absent(secret, &o, &s);
    }

    // A key that is not the client's is refused, without echoing it.
    let other = PrivateKey::generate().expose_base64();
    let kf = s.path().join("wrong.key");
    fs::write(&kf, &other).unwrap();
    let o = rampart(&[
        "wg",
        "client",
        &s.site(),
        "phone",
        "--key",
        kf.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains(&site_key), "{}", err(&o));
    assert!(!out(&o).contains(&other) && !err(&o).contains(&other));
}

#[test]
fn client_png_is_a_0600_png_and_qr_prints_a_code() {
    let s = enrolled();
    let png = s.path().join("phone.png");
    let o = rampart(&[
        "wg",
        "client",
        &s.site(),
        "phone",
        "--generate-key",
        "--png",
        png.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let bytes = fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(mode(&png), 0o600);
    // The PNG holds the private key: it is not also printed.
    assert!(!out(&o).contains("PrivateKey"), "{}", out(&o));

    let o = rampart(&["wg", "client", &s.site(), "phone", "--qr"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let q = out(&o);
    assert!(q.lines().count() > 20 && q.contains('█'), "{q}");
    assert!(!q.contains("[Peer]"));
}

#[test]
fn rotate_then_promote_changes_the_published_key() {
    let s = enrolled();
    let keys = s.keys("a");
    let old = read_key(&keys, "core.key");
    let old_pub = wg_pubkey(&old);
    assert!(s.toml().contains(&old_pub));

    // Promote before any rotation: refused.
    let o = rampart(&[
        "wg",
        "rotate",
        &s.site(),
        "--node",
        "a",
        "--keys",
        &keys,
        "--promote",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("no rotation under way"), "{}", err(&o));

    let o = rampart(&["wg", "rotate", &s.site(), "--node", "a", "--keys", &keys]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let next = read_key(&keys, "core.next.key");
    let next_pub = wg_pubkey(&next);
    assert_eq!(mode(&Path::new(&keys).join("core.next.key")), 0o600);
    assert_eq!(
        read_key(&keys, "core.key"),
        old,
        "current key kept until promoted"
    );
    assert!(s.toml().contains(&next_pub) && !s.toml().contains(&old_pub));
    let text = out(&o);
    assert!(
        text.contains("step 1 of 2") && text.contains("--promote"),
        "{text}"
    );
    assert!(text.contains("apply it on every peer"), "{text}");
    assert!(text.contains(&next_pub));
    for secret in [&old, &next] {
        assert_secret_absent(secret, &o, &s);
    }

    let o = rampart(&[
        "wg",
        "rotate",
        &s.site(),
        "--node",
        "a",
        "--keys",
        &keys,
        "--promote",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("step 2 of 2"));
    assert!(out(&o).contains("wg set wg0 private-key"), "{}", out(&o));
    assert_eq!(read_key(&keys, "core.key"), next);
    assert!(!Path::new(&keys).join("core.next.key").exists());
    // Enroll now reports the new key and changes nothing.
    let before = s.toml();
    let o = rampart(&["wg", "enroll", &s.site(), "--node", "a", "--keys", &keys]);
    assert!(out(&o).starts_with(&format!("{next_pub}\n")));
    assert_eq!(s.toml(), before);
}

#[test]
fn promote_refuses_a_next_key_the_site_does_not_publish() {
    let s = enrolled();
    let keys = s.keys("a");
    let o = rampart(&["wg", "rotate", &s.site(), "--node", "a", "--keys", &keys]);
    assert_eq!(o.status.code(), Some(0));
    let next_pub = wg_pubkey(&read_key(&keys, "core.next.key"));
    let old_pub = wg_pubkey(&read_key(&keys, "core.key"));
    // Someone reverts the site before the peers learnt the new key.
    let p = s.path().join("site/site.toml");
    fs::write(&p, s.toml().replace(&next_pub, &old_pub)).unwrap();
    let o = rampart(&[
        "wg",
        "rotate",
        &s.site(),
        "--node",
        "a",
        "--keys",
        &keys,
        "--promote",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("does not publish the next key"),
        "{}",
        err(&o)
    );
    assert_eq!(wg_pubkey(&read_key(&keys, "core.key")), old_pub);
}

#[test]
fn show_prints_the_plan_without_private_material() {
    let s = enrolled();
    let a_core = wg_pubkey(&read_key(&s.keys("a"), "core.key"));
    let o = rampart(&["wg", "show", &s.site(), "--node", "b"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let t = out(&o);
    assert!(
        t.starts_with("b: interface: wg0 (network core, member)\n"),
        "{t}"
    );
    assert!(t.contains("  listening port: 51820\n"), "{t}");
    assert!(
        t.contains(&format!(
            "  peer: {a_core} (a)\n    endpoint: 203.0.113.1:51820\n"
        )),
        "{t}"
    );
    // b reaches the phone through a: a's /32 and the phone's on that peer.
    let phone = out(&rampart(&["wg", "show", &s.site(), "--node", "phone"]));
    let phone_addr = phone
        .lines()
        .find_map(|l| l.strip_prefix("  address: "))
        .unwrap()
        .trim_end_matches("/24")
        .to_string();
    assert!(
        t.contains(&format!("    allowed ips: 10.0.0.1/32, {phone_addr}/32\n")),
        "{t}"
    );
    assert!(
        t.contains("b: interface: wg-mgmt (network mgmt, member)"),
        "{t}"
    );
    assert!(t.contains("10.8.0.0/24 dev wg-mgmt (connected)"), "{t}");
    assert!(t.contains(" (c)\n    endpoint: 203.0.113.3:51820\n"), "{t}");
    for secret in s
        .secrets
        .iter()
        .chain([&read_key(&s.keys("a"), "core.key")])
    {
        assert_secret_absent(secret, &o, &s);
    }
    // Every interface without --node: a, b, c and the phone.
    let all = out(&rampart(&["wg", "show", &s.site()]));
    for owner in ["a: ", "b: ", "c: ", "phone: "] {
        assert!(
            all.contains(&format!("{owner}interface:")),
            "{owner}: {all}"
        );
    }
}

#[test]
fn wireguard_diagnostics_render_like_rustc_and_exit_1() {
    let s = enrolled();
    let p = s.path().join("site/site.toml");
    fs::write(
        &p,
        s.toml()
            .replace("interface = \"wg0\"", "interface = \"wg0-much-too-long\""),
    )
    .unwrap();
    let line = s
        .toml()
        .lines()
        .position(|l| l.contains("wg0-much"))
        .unwrap()
        + 1;
    for args in [vec!["wg", "show"], vec!["check"]] {
        let mut a = args.clone();
        let site = s.site();
        a.push(&site);
        let o = rampart(&a);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        let e = err(&o);
        assert!(
            e.contains("error[E0610]: invalid interface name `wg0-much-too-long`"),
            "{e}"
        );
        assert!(e.contains(&format!("--> site.toml:{line}:13")), "{e}");
        assert!(e.contains("^^^^^^^^^^^^^^^^^^^"), "{e}");
    }
}

#[test]
fn check_fails_on_a_private_key_in_the_site_naming_line_and_column() {
    let s = enrolled();
    let secret = PrivateKey::generate().expose_base64();
    let p = s.path().join("site/site.toml");
    let text = s.toml().replace(
        "name = \"b\"\npublic_key",
        &format!("name = \"b\"\n  private_key = \"{secret}\"\npublic_key"),
    );
    fs::write(&p, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains("private_key"))
        .unwrap()
        + 1;
    // And one in a file rampart does not otherwise read.
    fs::write(
        s.path().join("site/wg0.conf"),
        format!("[Interface]\nPrivateKey = {secret}\n"),
    )
    .unwrap();
    let o = rampart(&["check", &s.site()]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let e = err(&o);
    assert!(
        e.contains("error[E0602]: private key `private_key` in the site files"),
        "{e}"
    );
    assert!(e.contains(&format!("--> site.toml:{line}:3")), "{e}");
    assert!(
        e.contains("error[E0602]: private key `PrivateKey` in the site files"),
        "{e}"
    );
    assert!(e.contains("--> wg0.conf:2:1"), "{e}");
    assert!(e.contains("private_key = <redacted>"), "{e}");
    assert!(
        !e.contains(&secret) && !out(&o).contains(&secret),
        "the secret is printed: {e}"
    );

    // JSON output carries the same places.
    let o = rampart(&["check", &s.site(), "--format", "json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hits: Vec<_> = j["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"] == "E0602")
        .map(|d| {
            (
                d["file"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(
        hits.contains(&("site.toml".into(), line as u64)),
        "{hits:?}"
    );
    assert!(hits.contains(&("wg0.conf".into(), 2)), "{hits:?}");
    assert!(!out(&o).contains(&secret));
}

#[test]
fn check_reports_an_unreadable_site_toml_once() {
    let s = enrolled();
    let p = s.path().join("site/site.toml");
    fs::write(&p, format!("{}\n[[wireguard]\n", s.toml())).unwrap();
    let o = rampart(&["check", &s.site()]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(err(&o).matches("error[E0123]").count(), 1, "{}", err(&o));
}

#[test]
fn check_of_a_site_without_wireguard_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("site.toml"),
        "[[node]]\nname = \"hv1\"\nbridges = { vmbr0 = [\"192.0.2.10/24\"] }\n",
    )
    .unwrap();
    fs::write(dir.path().join("README"), "psk: see the wiki\n").unwrap();
    fs::create_dir(dir.path().join("firewall")).unwrap();
    fs::write(
        dir.path().join("firewall/cluster.fw"),
        "[OPTIONS]\nenable: 1\n",
    )
    .unwrap();
    let o = rampart(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).is_empty(), "{}", err(&o));
}

#[test]
fn generate_key_leaves_the_site_alone_when_no_config_can_be_made() {
    let s = enrolled();
    let p = s.path().join("site/site.toml");
    fs::write(
        &p,
        s.toml().replace(
            "network = \"core\"\nname = \"phone\"",
            "network = \"nope\"\nname = \"phone\"",
        ),
    )
    .unwrap();
    let before = s.toml();
    let o = rampart(&["wg", "client", &s.site(), "phone", "--generate-key"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(
        err(&o).contains("no `[[wireguard]]` network named `nope`"),
        "{}",
        err(&o)
    );
    assert!(out(&o).is_empty(), "{}", out(&o));
    assert_eq!(s.toml(), before, "the site must not name a key nobody has");
}

#[test]
fn enroll_adds_a_missing_public_key() {
    let s = site();
    let p = s.path().join("site/site.toml");
    let text = s
        .toml()
        .replace(
            "public_key = \"...\"   # filled in by `rampart wg enroll`\n",
            "",
        )
        .replace(
            "{ name = \"a\", public_key = \"...\", address",
            "{ name = \"a\", address",
        );
    assert!(!text.contains("\"...\""));
    fs::write(&p, &text).unwrap();
    let keys = s.keys("a");
    let o = rampart(&["wg", "enroll", &s.site(), "--node", "a", "--keys", &keys]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let (pc, pm) = (
        wg_pubkey(&read_key(&keys, "core.key")),
        wg_pubkey(&read_key(&keys, "mgmt.key")),
    );
    let after = s.toml();
    assert!(after.contains(&format!("public_key = \"{pc}\"")), "{after}");
    assert!(after.contains(&format!("public_key = \"{pm}\"")), "{after}");
    let c = rampart(&["check", &s.site()]);
    assert_eq!(c.status.code(), Some(0), "{}", err(&c));
}

//! `rampart verify`, `rampart allowlist`, and the verify gate of `apply`
//! and `push`, through the built binary, on the labs and broken copies.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn lab(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../labs")
        .join(name)
}

fn copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy(&p, &t);
        } else {
            fs::copy(&p, &t).unwrap();
        }
    }
}

/// A copy of lab 002 whose host1 no longer admits GitLab over the VPN.
fn broken() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    copy(&lab("wireguard-private-cluster"), d.path());
    let hf = d.path().join("nodes/host1/host.fw");
    let t = fs::read_to_string(&hf)
        .unwrap()
        .replace("IN HTTPS(ACCEPT)", "|IN HTTPS(ACCEPT)");
    fs::write(&hf, t).unwrap();
    d
}

#[test]
fn verify_prints_the_matrix_and_exits_0() {
    let o = rampart(&["verify", lab("wireguard-private-cluster").to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    let t = out(&o);
    assert!(t.lines().next().unwrap().contains("intent"), "{t}");
    assert!(t.contains("desktop -wg0-> host1 -wg0-> host2"), "{t}");
    assert!(t.contains("0 missed"), "{t}");
}

#[test]
fn verify_json_has_every_row_with_its_probe() {
    let o = rampart(&[
        "verify",
        lab("wireguard-private-cluster").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["missed"], 0);
    let rows = v["rows"].as_array().unwrap();
    let g = rows.iter().find(|r| r["intent"] == "gitlab").unwrap();
    assert_eq!(g["probe"]["from"], "desktop");
    assert_eq!(g["probe"]["dest"], "10.0.0.2");
    assert_eq!(g["probe"]["proto"], "tcp");
    assert_eq!(g["probe"]["dport"], 443);
    assert_eq!(g["decided_by"]["origin"], "host.fw:6");
}

#[test]
fn a_miss_exits_1_naming_the_intent_line_and_the_rule() {
    let d = broken();
    let o = rampart(&["verify", d.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("MISS  gitlab "), "{}", out(&o));
    let e = err(&o);
    assert!(e.contains("error[E0506]: intent `gitlab`"), "{e}");
    assert!(e.contains("site.toml:116"), "{e}");
    assert!(e.contains("auto:policy_in REJECT"), "{e}");
}

#[test]
fn apply_and_push_refuse_on_a_miss_before_touching_anything() {
    let d = broken();
    let o = rampart(&["apply", d.path().to_str().unwrap(), "--node", "host1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("apply refused"), "{}", err(&o));
    // push refuses before connecting (no etcd listens there).
    let o = rampart(&[
        "push",
        d.path().to_str().unwrap(),
        "--etcd",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("push refused"), "{}", err(&o));
}

#[test]
fn allowlist_prints_the_nginx_block() {
    let o = rampart(&[
        "allowlist",
        lab("wireguard-private-cluster").to_str().unwrap(),
        "--service",
        "gitlab",
        "--allow",
        "172.16.0.0/12",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let t = out(&o);
    assert!(t.contains("allow 10.0.0.0/24;"), "{t}");
    assert!(t.contains("allow 172.16.0.0/12;"), "{t}");
    assert!(t.trim_end().ends_with("deny all;"), "{t}");
    let o = rampart(&[
        "allowlist",
        lab("wireguard-private-cluster").to_str().unwrap(),
        "--service",
        "nope",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("no intent named `nope`"), "{}", err(&o));
}

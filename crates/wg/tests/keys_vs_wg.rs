//! Our keys against the real `wg genkey` / `wg pubkey`.
use rampart_wg::{PrivateKey, PublicKey};
use std::io::Write;
use std::process::{Command, Stdio};

fn wg(args: &[&str], input: Option<&str>) -> String {
    let mut c = Command::new("wg")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the `wg` tool is installed (wireguard-tools)");
    if let Some(i) = input {
        c.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    } else {
        drop(c.stdin.take());
    }
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "wg {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn our_pubkey_of_a_wg_genkey_key_equals_wg_pubkey() {
    for _ in 0..5 {
        let private = wg(&["genkey"], None);
        let theirs = wg(&["pubkey"], Some(&format!("{private}\n")));
        let ours = PrivateKey::parse(&private).unwrap().public_key();
        assert_eq!(ours.to_base64(), theirs);
        assert_eq!(PublicKey::parse(&theirs).unwrap(), ours);
    }
}

#[test]
fn wg_pubkey_of_our_key_equals_our_pubkey() {
    for _ in 0..5 {
        let k = PrivateKey::generate();
        let theirs = wg(&["pubkey"], Some(&format!("{}\n", k.expose_base64())));
        assert_eq!(theirs, k.public_key().to_base64());
    }
}

#[test]
fn wg_accepts_our_preshared_keys_and_we_accept_wg_genpsk() {
    let psk = wg(&["genpsk"], None);
    assert!(rampart_wg::PresharedKey::parse(&psk).is_ok());
}

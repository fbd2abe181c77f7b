//! The compiled ruleset of a WireGuard node, applied for real in a network
//! namespace the test creates: a UDP datagram to the listen port from a
//! known peer's endpoint gets an answer, the same datagram from a stranger
//! does not (policy_in DROP). Needs root; nothing outside the test's own
//! namespaces is touched.

use rampart_lab::netns::{unique_prefix, Netns};
use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;
use common::is_root;

/// Run `f` on a thread that has entered namespace `ns` (network namespaces
/// are per thread; sockets made there stay in it).
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = File::open(&path).expect("netns file");
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
}

/// Send "ping" from `src` to `dst`; the answer, if any within a second.
fn ask(ns: &str, src: &str, dst: &str) -> Option<String> {
    let src: SocketAddr = format!("{src}:0").parse().unwrap();
    let dst: SocketAddr = dst.parse().unwrap();
    in_ns(ns, move || {
        let s = UdpSocket::bind(src).expect("bind client");
        s.set_read_timeout(Some(Duration::from_millis(1000)))
            .unwrap();
        s.send_to(b"ping", dst).expect("send");
        let mut buf = [0u8; 64];
        s.recv_from(&mut buf)
            .ok()
            .map(|(n, _)| String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .join()
    .unwrap()
}

#[test]
fn listen_port_answers_a_peer_and_not_a_stranger() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wg-mesh");
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(["compile", fx.to_str().unwrap(), "--node", "host3", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ruleset = std::fs::read_to_string(out.path().join("host3/ruleset.nft")).unwrap();

    let p = unique_prefix();
    let node = Netns::create(&format!("{p}wgn")).unwrap();
    let peer = Netns::create(&format!("{p}wgp")).unwrap();
    node.ip_batch(&[
        format!("link add vn type veth peer name vp netns {}", peer.name()),
        "addr add 203.0.113.3/24 dev vn".into(),
        "link set vn up".into(),
    ])
    .unwrap();
    peer.ip_batch(&[
        "addr add 203.0.113.1/24 dev vp".into(),
        "addr add 203.0.113.66/24 dev vp".into(),
        "link set vp up".into(),
    ])
    .unwrap();

    // The responder on host3's listen port, in the node's namespace.
    let (tx, rx) = std::sync::mpsc::channel();
    let _responder = in_ns(node.name(), move || {
        let s = UdpSocket::bind("0.0.0.0:51830").expect("bind responder");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        // Answer for a while, then end (the namespace goes with the test).
        for _ in 0..50 {
            if let Ok((n, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(&buf[..n].to_ascii_uppercase(), from);
            }
        }
    });
    rx.recv().unwrap();

    // Without the ruleset both get through (the setup itself works).
    assert_eq!(
        ask(peer.name(), "203.0.113.66", "203.0.113.3:51830").as_deref(),
        Some("PING")
    );
    node.exec(&["nft", "-f", "-"], Some(&ruleset)).unwrap();
    assert_eq!(
        ask(peer.name(), "203.0.113.1", "203.0.113.3:51830").as_deref(),
        Some("PING"),
        "host1's endpoint must reach host3's listen port"
    );
    assert_eq!(
        ask(peer.name(), "203.0.113.66", "203.0.113.3:51830"),
        None,
        "a stranger must not reach the listen port"
    );
}

//! Two namespaces each run their own wireguard-go `wg0` (the control
//! socket directory /var/run/wireguard is made private per namespace) and
//! talk through the tunnel.

use rampart_lab::netns::{self, Netns};
use std::process::Command;

fn ok(c: &mut Command, stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn wg(ns: &Netns, args: &[&str]) -> String {
    let mut c = ns.wg("wg").unwrap();
    c.args(args);
    ok(&mut c, None)
}

#[test]
fn two_namespaces_each_run_their_own_wg0() {
    let prefix = netns::unique_prefix();
    let a = Netns::create(&format!("{prefix}wga")).unwrap();
    let b = Netns::create(&format!("{prefix}wgb")).unwrap();
    a.ip_batch(&[
        format!("link add eth0 type veth peer name eth0 netns {}", b.name()),
        "addr add 10.77.0.1/24 dev eth0".into(),
        "link set eth0 up".into(),
    ])
    .unwrap();
    b.ip_batch(&[
        "addr add 10.77.0.2/24 dev eth0".into(),
        "link set eth0 up".into(),
    ])
    .unwrap();

    for ns in [&a, &b] {
        let mut c = ns.wg("wireguard-go").unwrap();
        c.env("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")
            .arg("wg0");
        ok(&mut c, None);
    }
    let keys: Vec<(String, String)> = (0..2)
        .map(|_| {
            let private = ok(a.command("wg").arg("genkey"), None);
            let public = ok(a.command("wg").arg("pubkey"), Some(&private));
            (private, public)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    for (i, (ns, port, addr, peer_ip, peer_port)) in [
        (&a, "51820", "10.9.0.1/24", "10.77.0.2", "51821"),
        (&b, "51821", "10.9.0.2/24", "10.77.0.1", "51820"),
    ]
    .into_iter()
    .enumerate()
    {
        let key = dir.path().join(format!("k{i}"));
        std::fs::write(&key, &keys[i].0).unwrap();
        let peer = &keys[1 - i].1;
        wg(
            ns,
            &[
                "set",
                "wg0",
                "listen-port",
                port,
                "private-key",
                key.to_str().unwrap(),
                "peer",
                peer,
                "endpoint",
                &format!("{peer_ip}:{peer_port}"),
                "allowed-ips",
                "10.9.0.0/24",
            ],
        );
        ns.ip_batch(&[format!("addr add {addr} dev wg0"), "link set wg0 up".into()])
            .unwrap();
    }
    // Each namespace sees its own wg0.
    assert_eq!(wg(&a, &["show", "wg0", "listen-port"]), "51820");
    assert_eq!(wg(&b, &["show", "wg0", "listen-port"]), "51821");
    assert_eq!(wg(&a, &["show", "wg0", "public-key"]), keys[0].1);
    assert_eq!(wg(&b, &["show", "wg0", "public-key"]), keys[1].1);
    // Nothing lands in the shared directory.
    assert!(
        !std::path::Path::new("/var/run/wireguard/wg0.sock").exists(),
        "a socket leaked into /var/run/wireguard"
    );
    // And the tunnel carries traffic.
    let ping = ok(
        a.command(env!("CARGO_BIN_EXE_rampart-probe")).args([
            "send",
            "--timeout-ms",
            "3000",
            "icmp,10.9.0.1,10.9.0.2,0,0,8,0,1",
        ]),
        None,
    );
    assert!(ping.starts_with("0 ACCEPT"), "{ping}");
    let tcp = ok(
        b.command(env!("CARGO_BIN_EXE_rampart-probe")).args([
            "send",
            "--timeout-ms",
            "3000",
            "tcp,10.9.0.2,10.9.0.1,0,9,0,0,0",
        ]),
        None,
    );
    assert!(
        tcp.starts_with("0 REJECT"),
        "a closed port answers with a reset through the tunnel: {tcp}"
    );
    let hs = wg(&a, &["show", "wg0", "latest-handshakes"]);
    assert!(!hs.ends_with("\t0"), "no handshake: {hs}");

    let run_dir = std::path::Path::new(netns::WG_RUN_ROOT).join(a.name());
    drop(a);
    drop(b);
    assert!(!run_dir.exists());
    assert_eq!(netns::list(&prefix), Vec::<String>::new());
}

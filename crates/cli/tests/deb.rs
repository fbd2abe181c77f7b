//! The Debian package (scripts/deb.sh) holds every path an admin expects:
//! the binary, a man page per command, the completions where bash, zsh and
//! fish look for them, every contrib/*.service unit and the conffile.
//! (Installing it, `--version` and `systemd-analyze verify` run in .ci/run.)

use std::path::Path;
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

#[test]
fn the_package_lists_every_expected_path() {
    if Command::new("dpkg-deb").arg("--version").output().is_err() {
        eprintln!("skipped: no dpkg-deb");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let o = Command::new("bash")
        .arg(repo().join("scripts/deb.sh"))
        .args([
            "build",
            "--bin",
            env!("CARGO_BIN_EXE_rampart"),
            "--compress",
            "gzip",
        ])
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "deb.sh build: {stderr}");
    let deb = String::from_utf8(o.stdout)
        .unwrap()
        .trim()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    assert!(deb.ends_with(".deb") && Path::new(&deb).exists(), "{deb}");

    let c = Command::new("dpkg-deb")
        .args(["-c", &deb])
        .output()
        .unwrap();
    assert!(c.status.success());
    let listing = String::from_utf8_lossy(&c.stdout);
    // `-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/rampart`
    let entries: Vec<(&str, &str)> = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f[0], f.last()?.strip_prefix('.')?))
        })
        .collect();
    let mode = |path: &str| {
        entries
            .iter()
            .find(|(_, p)| *p == path)
            .map(|(m, _)| *m)
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"))
    };
    assert_eq!(mode("/usr/bin/rampart"), "-rwxr-xr-x");
    let mut expected = vec![
        "/usr/share/man/man1/rampart.1.gz".to_owned(),
        "/usr/share/man/man1/rampart-check.1.gz".into(),
        "/usr/share/man/man1/rampart-agent.1.gz".into(),
        "/usr/share/man/man1/rampart-wg-enroll.1.gz".into(),
        "/usr/share/bash-completion/completions/rampart".into(),
        "/usr/share/zsh/vendor-completions/_rampart".into(),
        "/usr/share/fish/vendor_completions.d/rampart.fish".into(),
        "/etc/default/rampart-agent".into(),
        "/usr/share/doc/rampart/copyright".into(),
    ];
    let mut units = 0;
    for e in std::fs::read_dir(repo().join("contrib")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".service") {
            units += 1;
            expected.push(format!("/lib/systemd/system/{name}"));
        }
    }
    assert!(units >= 1);
    for p in &expected {
        assert_eq!(mode(p), "-rw-r--r--", "{p}");
    }
    assert!(expected.contains(&"/lib/systemd/system/rampart-agent.service".to_owned()));
    // Directories as dpkg expects them (root included).
    for (m, p) in &entries {
        if m.starts_with('d') {
            assert_eq!(*m, "drwxr-xr-x", "{p}");
        }
    }

    // The default file is a conffile (kept on upgrade, asked about on change).
    let cf = Command::new("dpkg-deb")
        .args(["-I", &deb, "conffiles"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cf.stdout).trim(),
        "/etc/default/rampart-agent"
    );
    let f = |field: &str| {
        let o = Command::new("dpkg-deb")
            .args(["-f", &deb, field])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_owned()
    };
    assert_eq!(f("Package"), "rampart");
    assert_eq!(f("Version"), env!("CARGO_PKG_VERSION"));
    assert!(f("Depends").contains("libc6"), "{}", f("Depends"));
}

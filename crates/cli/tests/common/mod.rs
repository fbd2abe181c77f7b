//! Helpers shared by the CLI's integration tests.
#![allow(dead_code)] // each test file uses a different subset

use std::process::{Command, Output};

/// Running as root (namespace tests skip otherwise).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A network namespace made for one test, removed on drop (also on panic).
/// The name holds the test binary's pid, so parallel runs don't collide.
pub struct Ns(pub String);

impl Ns {
    pub fn new(tag: &str) -> Ns {
        let name = format!("rcli-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        Ns(name)
    }

    /// `nft ARGS` inside the namespace.
    pub fn nft(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// `rampart` as systemd starts it with its stderr in the journal: in a
/// private mount namespace where /run/systemd/journal is `journal_dir`
/// (where the test binds its `socket`), with stderr a file that
/// `JOURNAL_STREAM` names. Add the arguments and run it.
pub fn under_journald(journal_dir: &std::path::Path, stderr: &std::path::Path) -> Command {
    use std::os::unix::fs::MetadataExt;
    let err = std::fs::File::create(stderr).unwrap();
    let m = err.metadata().unwrap();
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(
            "mount -t tmpfs rampart-test /run/systemd && mkdir /run/systemd/journal \
             && mount --bind \"$0\" /run/systemd/journal && exec \"$@\"",
        )
        .arg(journal_dir)
        .arg(env!("CARGO_BIN_EXE_rampart"))
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .env("RAMPART_LOG", "info")
        .stderr(err);
    c
}

/// One datagram of the journal's native protocol as `KEY=value` strings:
/// `KEY=value\n`, or `KEY\n`, a little-endian u64 length, the value, `\n`.
pub fn journal_fields(mut d: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').expect("field ends");
        let line = &d[..nl];
        if line.contains(&b'=') {
            out.push(String::from_utf8_lossy(line).into_owned());
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let rest = &d[nl + 1..];
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let value = String::from_utf8_lossy(&rest[8..8 + len]);
            assert_eq!(rest[8 + len], b'\n');
            out.push(format!("{key}={value}"));
            d = &rest[9 + len..];
        }
    }
    out
}

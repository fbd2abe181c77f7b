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

//! Throwaway network namespaces for kernel tests: unique names, removed on
//! drop (also when the test fails).

#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct NetNs {
    pub name: String,
}

impl NetNs {
    /// Create `rampart-<tag>-<pid>-<n>`. Panics when namespaces cannot be
    /// made (these tests need root).
    pub fn new(tag: &str) -> NetNs {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("rt-{tag}-{}-{n}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(
            st.success(),
            "ip netns add {name} failed (kernel tests need root)"
        );
        let ns = NetNs { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Run a command inside the namespace.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .expect("run ip netns exec")
    }

    /// Run and require success.
    pub fn ok(&self, argv: &[&str]) -> String {
        let o = self.exec(argv);
        assert!(
            o.status.success(),
            "in {}: {:?} failed: {}{}",
            self.name,
            argv,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `nft -c -f` a script: Ok or the error text.
    pub fn nft_check(&self, script: &str) -> Result<(), String> {
        self.nft(&["-c"], script)
    }

    pub fn nft_load(&self, script: &str) -> Result<(), String> {
        self.nft(&[], script)
    }

    fn nft(&self, extra: &[&str], script: &str) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!(
            "{}-{}",
            self.name,
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&dir, script).unwrap();
        let path = dir.to_string_lossy().into_owned();
        let mut argv = vec!["nft"];
        argv.extend_from_slice(extra);
        argv.extend_from_slice(&["-f", &path]);
        let o = self.exec(&argv);
        let _ = std::fs::remove_file(&dir);
        if o.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

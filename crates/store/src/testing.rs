//! Test support: a real etcd-server on loopback (feature `testing`).
//!
//! ```no_run
//! let etcd = rampart_store::testing::Etcd::start();
//! let store = rampart_store::EtcdStore::connect([etcd.endpoint()], "/t").unwrap();
//! ```
//!
//! Each [`Etcd`] gets random free ports on 127.0.0.1 and its own data
//! directory; it is killed when dropped (also when the test panics). The
//! server runs under `setpriv --pdeathsig KILL`, so it also dies if the test
//! process is killed; note that the kernel sends that signal when the
//! *thread* that started it ends, so start it on the thread that owns it
//! (the test thread), not on a short-lived helper thread.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary: `$RAMPART_ETCD` or `/usr/bin/etcd`.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("RAMPART_ETCD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/etcd"))
}

/// A running (or stopped) single-member etcd for one test.
pub struct Etcd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    extra: Vec<String>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

impl Etcd {
    /// Start etcd and wait until it answers `/health` (panics after 20 s).
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Same, with extra etcd flags (e.g. `--max-txn-ops=1000`,
    /// `--quota-backend-bytes=...`).
    pub fn start_with_args(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rampart-etcd-")
            .tempdir()
            .expect("creating the etcd temp dir");
        let mut e = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        e.restart();
        e
    }

    /// `http://127.0.0.1:PORT`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The server's log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kill the server (SIGKILL) and wait for it. Data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A paused server still dies from SIGKILL.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freeze the server (SIGSTOP): like a network partition, connections
    /// stay open but nothing answers.
    pub fn pause(&mut self) {
        self.signal("STOP");
    }

    /// Undo [`pause`](Etcd::pause) (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("CONT");
    }

    fn signal(&mut self, sig: &str) {
        let pid = self.child.as_ref().expect("etcd is not running").id();
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .expect("running kill");
        assert!(st.success(), "kill -{sig} {pid} failed");
    }

    /// Start again on the same ports with the same data (after [`stop`]).
    ///
    /// [`stop`]: Etcd::stop
    pub fn restart(&mut self) {
        self.stop();
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the etcd log");
        let bin = etcd_binary();
        let mut cmd = if Path::new("/usr/bin/setpriv").exists() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.arg("--pdeathsig").arg("KILL").arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        cmd.arg("--name")
            .arg("rampart-test")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("rampart-test={peer}"))
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.healthy() {
                return;
            }
            if !self.is_running() {
                let log = self.log();
                self.stop();
                panic!("etcd exited during start-up; log:\n{log}");
            }
            if Instant::now() > deadline {
                let log = self.log();
                self.stop();
                panic!("etcd not healthy within 20 s; log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /health` answered with `"health":"true"`.
    pub fn healthy(&self) -> bool {
        let addr = ("127.0.0.1", self.client_port);
        let Ok(mut s) = TcpStream::connect(addr) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("\"health\":\"true\"")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

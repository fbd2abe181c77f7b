//! The etcd store against a real etcd-server (rampart_store::testing::Etcd).
//! Every test starts its own server on random loopback ports; every call is
//! bounded by timeouts, and the server is killed on drop.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_store::testing::Etcd;
use rampart_store::{
    EtcdOptions, EtcdStore, NodeStatus, RetryPolicy, SiteStore, SiteWatch, Snapshot,
};
use rampart_types::codes;
use rampart_types::files::SiteFiles;

fn site_a() -> SiteFiles {
    SiteFiles::new()
        .with("site.toml", "[site]\nname = \"a\"\n")
        .with("firewall/cluster.fw", "[OPTIONS]\nenable: 1\n")
        .with("nodes/hv1/host.fw", "[RULES]\nIN SSH(ACCEPT)\n")
        .with("firewall/100.fw", "[RULES]\nIN ACCEPT -p tcp -dport 80\n")
}

fn site_b() -> SiteFiles {
    // 100.fw removed, 101.fw added, cluster.fw changed, binary content too.
    SiteFiles::new()
        .with("site.toml", "[site]\nname = \"a\"\n")
        .with(
            "firewall/cluster.fw",
            "[OPTIONS]\nenable: 1\npolicy_in: DROP\n",
        )
        .with("nodes/hv1/host.fw", "[RULES]\nIN SSH(ACCEPT)\n")
        .with("firewall/101.fw", vec![0u8, 159, 146, 150])
}

fn opts(etcd: &Etcd, prefix: &str) -> EtcdOptions {
    let mut o = EtcdOptions::new([etcd.endpoint()], prefix);
    o.request_timeout = Duration::from_secs(2);
    o.connect_timeout = Duration::from_secs(1);
    o.retry = RetryPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
        factor: 2.0,
        jitter: 0.3,
    };
    o
}

fn store(etcd: &Etcd, prefix: &str) -> EtcdStore {
    EtcdStore::new(opts(etcd, prefix)).unwrap()
}

fn etcdctl(etcd: &Etcd, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(etcd.endpoint())
        .args(args)
        .output()
        .expect("etcdctl");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Next snapshot within `secs`, failing the test on timeout or error.
fn next_snapshot(w: &mut dyn SiteWatch, secs: u64) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no snapshot within {secs} s");
        match w.next(left) {
            Ok(Some(s)) => return s,
            Ok(None) => {}
            Err(e) if e.is_transient() => {}
            Err(e) => panic!("watch failed: {e}"),
        }
    }
}

#[test]
fn push_then_load_returns_identical_files() {
    let etcd = Etcd::start();
    let s = store(&etcd, "/rampart/t");
    let pushed = s.push(&site_a()).unwrap();
    let loaded = s.load().unwrap();
    assert_eq!(loaded.files, site_a());
    assert_eq!(loaded, pushed);
    assert_eq!(loaded.hash, rampart_store::content_hash(&site_a()));

    // Keys as documented.
    let keys = etcdctl(&etcd, &["get", "--prefix", "--keys-only", "/rampart/t/"]);
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(
        keys,
        [
            "/rampart/t/meta/revision",
            "/rampart/t/site/firewall/100.fw",
            "/rampart/t/site/firewall/cluster.fw",
            "/rampart/t/site/nodes/hv1/host.fw",
            "/rampart/t/site/site.toml",
        ]
    );

    // Pushing the same site again writes nothing.
    let again = s.push(&site_a()).unwrap();
    assert_eq!(again.revision, pushed.revision);

    // Another prefix is another site.
    let other = store(&etcd, "/rampart/other");
    let err = other.load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.message.contains("no site"), "{err}");
}

#[test]
fn second_push_removes_files_in_the_same_revision() {
    let etcd = Etcd::start();
    let s = store(&etcd, "/p");
    let a = s.push(&site_a()).unwrap();
    let b = s.push(&site_b()).unwrap();
    assert_ne!(a.revision, b.revision);
    assert_eq!(s.load().unwrap().files, site_b());
    // The old revision still reads as the complete old site, and the new one
    // as the complete new one: one transaction, one revision.
    assert_eq!(s.load_at(&a.revision).unwrap().files, site_a());
    assert_eq!(s.load_at(&b.revision).unwrap().files, site_b());
    let out = etcdctl(&etcd, &["get", "/p/site/firewall/100.fw"]);
    assert!(out.is_empty(), "removed file still stored: {out}");
    let rev_b: i64 = b.revision.parse().unwrap();
    let rev_a: i64 = a.revision.parse().unwrap();
    assert_eq!(
        rev_b,
        rev_a + 1,
        "the second push took more than one revision"
    );
}

#[test]
fn concurrent_readers_never_see_a_mix_of_two_sites() {
    let etcd = Etcd::start();
    let writer = store(&etcd, "/mix");
    writer.push(&site_a()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let reader = store(&etcd, "/mix");
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let (a, b) = (site_a(), site_b());
            let mut seen = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                // load() itself checks the manifest hash against the content.
                let snap = reader.load().expect("a consistent read");
                assert_eq!(snap.hash, rampart_store::content_hash(&snap.files));
                if snap.files == a {
                    seen.0 += 1;
                } else if snap.files == b {
                    seen.1 += 1;
                } else {
                    panic!("read a mix of two sites: {:?}", snap.files.files.keys());
                }
            }
            seen
        }));
    }
    for i in 0..60 {
        writer
            .push(&if i % 2 == 0 { site_b() } else { site_a() })
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let (a, b) = r.join().expect("reader");
        assert!(a + b > 0);
    }
}

#[test]
fn watch_sees_each_push_and_statuses_round_trip() {
    let etcd = Etcd::start();
    let s = store(&etcd, "/w");
    let first = s.push(&site_a()).unwrap();
    let mut w = s.watch(None).unwrap();
    assert_eq!(next_snapshot(&mut *w, 10), first);
    assert_eq!(w.next(Duration::from_millis(300)).unwrap(), None);

    // Status writes under the same prefix are not site changes.
    let st = NodeStatus {
        applied_revision: Some(first.revision.clone()),
        plan_hash: Some("plan-1".into()),
        errors: vec![],
        applied_at: Some(1_750_000_000),
        agent_version: "0.1.0".into(),
    };
    s.put_status("hv1", &st).unwrap();
    let bad = NodeStatus {
        errors: vec!["error[E0401]: unknown alias".into()],
        ..NodeStatus::default()
    };
    s.put_status("hv2", &bad).unwrap();
    assert_eq!(w.next(Duration::from_millis(300)).unwrap(), None);
    let all = store(&etcd, "/w").statuses().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["hv1"], st);
    assert_eq!(all["hv2"], bad);
    assert!(s.put_status("a/b", &st).is_err());

    for site in [site_b(), site_a(), site_b()] {
        let pushed = s.push(&site).unwrap();
        let seen = next_snapshot(&mut *w, 10);
        assert_eq!(seen, pushed);
        assert_eq!(seen.files, site);
    }
}

#[test]
fn watch_started_from_an_old_revision_catches_up() {
    let etcd = Etcd::start();
    let s = store(&etcd, "/c");
    let a = s.push(&site_a()).unwrap();
    let mut w = s.watch(Some(&a.revision)).unwrap();
    assert_eq!(w.next(Duration::from_millis(300)).unwrap(), None);
    // Two pushes while the agent was busy: it jumps to the newest.
    s.push(&site_b()).unwrap();
    let last = s.push(&site_b().with("extra.fw", "x")).unwrap();
    let got = next_snapshot(&mut *w, 10);
    assert_eq!(got, last);
}

#[test]
fn compacted_start_revision_falls_back_to_a_full_load() {
    let etcd = Etcd::start();
    let s = store(&etcd, "/k");
    let a = s.push(&site_a()).unwrap();
    s.push(&site_b()).unwrap();
    let c = s.push(&site_a().with("more.fw", "y")).unwrap();
    etcdctl(&etcd, &["compact", &c.revision]);
    // A watcher that last saw `a` (now compacted away) gets the current site.
    let mut w = s.watch(Some(&a.revision)).unwrap();
    let got = next_snapshot(&mut *w, 10);
    assert_eq!(got, c);
    // Reading a compacted revision is an error, not a partial site.
    assert!(s.load_at(&a.revision).is_err());
}

#[test]
fn hand_written_keys_are_detected_as_an_incomplete_site() {
    let etcd = Etcd::start();
    let s = store(&etcd, "/h");
    s.push(&site_a()).unwrap();
    etcdctl(&etcd, &["put", "/h/site/firewall/999.fw", "[RULES]"]);
    let err = s.load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.message.contains("incomplete"), "{err}");
    // A push repairs it (and deletes the stray key).
    s.push(&site_a()).unwrap();
    assert_eq!(s.load().unwrap().files, site_a());
}

#[test]
fn too_many_operations_for_one_transaction_are_refused_up_front() {
    let etcd = Etcd::start_with_args(&["--max-txn-ops=300"]);
    let mut big = SiteFiles::new();
    for i in 0..200 {
        big.insert(format!("firewall/{}.fw", 100 + i), "[RULES]\n");
    }
    let s = store(&etcd, "/big");
    let err = s.push(&big).unwrap_err();
    assert!(err.message.contains("--max-txn-ops"), "{err}");
    assert!(s.load().is_err(), "nothing was written");
    let mut o = opts(&etcd, "/big");
    o.max_txn_ops = 300;
    let s = EtcdStore::new(o).unwrap();
    s.push(&big).unwrap();
    assert_eq!(s.load().unwrap().files, big);
}

#[test]
fn etcd_down_is_unreachable_and_the_watch_resumes_after_restart() {
    let mut etcd = Etcd::start();
    let s = store(&etcd, "/down");
    s.push(&site_a()).unwrap();
    let mut w = s.watch(None).unwrap();
    let last_good = next_snapshot(&mut *w, 10);
    let kept = last_good.clone();

    etcd.stop();
    let t = Instant::now();
    let err = s.load().unwrap_err();
    assert_eq!(err.code, codes::STORE_UNREACHABLE, "{err}");
    assert!(err.to_string().contains("E0703"));
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "load took {:?}",
        t.elapsed()
    );
    assert_eq!(
        s.put_status("hv1", &NodeStatus::default())
            .unwrap_err()
            .code,
        codes::STORE_UNREACHABLE
    );
    assert!(s.push(&site_b()).unwrap_err().is_transient());
    // The watch reports the outage (after retrying within its timeout)...
    let t = Instant::now();
    let err = w.next(Duration::from_secs(2)).unwrap_err();
    assert_eq!(err.code, codes::STORE_UNREACHABLE, "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(6),
        "next took {:?}",
        t.elapsed()
    );
    // ...and the caller's last snapshot is untouched.
    assert_eq!(last_good, kept);

    etcd.restart();
    // Same data dir: the old site is still there; the next push is delivered.
    assert_eq!(s.load().unwrap().files, site_a());
    let pushed = store(&etcd, "/down").push(&site_b()).unwrap();
    let got = next_snapshot(&mut *w, 15);
    assert_eq!(got, pushed);
}

#[test]
fn a_watch_started_while_etcd_is_down_converges_when_it_comes_up() {
    let mut etcd = Etcd::start();
    let s = store(&etcd, "/late");
    let a = s.push(&site_a()).unwrap();
    etcd.stop();
    let mut w = s.watch(Some(&a.revision)).unwrap();
    assert!(w
        .next(Duration::from_millis(500))
        .unwrap_err()
        .is_transient());
    etcd.restart();
    let b = store(&etcd, "/late").push(&site_b()).unwrap();
    assert_eq!(next_snapshot(&mut *w, 15), b);
}

#[test]
fn etcd_test_server_is_killed_on_drop_and_on_panic() {
    let etcd = Etcd::start();
    let port = etcd.endpoint();
    drop(etcd);
    assert!(std::net::TcpStream::connect(port.trim_start_matches("http://")).is_err());

    let endpoint = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let etcd = Etcd::start();
        *endpoint.lock().unwrap() = etcd.endpoint();
        panic!("test failure");
    });
    assert!(r.is_err());
    let ep = endpoint.lock().unwrap().clone();
    assert!(std::net::TcpStream::connect(ep.trim_start_matches("http://")).is_err());
}

#[test]
fn a_full_store_refuses_the_push_and_keeps_the_last_complete_site() {
    // A tiny backend quota: etcd raises its NOSPACE alarm once it is full.
    let etcd = Etcd::start_with_args(&["--quota-backend-bytes=1048576"]);
    let s = store(&etcd, "/full");
    let first = s.push(&site_a()).unwrap();
    let mut err = None;
    for i in 0..64 {
        let big = site_a().with("firewall/big.fw", vec![b'#' + (i % 2) as u8; 512 * 1024]);
        match s.push(&big) {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("the quota is never reached");
    assert_eq!(err.code, codes::DISK_FULL, "{err}");
    // Readers still get one complete site (the last one that fit).
    let now = s.load().unwrap();
    assert_eq!(now.hash, rampart_store::content_hash(&now.files));
    assert!(now.files.get("site.toml").is_some());
    assert_ne!(now.revision, first.revision);
}

#[test]
fn concurrent_pushes_serialise() {
    let etcd = Etcd::start();
    let mut threads = Vec::new();
    for t in 0..2 {
        let s = store(&etcd, "/race");
        threads.push(std::thread::spawn(move || {
            for i in 0..15 {
                let site = site_a().with(format!("firewall/{}.fw", 200 + t), format!("# {i}\n"));
                s.push(&site).expect("push");
            }
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let s = store(&etcd, "/race");
    let now = s.load().unwrap();
    // The last push of one writer won completely; the other writer's file
    // is gone with it (each push replaces the whole site).
    let ours: Vec<_> = now
        .files
        .under("firewall")
        .map(|(p, _)| p.to_string())
        .collect();
    assert!(
        ours.contains(&"firewall/200.fw".to_string())
            ^ ours.contains(&"firewall/201.fw".to_string()),
        "{ours:?}"
    );
}

#[derive(Clone, Default)]
struct Recorder(Arc<std::sync::Mutex<Vec<Duration>>>);
impl rampart_store::Sleeper for Recorder {
    fn sleep(&mut self, d: Duration) {
        self.0.lock().unwrap().push(d);
        std::thread::sleep(d);
    }
}

#[test]
fn watch_backs_off_exponentially_while_etcd_is_down() {
    let mut etcd = Etcd::start();
    let mut o = opts(&etcd, "/bo");
    o.retry = RetryPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(160),
        factor: 2.0,
        jitter: 0.0,
    };
    o.request_timeout = Duration::from_millis(300);
    let s = EtcdStore::new(o).unwrap();
    let a = s.push(&site_a()).unwrap();
    etcd.stop();
    let mut w = s.watch_from(Some(&a.revision)).unwrap();
    let rec = Recorder::default();
    w.set_sleeper(Box::new(rec.clone()));
    let err = w.next(Duration::from_secs(2)).unwrap_err();
    assert!(err.is_transient(), "{err}");
    let delays = rec.0.lock().unwrap().clone();
    assert!(delays.len() >= 4, "{delays:?}");
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(&ms[..4], &[20, 40, 80, 160], "{ms:?}");
    assert!(ms.iter().all(|&m| m <= 160), "not capped: {ms:?}");
}

#[test]
fn a_frozen_etcd_times_out_as_unreachable_and_the_watch_recovers() {
    let mut etcd = Etcd::start();
    let mut o = opts(&etcd, "/frozen");
    o.request_timeout = Duration::from_millis(700);
    let s = EtcdStore::new(o).unwrap();
    let a = s.push(&site_a()).unwrap();
    let mut w = s.watch(None).unwrap();
    assert_eq!(next_snapshot(&mut *w, 10), a);

    etcd.pause();
    let t = Instant::now();
    let err = s.load().unwrap_err();
    assert_eq!(err.code, codes::STORE_UNREACHABLE, "{err}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // The watch stays bounded by its timeout while nothing answers.
    let t = Instant::now();
    let r = w.next(Duration::from_millis(800));
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    etcd.resume();
    let b = store(&etcd, "/frozen").push(&site_b()).unwrap();
    assert_eq!(next_snapshot(&mut *w, 15), b);
}

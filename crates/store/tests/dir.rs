//! The directory store against real directories.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use rampart_store::{content_hash, DirOptions, DirStore, NodeStatus, SiteStore};
use rampart_types::codes;

fn write(root: &Path, rel: &str, body: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, body).unwrap();
}

fn site(root: &Path) {
    write(root, "site.toml", "[site]\nname = \"t\"\n");
    write(root, "firewall/cluster.fw", "[OPTIONS]\nenable: 1\n");
    write(
        root,
        "nodes/hv1/host.fw",
        "[RULES]\nIN ACCEPT -p tcp -dport 22\n",
    );
}

fn fast() -> DirOptions {
    DirOptions {
        poll_interval: Duration::from_millis(20),
        debounce: Duration::from_millis(150),
        // These tests are about the debounce: no early read of completed writes.
        settle: Duration::from_millis(150),
        ..DirOptions::default()
    }
}

#[test]
fn reads_the_tree_with_relative_slash_paths() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let snap = DirStore::new(d.path()).load().unwrap();
    let paths: Vec<_> = snap.files.files.keys().cloned().collect();
    assert_eq!(
        paths,
        ["firewall/cluster.fw", "nodes/hv1/host.fw", "site.toml"]
    );
    assert_eq!(
        snap.files.get("nodes/hv1/host.fw").unwrap(),
        b"[RULES]\nIN ACCEPT -p tcp -dport 22\n"
    );
    assert_eq!(snap.revision, content_hash(&snap.files));
    assert_eq!(snap.hash, snap.revision);
    // Same content elsewhere: same revision.
    let e = tempfile::tempdir().unwrap();
    site(e.path());
    assert_eq!(
        DirStore::new(e.path()).load().unwrap().revision,
        snap.revision
    );
}

#[test]
fn missing_directory_is_an_error_not_an_empty_site() {
    let d = tempfile::tempdir().unwrap();
    let err = DirStore::new(d.path().join("nope")).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.to_string().contains("E0701"), "{err}");
}

#[test]
fn empty_directory_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    // Only skipped files: nothing is read, which is not "no firewall".
    write(d.path(), ".hidden", "x");
    write(d.path(), "host.fw~", "x");
    let err = DirStore::new(d.path()).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.message.contains("no files"), "{err}");
}

#[test]
fn a_file_instead_of_a_directory_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "site", "x");
    let err = DirStore::new(d.path().join("site")).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
}

#[test]
fn dangling_symlink_makes_the_whole_site_unreadable() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    symlink(d.path().join("gone.fw"), d.path().join("firewall/100.fw")).unwrap();
    let err = DirStore::new(d.path()).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.message.contains("100.fw"), "{err}");
}

#[test]
fn symlink_leaving_the_tree_is_refused_inside_is_read() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret", "root:x:0:0");
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    symlink(
        d.path().join("nodes/hv1/host.fw"),
        d.path().join("firewall/alias.fw"),
    )
    .unwrap();
    // a directory alias (like /etc/pve/local) is not read twice
    symlink(d.path().join("nodes/hv1"), d.path().join("local")).unwrap();
    let snap = DirStore::new(d.path()).load().unwrap();
    assert_eq!(
        snap.files.get("firewall/alias.fw"),
        snap.files.get("nodes/hv1/host.fw")
    );
    assert!(snap.files.get("local/host.fw").is_none());

    symlink(
        outside.path().join("secret"),
        d.path().join("firewall/evil.fw"),
    )
    .unwrap();
    let err = DirStore::new(d.path()).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.message.contains("leaves the site tree"), "{err}");
}

#[test]
fn special_files_are_refused() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let fifo = d.path().join("firewall/200.fw");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let err = DirStore::new(d.path()).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    assert!(err.message.contains("not a regular file"), "{err}");
}

#[test]
fn oversized_file_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    write(d.path(), "firewall/big.fw", &"#".repeat(2000));
    let opts = DirOptions {
        max_file_size: 1000,
        ..DirOptions::default()
    };
    let err = DirStore::with_options(d.path(), opts).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_TOO_LARGE);
    assert!(
        err.message.contains("big.fw") && err.message.contains("1000"),
        "{err}"
    );
}

#[test]
fn a_site_over_the_total_size_limit_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    for i in 100..110 {
        write(d.path(), &format!("firewall/{i}.fw"), &"#".repeat(900));
    }
    let opts = DirOptions {
        max_file_size: 1000,
        max_total_size: 5000,
        ..DirOptions::default()
    };
    let err = DirStore::with_options(d.path(), opts).load().unwrap_err();
    assert_eq!(err.code, codes::SITE_TOO_LARGE);
    assert!(err.message.contains("5000"), "{err}");
}

#[test]
fn a_half_written_file_is_not_read_until_closed() {
    // A slow writer: 10 bytes, a pause, the rest. With inotify the watch
    // waits for the close (up to `open_write_wait`) instead of reading
    // `[OPTIONS]\n` alone after the debounce.
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let store = DirStore::with_options(d.path(), fast());
    let first = store.load().unwrap();
    let mut w = store.watch(Some(&first.revision)).unwrap();
    assert_eq!(w.next(Duration::from_millis(200)).unwrap(), None);
    let path = d.path().join("firewall/cluster.fw");
    let writer = std::thread::spawn(move || {
        let mut f = fs::File::create(&path).unwrap();
        f.write_all(b"[OPTIONS]\n").unwrap();
        std::thread::sleep(Duration::from_millis(800));
        f.write_all(b"enable: 1\n# slow\n").unwrap();
    });
    let snap = w.next(Duration::from_secs(5)).unwrap().expect("a change");
    writer.join().unwrap();
    assert_eq!(
        snap.files.get("firewall/cluster.fw").unwrap(),
        b"[OPTIONS]\nenable: 1\n# slow\n"
    );
}

#[test]
fn read_site_dir_names_what_it_skipped() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    write(d.path(), "firewall/100.fw~", "x");
    write(d.path(), "firewall/.100.fw.swp", "x");
    let r = rampart_store::read_site_dir(d.path(), &DirOptions::default()).unwrap();
    assert_eq!(r.skipped, ["firewall/100.fw~"]);
    assert!(r.files.get("firewall/100.fw~").is_none());
}

#[test]
fn hidden_files_and_editor_backups_are_skipped() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let before = DirStore::new(d.path()).load().unwrap();
    write(d.path(), "firewall/cluster.fw~", "old");
    write(d.path(), "firewall/.cluster.fw.swp", "swap");
    write(d.path(), "firewall/cluster.fw.swp", "swap");
    write(d.path(), "firewall/#cluster.fw#", "autosave");
    write(d.path(), ".git/config", "x");
    write(d.path(), ".hidden.fw", "x");
    let after = DirStore::new(d.path()).load().unwrap();
    assert_eq!(before, after);
}

#[test]
fn statuses_round_trip_in_a_status_dir_and_in_memory() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let st = NodeStatus {
        applied_revision: Some("abc".into()),
        plan_hash: Some("p1".into()),
        errors: vec!["E0703: x".into()],
        applied_at: Some(1_700_000_000),
        agent_version: "0.1.0".into(),
    };
    let opts = DirOptions {
        status_dir: Some(d.path().join("state")),
        ..DirOptions::default()
    };
    let s = DirStore::with_options(d.path().join("site-not-needed"), opts.clone());
    s.put_status("hv1", &st).unwrap();
    s.put_status("hv2", &NodeStatus::default()).unwrap();
    let again = DirStore::with_options(d.path(), opts);
    let all = again.statuses().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["hv1"], st);
    assert!(s.put_status("../evil", &st).is_err());

    let m = DirStore::new(d.path());
    assert!(m.statuses().unwrap().is_empty());
    m.put_status("hv1", &st).unwrap();
    assert_eq!(m.statuses().unwrap()["hv1"], st);
}

#[test]
fn watch_yields_the_current_site_then_one_snapshot_per_debounced_change() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let store = DirStore::with_options(d.path(), fast());
    let mut w = store.watch(None).unwrap();
    let first = w
        .next(Duration::from_secs(5))
        .unwrap()
        .expect("initial snapshot");
    assert_eq!(first, store.load().unwrap());
    assert_eq!(w.next(Duration::from_millis(400)).unwrap(), None);

    // A burst of writes (like an editor saving in pieces) within the
    // debounce window yields one snapshot, of the final content.
    for i in 0..5 {
        write(
            d.path(),
            "firewall/cluster.fw",
            &format!("[OPTIONS]\nenable: 1\n# {i}\n"),
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let t = Instant::now();
    let snap = w.next(Duration::from_secs(5)).unwrap().expect("a change");
    assert!(t.elapsed() >= Duration::from_millis(100), "not debounced");
    assert_eq!(
        snap.files.get("firewall/cluster.fw").unwrap(),
        b"[OPTIONS]\nenable: 1\n# 4\n"
    );
    assert_eq!(
        w.next(Duration::from_millis(500)).unwrap(),
        None,
        "fired twice"
    );

    // Touching without changing content yields nothing.
    write(
        d.path(),
        "firewall/cluster.fw",
        "[OPTIONS]\nenable: 1\n# 4\n",
    );
    assert_eq!(w.next(Duration::from_millis(500)).unwrap(), None);

    // An editor backup appearing is not a change.
    write(d.path(), "firewall/cluster.fw~", "backup");
    assert_eq!(w.next(Duration::from_millis(500)).unwrap(), None);
}

#[test]
fn watch_reports_a_removed_site_once_and_recovers() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("site");
    site(&root);
    let store = DirStore::with_options(&root, fast());
    let first = store.load().unwrap();
    let mut w = store.watch(Some(&first.revision)).unwrap();
    assert_eq!(w.next(Duration::from_millis(400)).unwrap(), None);

    fs::rename(&root, d.path().join("moved")).unwrap();
    let err = w.next(Duration::from_secs(5)).unwrap_err();
    assert_eq!(err.code, codes::SITE_UNREADABLE);
    // Reported once, not on every call.
    assert_eq!(w.next(Duration::from_millis(400)).unwrap(), None);

    // Back with the same content: nothing new to apply.
    fs::rename(d.path().join("moved"), &root).unwrap();
    assert_eq!(w.next(Duration::from_millis(600)).unwrap(), None);
    // And a real change afterwards is seen.
    write(&root, "firewall/100.fw", "[OPTIONS]\nenable: 1\n");
    let snap = w.next(Duration::from_secs(5)).unwrap().expect("change");
    assert!(snap.files.get("firewall/100.fw").is_some());
}

#[test]
fn a_change_is_seen_about_poll_plus_debounce_after_the_write() {
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let opts = DirOptions {
        poll_interval: Duration::from_millis(10),
        debounce: Duration::from_millis(20),
        settle: Duration::from_millis(20),
        ..DirOptions::default()
    };
    let store = DirStore::with_options(d.path(), opts);
    let first = store.load().unwrap();
    let mut w = store.watch(Some(&first.revision)).unwrap();
    assert_eq!(w.next(Duration::from_millis(100)).unwrap(), None);
    let t = Instant::now();
    write(d.path(), "firewall/cluster.fw", "[OPTIONS]\nenable: 0\n");
    let snap = w.next(Duration::from_secs(5)).unwrap().expect("change");
    let took = t.elapsed();
    assert_ne!(snap.revision, first.revision);
    assert!(took >= Duration::from_millis(20), "not debounced: {took:?}");
    assert!(took < Duration::from_millis(250), "slow: {took:?}");
}

/// With inotify, a write that was completed (the file closed, or renamed
/// into place) is read after a short settle instead of the debounce; a file
/// still open for writing waits for the debounce.
#[test]
fn completed_writes_skip_the_debounce_open_ones_do_not() {
    use std::io::Write;
    let d = tempfile::tempdir().unwrap();
    site(d.path());
    let opts = DirOptions {
        poll_interval: Duration::from_secs(30),
        debounce: Duration::from_secs(30),
        settle: Duration::from_millis(5),
        ..DirOptions::default()
    };
    let store = DirStore::with_options(d.path(), opts);
    let first = store.load().unwrap();
    let mut w = store.watch(Some(&first.revision)).unwrap();
    // Atomic save: temp file renamed into place.
    write(
        d.path(),
        "firewall/.cluster.fw.tmp",
        "[OPTIONS]\nenable: 0\n",
    );
    fs::rename(
        d.path().join("firewall/.cluster.fw.tmp"),
        d.path().join("firewall/cluster.fw"),
    )
    .unwrap();
    let snap = w
        .next(Duration::from_secs(10))
        .unwrap()
        .expect("renamed file read");
    assert_eq!(
        snap.files.get("firewall/cluster.fw").unwrap(),
        b"[OPTIONS]\nenable: 0\n"
    );
    // In-place write, closed.
    write(d.path(), "firewall/100.fw", "[OPTIONS]\nenable: 1\n");
    let snap = w
        .next(Duration::from_secs(10))
        .unwrap()
        .expect("closed file read");
    assert!(snap.files.get("firewall/100.fw").is_some());
    // Half written, still open: not read while the debounce runs.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(d.path().join("firewall/100.fw"))
        .unwrap();
    f.write_all(b"[RULES]\nIN ACC").unwrap();
    f.flush().unwrap();
    assert_eq!(w.next(Duration::from_millis(500)).unwrap(), None);
    f.write_all(b"EPT -p tcp -dport 22\n").unwrap();
    drop(f);
    let snap = w
        .next(Duration::from_secs(10))
        .unwrap()
        .expect("completed file read");
    assert!(
        String::from_utf8_lossy(snap.files.get("firewall/100.fw").unwrap())
            .ends_with("-dport 22\n")
    );
}

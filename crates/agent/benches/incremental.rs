//! Benchmark: a one-rule change on a node whose ruleset has ~100,000 set
//! elements and ~10,000 rules — time from the change on disk to the kernel
//! running it, through the real agent (inotify watch -> load -> parse/resolve
//! -> compile -> guard -> diff -> one `nft -f` transaction). Target < 100 ms.
//!
//! "Running it" is the kernel committing the transaction: the bench polls
//! the namespace's nftables ruleset generation (one netlink round trip) and
//! notes every move until the agent has recorded the apply. One move: that
//! transaction is the change. Several (a staged apply: stage, switch,
//! clean-up) count until the last, an upper bound. Between rounds the
//! agent reaches its steady state (kernel hash recorded). Afterwards
//! `nft list table` checks that the changed rule is what runs. It also prints each pure stage alone
//! and the kernel time of a full replace of the same change.
//!
//! Needs root (a network namespace of its own). Prints figures; not a test.
//! `cargo bench -p rampart-agent --bench incremental` (or bench/incremental.sh)
//! Knobs: RAMPART_BENCH_GUESTS (60), RAMPART_BENCH_RULES (per guest, 100),
//! RAMPART_BENCH_ELEMENTS (100000), RAMPART_BENCH_ROUNDS (5),
//! RAMPART_BENCH_CHANGE (`rule`, the default; or `element`: each round adds
//! one address to the 100,000-entry blacklist instead, the fail2ban-style
//! change, which goes as set element messages; target < 20 ms).

use rampart_agent::{plan_for, plan_for_cached, Agent, AgentConfig, Metrics, Signals};
use rampart_apply::{apply, netlink::nft_genid, ApplyMode, ApplyOpts, HostSystem};
use rampart_store::{DirStore, SiteStore};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn write_atomic(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let tmp = p.with_file_name(format!(".{}.tmp", p.file_name().unwrap().to_string_lossy()));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, &p).unwrap();
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The site: the generator's one-node site, its blacklist grown to
/// `elements` addresses (not adjacent, so they stay single elements).
fn site(guests: u32, rules: u32, elements: u32) -> rampart_types::SiteFiles {
    let mut files = rampart_gen::generate(&rampart_gen::GenParams {
        nodes: 1,
        guests,
        rules_per_guest: rules,
        seed: 7,
    })
    .expect("generate");
    let cluster = String::from_utf8(files.files["firewall/cluster.fw"].clone()).unwrap();
    let at = cluster
        .find("[IPSET blacklist]")
        .expect("blacklist section");
    let eol = at + cluster[at..].find('\n').unwrap() + 1;
    let mut extra = String::with_capacity(elements as usize * 16);
    for i in 0..elements {
        let a = 0xac10_0000u32 + 2 * i; // 172.16.0.0/12, every other address
        extra.push_str(&format!(
            "{}.{}.{}.{}\n",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        ));
    }
    let body = format!("{}{extra}{}", &cluster[..eol], &cluster[eol..]);
    files
        .files
        .insert("firewall/cluster.fw".into(), body.into_bytes());
    files
}

/// A guest rule line with a `-dport N` to change.
fn pick_rule(files: &rampart_types::SiteFiles) -> (String, String) {
    for (path, bytes) in &files.files {
        if !path.starts_with("firewall/") || path.ends_with("cluster.fw") {
            continue;
        }
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines() {
            if line.starts_with("IN ACCEPT") && line.contains("-dport ") && !line.contains(',') {
                return (path.clone(), line.to_owned());
            }
        }
    }
    panic!("no guest rule with a single -dport");
}

fn main() {
    // The agent logs each apply's steps (RUST_LOG=info to see them).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    let guests = env("RAMPART_BENCH_GUESTS", 60);
    let rules = env("RAMPART_BENCH_RULES", 100);
    let elements = env("RAMPART_BENCH_ELEMENTS", 100_000);
    let rounds = env("RAMPART_BENCH_ROUNDS", 5).max(1);
    let element_mode = std::env::var("RAMPART_BENCH_CHANGE").as_deref() == Ok("element");
    let mut files = site(guests, rules, elements);
    if element_mode {
        // The blacklist section last in cluster.fw (pve-firewall reads
        // sections in any order), so an address appended to it moves no
        // rule's line: the change is the element alone. Inserted above the
        // rules, it renumbers every rule after it (their origin comments
        // say `cluster.fw:LINE`) and those chains are refilled too.
        let text = String::from_utf8(files.files["firewall/cluster.fw"].clone()).unwrap();
        let at = text.find("[IPSET blacklist]").expect("blacklist section");
        let end = text[at + 1..]
            .find("\n[")
            .map_or(text.len(), |e| at + 1 + e + 1);
        let mut moved = format!("{}{}", &text[..at], &text[end..]);
        if !moved.ends_with('\n') {
            moved.push('\n');
        }
        moved.push('\n');
        moved.push_str(&text[at..end]);
        if !moved.ends_with('\n') {
            moved.push('\n');
        }
        files
            .files
            .insert("firewall/cluster.fw".into(), moved.into_bytes());
    }
    let node = "pve1";

    // Pure stages, alone: parse + resolve (+ WireGuard planning), then
    // compile + lock-out guard for the node.
    let opts = rampart_agent::PlanOpts::default();
    let t = Instant::now();
    let site_model = rampart_plan::load(&files, &opts).expect("site loads");
    let t_resolve = t.elapsed();
    let t = Instant::now();
    site_model.build(node).expect("node builds");
    let t_compile = t.elapsed();
    let t = Instant::now();
    let planned = plan_for(&files, Some(node), "r1", false).expect("plan");
    let t_plan = t.elapsed();
    println!(
        "incremental apply: node {node}, {} kernel rules, {} set elements, {:.1} MB of nft script",
        planned.rules,
        planned.set_elements,
        planned.plan.ruleset.len() as f64 / 1e6
    );
    println!(
        "  pure stages: parse+resolve {}, compile+lock-out guard {}, plan_for total {}",
        ms(t_resolve),
        ms(t_compile),
        ms(t_plan)
    );
    let (path, line) = if element_mode {
        ("firewall/cluster.fw".to_string(), String::new())
    } else {
        pick_rule(&files)
    };
    let added = |n: u32| format!("10.250.{}.{}", n / 250, n % 250 + 1);
    let changed = |n: u32| -> rampart_types::SiteFiles {
        let mut f = files.clone();
        if element_mode {
            // Appended to the blacklist, the file's last section.
            let mut text = String::from_utf8(f.files[&path].clone()).unwrap();
            text.push_str(&added(n));
            text.push('\n');
            f.files.insert(path.clone(), text.into_bytes());
            return f;
        }
        let text = String::from_utf8(f.files[&path].clone()).unwrap();
        let port = 40000 + n;
        let at = line.find("-dport ").unwrap() + 7;
        let end = line[at..].find(' ').map(|e| at + e).unwrap_or(line.len());
        let new_line = format!("{}{port}{}", &line[..at], &line[end..]);
        f.files.insert(
            path.clone(),
            text.replacen(&line, &new_line, 1).into_bytes(),
        );
        f
    };
    let t = Instant::now();
    let new_plan = plan_for(&changed(1), Some(node), "r2", false).expect("plan");
    let t_cold = t.elapsed();
    // Warm: as the agent plans, through the PlanCache it keeps (it planned
    // the previous revision); the plan is the same as the cold one.
    let mut cache = rampart_agent::PlanCache::new();
    plan_for_cached(&files, Some(node), &opts, &mut cache).expect("plan");
    let mut warm = Vec::new();
    for r in 1..=rounds.max(3) {
        let f = changed(r);
        let t = Instant::now();
        let p = plan_for_cached(&f, Some(node), &opts, &mut cache).expect("plan");
        warm.push(t.elapsed());
        if r == 1 {
            assert_eq!(p.plan.ruleset, new_plan.plan.ruleset, "warm plan differs");
        }
    }
    println!(
        "  plan_for of the changed site (warm, the agent's PlanCache): median {} (min {}, max {}); cold {}",
        ms(median(warm.clone())),
        ms(*warm.iter().min().unwrap()),
        ms(*warm.iter().max().unwrap()),
        ms(t_cold)
    );
    let t = Instant::now();
    let delta = rampart_apply::incremental::diff(&planned.plan.ruleset, &new_plan.plan.ruleset)
        .expect("a one-rule or one-element change is incremental");
    println!(
        "  diff {}: {} chain(s) refilled ({}), {} element(s) added, {} deleted, {} bytes of nft",
        ms(t.elapsed()),
        delta.chains.len(),
        delta.chains.join(", "),
        delta.elements_added,
        delta.elements_deleted,
        delta.script.len()
    );

    // The staged plan's fast path: the kernel names of the running plan
    // (derived once, then kept by the applying process), and the in-place
    // transaction.
    let pins = rampart_apply::twophase::Pins::new();
    let t = Instant::now();
    let names = rampart_apply::twophase::kernel_names(&planned.plan.ruleset, "salt", &pins)
        .expect("kernel names");
    let t_names = t.elapsed();
    let t = Instant::now();
    match rampart_apply::inplace::in_place(
        &planned.plan.ruleset,
        &new_plan.plan.ruleset,
        &names,
        &pins,
    ) {
        Ok(ip) => {
            let script = rampart_apply::inplace::script(&ip, |_, k| {
                let c = ip.changes.iter().find(|c| c.kname == k).expect("chain");
                Ok((1..=c.old.len() as u64).collect())
            })
            .expect("script")
                + &rampart_apply::inplace::render_sets(&ip.sets);
            println!(
                "  in-place set changes: {} set(s), {} element(s) added, {} deleted (rampart's own element messages)",
                ip.sets.len(),
                ip.sets.iter().map(|s| s.added.len()).sum::<usize>(),
                ip.sets.iter().map(|s| s.deleted.len()).sum::<usize>()
            );
            let count = |p: &str| script.lines().filter(|l| l.starts_with(p)).count();
            println!(
                "  in-place transaction: {} rule(s) deleted, {} appended, {} prepended, {} positioned by handle",
                count("delete rule"),
                count("add rule"),
                script.lines().filter(|l| l.starts_with("insert rule") && !l.contains(" handle ")).count(),
                script.lines().filter(|l| l.starts_with("insert rule") && l.contains(" handle ")).count(),
            );
            println!(
            "  in place {} ({} chain(s), {} rules after); deriving the running plan's kernel names (once per agent) {}",
            ms(t.elapsed()),
            ip.chains.len(),
            ip.changes.iter().map(|c| c.new.len()).sum::<usize>(),
            ms(t_names)
        )
        }
        Err(e) => println!("  in place: not possible: {e}"),
    }

    if !nix::unistd::Uid::effective().is_root() {
        println!("  kernel part skipped: needs root (a network namespace)");
        return;
    }
    let ns = Netns(format!("rampart-bench-incr-{}", std::process::id()));
    assert!(Command::new("ip")
        .args(["netns", "add", &ns.0])
        .status()
        .unwrap()
        .success());
    let sys = HostSystem::in_netns(&ns.0);

    // Full replace of the same change, for comparison (kernel step only).
    {
        let st = tempfile::tempdir().unwrap();
        let mut opts = ApplyOpts::new(st.path());
        opts.record_kernel_hash = false;
        apply(&sys, &planned.plan, &opts).expect("first apply");
        opts.incremental = false;
        let mut full = Vec::new();
        for i in 0..rounds.min(3) {
            let p = if i % 2 == 0 {
                &new_plan.plan
            } else {
                &planned.plan
            };
            let out = apply(&sys, p, &opts).expect("full apply");
            assert!(matches!(out.mode, ApplyMode::Full { .. }));
            full.push(out.kernel_time);
        }
        println!(
            "  full replace of the same change: nft -f {} (plus nft -c of the whole script before it)",
            ms(median(full))
        );
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &ns.0, "nft", "delete", "table", "inet", "rampart",
            ])
            .status();
        let _ = Command::new("ip")
            .args([
                "netns", "exec", &ns.0, "nft", "delete", "table", "bridge", "rampart",
            ])
            .status();
    }

    // The agent, watching a site directory.
    let dir = tempfile::tempdir().unwrap();
    let site_dir = dir.path().join("site");
    for (p, b) in &files.files {
        write_atomic(&site_dir, p, b);
    }
    let state = dir.path().join("state");
    let signals = Signals::default();
    let stop = signals.clone();
    let cfg = AgentConfig {
        node: node.parse().unwrap(),
        state_dir: state.clone(),
        netns: Some(ns.0.clone()),
        interval: Duration::from_secs(3600),
        once: false,
        remove_on_exit: false,
        key_dir: dir.path().join("keys").to_string_lossy().into_owned(),
    };
    let store: Box<dyn SiteStore> = Box::new(DirStore::new(&site_dir));
    let agent = std::thread::spawn(move || {
        let mut a = Agent::new(cfg, store, Arc::new(Metrics::default()));
        a.run(&signals);
    });
    let applied = || -> Option<rampart_apply::Applied> {
        let st = rampart_apply::StateDir::open(&state).ok()?;
        st.read_applied(rampart_apply::state::CURRENT)
            .ok()
            .flatten()
    };
    // Applied, and its kernel hash recorded (the agent does that once the
    // site is quiet): the node is in its steady state again.
    let wait_steady = |hash: &str| {
        let t = Instant::now();
        while !applied().is_some_and(|a| a.plan_hash == hash && a.kernel_hash.is_some()) {
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "agent did not apply"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let t = Instant::now();
    wait_steady(&planned.plan.content_hash());
    println!(
        "  agent start -> first (full) apply recorded: {}",
        ms(t.elapsed())
    );
    let mut lat = Vec::new();
    let mut last_port = 0;
    let mut last_added = String::new();
    for r in 1..=rounds {
        let f = changed(r);
        let want = plan_for(&f, Some(node), "x", false)
            .unwrap()
            .plan
            .content_hash();
        let before = nft_genid(Some(&ns.0)).expect("genid");
        let t0 = Instant::now();
        write_atomic(&site_dir, &path, &f.files[&path]);
        // Every committed transaction moves the generation: note when each
        // happened until the agent has recorded the apply.
        let mut gen = before;
        let mut moves: Vec<Duration> = Vec::new();
        let mut polled = Instant::now();
        loop {
            let g = nft_genid(Some(&ns.0)).expect("genid");
            if g != gen {
                moves.push(t0.elapsed());
                gen = g;
            }
            if polled.elapsed() > Duration::from_millis(20) {
                polled = Instant::now();
                if applied().is_some_and(|a| a.plan_hash == want) {
                    break;
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the agent never applied"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        let recorded = t0.elapsed();
        assert!(!moves.is_empty(), "the kernel never changed");
        let txs = gen.wrapping_sub(before);
        // One transaction: it is the change. Several (staged: stage,
        // switch, clean-up): count the last one, an upper bound.
        let d = if txs == 1 {
            moves[0]
        } else {
            *moves.last().unwrap()
        };
        lat.push(d);
        last_port = 40000 + r;
        last_added = added(r);
        println!(
            "  round {r}: change on disk -> kernel running it: {} ({txs} transaction(s); first at {}, apply recorded at {})",
            ms(d),
            ms(moves[0]),
            ms(recorded)
        );
        wait_steady(&want);
    }
    let listing = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, "nft", "list", "table", "inet", "rampart",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    if element_mode {
        assert!(
            listing.contains(&format!("{last_added},"))
                || listing.contains(&format!("{last_added} ")),
            "the added address is not in the kernel"
        );
    } else {
        assert!(
            listing.contains(&format!("dport {last_port} ")),
            "the changed rule is not in the kernel"
        );
    }
    let m = median(lat.clone());
    let budget = if element_mode { 0.02 } else { 0.1 };
    println!(
        "  change on disk -> kernel running it: median {} (min {}, max {}); target < {} ms -> {:.2}x of budget",
        ms(m),
        ms(*lat.iter().min().unwrap()),
        ms(*lat.iter().max().unwrap()),
        budget * 1e3,
        m.as_secs_f64() / budget
    );
    stop.stop();
    agent.join().unwrap();
}

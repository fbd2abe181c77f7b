//! Write a generated site to a directory, and print how long generating took.
//!
//! `cargo run --release -p rampart-gen --example gen_site -- NODES GUESTS RULES SEED OUT_DIR [pve-tree]`
//!
//! With `pve-tree`, the site is laid out as a bare `/etc/pve` tree
//! (`corosync.conf` and guest `.conf` files instead of `site.toml`).
//!
//! The library itself does no I/O; this example (like `rampart gen-site`) is
//! the shell around it.

use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pve_tree = args.len() == 6 && args[5] == "pve-tree";
    if args.len() != 5 && !pve_tree {
        eprintln!("usage: gen_site NODES GUESTS RULES_PER_GUEST SEED OUT_DIR [pve-tree]");
        std::process::exit(2);
    }
    let num = |i: usize| -> u64 {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("not a number: {}", args[i]);
            std::process::exit(2)
        })
    };
    let params = rampart_gen::GenParams {
        nodes: num(0) as u32,
        guests: num(1) as u32,
        rules_per_guest: num(2) as u32,
        seed: num(3),
    };
    let t = Instant::now();
    let result = if pve_tree {
        rampart_gen::generate_pve_tree(&params)
    } else {
        rampart_gen::generate(&params)
    };
    let site = match result {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2)
        }
    };
    let took = t.elapsed();
    let out = Path::new(&args[4]);
    let mut bytes = 0usize;
    for (rel, data) in &site.files {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create directory");
        }
        std::fs::write(&path, data).expect("write file");
        bytes += data.len();
    }
    eprintln!(
        "generated {} files, {} bytes in {:.3}s",
        site.files.len(),
        bytes,
        took.as_secs_f64()
    );
}

use std::time::Instant;
fn main() {
    let old = std::fs::read_to_string("/tmp/exp/out/pve1/ruleset.nft").unwrap();
    let new = old.replacen("tcp dport 28188 return", "tcp dport 28189 return", 1);
    let pins = rampart_apply::twophase::Pins::new();
    let names = rampart_apply::twophase::kernel_names(&old, "salt", &pins).unwrap();
    for _ in 0..200 {
        let t = Instant::now();
        let ip = rampart_apply::inplace::in_place(&old, &new, &names, &pins).unwrap();
        let _ = rampart_apply::inplace::commands(&ip, |_, k| { let c = ip.changes.iter().find(|c| c.kname == k).unwrap(); Ok((1..=c.old.len() as u64).collect()) });
        if t.elapsed().as_millis() > 1000 { println!("slow"); }
    }
    let t = Instant::now();
    let _ip = rampart_apply::inplace::in_place(&old, &new, &names, &pins).unwrap();
    println!("in_place {:?}", t.elapsed());
}

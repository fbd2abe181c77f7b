//! The probe helper the lab runs inside network namespaces (see
//! `rampart_lab::probe`). Not meant to be run by hand.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rampart_lab::probe::helper_main(&args));
}

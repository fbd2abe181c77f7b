//! Conformance cases against the kernel: `rampart test-policy --kernel`.

use crate::{Error, Lab, LabOptions, Probe, Result};
use rampart_case::{Outcome, State};
use rampart_resolve::ir;
use std::path::Path;

/// Run one case: build `site`'s node (the case's `node`, or the only node)
/// in namespaces, open the established flows, call `load` to load the
/// compiled ruleset into [`Lab::host`], send every packet and compare.
///
/// `case` names the case in the outcomes (its directory as given);
/// `packets_toml` is the text of its `packets.toml`. An error means the
/// case could not run at all (bad packets.toml, a lab that could not be
/// built); a packet that could not be sent is an outcome with `got: Err`.
pub fn run_case_kernel(
    case: &str,
    packets_toml: &str,
    site: &ir::Site,
    opts: LabOptions,
    load: &dyn Fn(&Lab) -> Result<()>,
) -> Result<Vec<Outcome>> {
    let parsed =
        rampart_case::parse(packets_toml).map_err(|e| Error::new(format!("{case}/{e}")))?;
    let node = match &parsed.node {
        Some(n) => n.clone(),
        None => match site.nodes.as_slice() {
            [only] => only.name.to_string(),
            _ => {
                return Err(Error::new(format!(
                "{case}/packets.toml: the site has several nodes: say which with `node = \"…\"`"
            )))
            }
        },
    };
    let lab = Lab::build(site, &node, opts)?;
    let probes: Vec<Probe> = parsed.packets.iter().map(Probe::from_packet).collect();
    let results = if probes.iter().any(|p| p.state == State::Established) {
        lab.probe_established(&probes, load)
    } else {
        load(&lab).map_err(|e| Error::new(format!("{case}: loading the ruleset: {e}")))?;
        lab.probe_all(&probes)
    };
    Ok(parsed
        .packets
        .iter()
        .zip(results)
        .map(|(p, r)| Outcome {
            case: case.to_string(),
            packet: p.label(),
            expected: p.verdict,
            got: r.map(|o| o.as_action()).map_err(|e| e.0),
        })
        .collect())
}

/// [`run_case_kernel`] on a case directory (reads `DIR/packets.toml`).
pub fn run_case_dir(
    dir: &Path,
    site: &ir::Site,
    opts: LabOptions,
    load: &dyn Fn(&Lab) -> Result<()>,
) -> Result<Vec<Outcome>> {
    let path = dir.join("packets.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
    run_case_kernel(&dir.display().to_string(), &text, site, opts, load)
}

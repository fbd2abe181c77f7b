//! The revert script of a `--confirm` change. It is written and started
//! *before* the change is applied, runs detached (or as a systemd timer),
//! sleeps, and unless `confirm` renamed the pending record first, puts the
//! previous ruleset, sysctls, state record and legacy file back.
//!
//! Confirm and revert race on one atomic rename of `pending-<id>.json`:
//! whichever renames it first wins, the other does nothing.

use crate::system::Programs;

/// Single-quote for /bin/sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub(crate) struct RevertScript<'a> {
    pub id: &'a str,
    pub state_dir: &'a str,
    pub prefix: &'a [String],
    pub programs: &'a Programs,
    /// Restore commands, each reading one file of the state dir on stdin:
    /// (argv, file name).
    pub restores: Vec<(Vec<String>, String)>,
    pub sysctls_before: Vec<(String, String)>,
    pub sysctls_after: Vec<(String, String)>,
    /// Whether `revert-<id>.current` holds the record to put back.
    pub has_previous_record: bool,
    pub legacy: String,
    /// Shell lines putting the network side back (WireGuard, routes, rules).
    pub network: Vec<String>,
}

impl RevertScript<'_> {
    pub fn render(&self) -> String {
        let q = sh_quote;
        let pre = self
            .prefix
            .iter()
            .map(|a| q(a))
            .collect::<Vec<_>>()
            .join(" ");
        let pre = if pre.is_empty() { pre } else { pre + " " };
        let id = self.id;
        let mut s = String::new();
        s.push_str("#!/bin/sh\n");
        s.push_str(&format!(
            "# rampart: revert of change {id} unless confirmed (generated)\n"
        ));
        s.push_str("trap '' HUP INT\n");
        s.push_str(&format!("S={}\n", q(self.state_dir)));
        s.push_str("if [ \"${1:-0}\" -gt 0 ]; then sleep \"$1\"; fi\n");
        s.push_str(&format!(
            "mv \"$S/pending-{id}.json\" \"$S/reverting-{id}.json\" 2>/dev/null || exit 0\n"
        ));
        s.push_str("rc=0\n");
        let sysctl = |k: &str, v: &str| {
            format!(
                "{pre}{} -q -w {} || rc=1\n",
                q(&self.programs.sysctl),
                q(&format!("{k}={v}"))
            )
        };
        for (k, v) in &self.sysctls_before {
            s.push_str(&sysctl(k, v));
        }
        for (argv, file) in &self.restores {
            let argv = argv.iter().map(|a| q(a)).collect::<Vec<_>>().join(" ");
            s.push_str(&format!("{pre}{argv} < \"$S/{file}\" || rc=1\n"));
        }
        for (k, v) in &self.sysctls_after {
            s.push_str(&sysctl(k, v));
        }
        for l in &self.network {
            s.push_str(l);
            s.push('\n');
        }
        if self.has_previous_record {
            s.push_str(&format!(
                "mv \"$S/revert-{id}.current\" \"$S/current.plan\"\n"
            ));
        } else {
            s.push_str("rm -f \"$S/current.plan\"\n");
        }
        s.push_str(&self.legacy);
        s.push_str("sync\n");
        s.push_str(&format!(
            "mv \"$S/reverting-{id}.json\" \"$S/reverted-{id}.json\"\n"
        ));
        s.push_str(&format!(
            "echo \"rampart: change {id} reverted (rc=$rc)\"\n"
        ));
        s.push_str("exit $rc\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_is_valid_sh_and_races_on_one_rename() {
        let programs = Programs::default();
        let prefix = vec![
            "ip".to_string(),
            "netns".into(),
            "exec".into(),
            "n s'1".into(),
        ];
        let s = RevertScript {
            id: "1-abc",
            state_dir: "/var/lib/ram part",
            prefix: &prefix,
            programs: &programs,
            restores: vec![(
                vec!["nft".into(), "-f".into(), "-".into()],
                "revert-1-abc.rules".into(),
            )],
            sysctls_before: vec![("net.ipv4.ip_forward".into(), "0".into())],
            sysctls_after: vec![("net.ipv4.conf.all.rp_filter".into(), "2".into())],
            has_previous_record: true,
            legacy: String::new(),
            network: vec![],
        }
        .render();
        let mv = s
            .find("mv \"$S/pending-1-abc.json\" \"$S/reverting-1-abc.json\" 2>/dev/null || exit 0")
            .unwrap();
        let fwd = s.find("'net.ipv4.ip_forward=0'").unwrap();
        let nft = s
            .find("'nft' '-f' '-' < \"$S/revert-1-abc.rules\"")
            .unwrap();
        let rp = s.find("'net.ipv4.conf.all.rp_filter=2'").unwrap();
        assert!(mv < fwd && fwd < nft && nft < rp, "{s}");
        assert!(s.contains(r"'n s'\''1'"));
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}

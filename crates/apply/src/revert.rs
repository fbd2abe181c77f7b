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
    fn quoting() {
        assert_eq!(sh_quote("a'b"), r"'a'\''b'");
    }
}

use std::path::{Path, PathBuf};

/// Why an apply, confirm, rollback or status failed. On every error from
/// `apply` but [`Error::AfterSwitch`] the kernel keeps the ruleset it had
/// (and sysctls written before the switch are put back).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed (exit {status:?}): {stderr}")]
    Command {
        command: String,
        status: Option<i32>,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: corrupt state record: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("plan refused: {0}")]
    InvalidPlan(String),
    #[error("the ruleset failed the kernel check, nothing was applied: {0}")]
    CheckFailed(Box<Error>),
    #[error("the kernel refused the ruleset, the previous one is still in place: {0}")]
    ApplyFailed(Box<Error>),
    #[error("a change is waiting for confirmation (id {id}, deadline {deadline}); confirm or roll back first")]
    PendingConfirmation { id: String, deadline: u64 },
    #[error("nothing to confirm")]
    NothingPending,
    #[error("too late: the change {0} was already reverted")]
    AlreadyReverted(String),
    #[error("confirm must arrive over a new connection (this is the session that applied: {0})")]
    SameSession(String),
    #[error("another rampart process (pid {0}) is applying; try again")]
    Busy(String),
    #[error("cannot build a revert for --confirm, nothing was applied: {0}")]
    NoRevert(String),
    #[error("no last good plan recorded")]
    NoLastGood,
    /// The new ruleset went live, then a later step failed: the kernel runs
    /// the new plan's ruleset, and the previous one is NOT in place.
    #[error("{}", after_switch_text(plan_hash, done, failed, record.as_deref()))]
    AfterSwitch {
        /// The plan whose ruleset the kernel runs now.
        plan_hash: String,
        /// What was done, in order (the switch first).
        done: Vec<String>,
        /// The steps after the switch that failed (empty when only the
        /// record failed).
        failed: Vec<String>,
        /// `None`: `current.plan` records the new plan (marked incomplete
        /// when a step failed; `status` shows it). `Some`: writing the
        /// record failed, the state still records the previous plan.
        record: Option<Box<Error>>,
    },
    #[error("network: {what}: {step}: {source}")]
    Network {
        /// The interface (or route/rule prefix) the step was about.
        what: String,
        step: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

fn after_switch_text(
    plan_hash: &str,
    done: &[String],
    failed: &[String],
    record: Option<&Error>,
) -> String {
    let short = &plan_hash[..plan_hash.len().min(12)];
    let mut t =
        format!("the new ruleset (plan {short}) is live, the previous one is NOT in place; ");
    if !failed.is_empty() {
        t.push_str(&format!("failed after the switch: {}; ", failed.join("; ")));
    }
    match record {
        None => t.push_str(
            "recorded as running, incomplete (`rampart status` shows it; `rampart apply` retries the failed steps, `rampart rollback` returns to the last good plan)",
        ),
        Some(e) => t.push_str(&format!(
            "the state could not be written ({e}): it still records the previous plan, so `rampart status` reports the kernel as drifted until the next apply"
        )),
    }
    t.push_str(&format!("; done: {}", done.join(", ")));
    t
}

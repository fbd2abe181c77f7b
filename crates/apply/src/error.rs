use std::path::{Path, PathBuf};

/// Why an apply, confirm, rollback or status failed. On every error from
/// `apply` the kernel keeps the ruleset it had.
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

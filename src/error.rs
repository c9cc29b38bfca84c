//! The one error type of gwctl and the one table of exit codes.

use std::process::ExitCode;

use crate::spec::Diagnostic;

/// Outcome of a command that did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    /// `plan --detailed-exitcode` found changes to make.
    ChangesPending,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Region files that do not validate. Nothing was changed.
    #[error("{} problem{} in region files", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<Diagnostic>),
    /// A command line that cannot be carried out as given.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Render(#[from] crate::render::RenderError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Exit codes: 0 ok, 1 failure, 2 invalid input or usage (and, from `Status`, 2 for
    /// changes pending under `--detailed-exitcode`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Invalid(_) | Error::Usage(_) => 2,
            Error::Render(_) | Error::Broker(_) | Error::Io { .. } | Error::Failed(_) => 1,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        match s {
            Status::Success => ExitCode::SUCCESS,
            Status::ChangesPending => ExitCode::from(2),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

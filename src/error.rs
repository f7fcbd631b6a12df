//! Typed errors. Every error knows its exit code and whether retrying the
//! same chunk could help, so the worker pool never guesses from text.

use std::fmt;

/// What kind of failure this is; decides the exit code and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input or configuration, found before anything was written (exit 2).
    Input,
    /// A transient database condition: deadlock, serialization failure,
    /// lock timeout, lost connection. Retried with backoff.
    Retryable,
    /// Anything else at runtime (exit 1).
    Fatal,
    /// SIGINT / SIGTERM: the checkpoint was saved (exit 130).
    Interrupted,
    /// `verify` found rows that differ (exit 3): an answer, not a failure.
    Differences,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// SQLSTATE (PostgreSQL) or server error number, when the server sent one.
    pub code: Option<String>,
    /// Set only for a unique violation: the index or constraint that found
    /// the duplicate, as the server named it (every driver fills it).
    pub duplicate_key: Option<String>,
    /// An input error found after rows were written (exit 2 all the same,
    /// but "nothing was written" would be untrue).
    pub after_writes: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Input, message)
    }
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Fatal, message)
    }
    pub fn interrupted() -> Self {
        Self::new(
            ErrorKind::Interrupted,
            "interrupted: the chunks in flight committed and the checkpoint was saved; \
             rerun the same command to resume",
        )
    }
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            code: None,
            duplicate_key: None,
            after_writes: false,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Retryable
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Input => 2,
            ErrorKind::Retryable | ErrorKind::Fatal => 1,
            ErrorKind::Interrupted => 130,
            ErrorKind::Differences => 3,
        }
    }

    /// Prefix the message with where it happened, keeping kind and codes.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// The same error, reclassified (e.g. a connection failure at startup is
    /// a configuration problem, not a transient one).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::fatal(e.to_string())
    }
}

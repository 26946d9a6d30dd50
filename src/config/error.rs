//! Configuration errors. Every message names the file and, where it can be
//! found, the line and the key.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    #[error("{at}: {key}: {message}")]
    Invalid {
        at: Location,
        key: String,
        message: String,
    },
}

/// `file:line` when the line is known, else `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

impl ConfigError {
    /// A hint for the command line, when there is a useful one.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            ConfigError::Read { .. } => Some("check the path given with --config"),
            ConfigError::Syntax { .. } => {
                Some("the keys and their meaning are listed in README.md, section Configuration")
            }
            ConfigError::Invalid { .. } => None,
        }
    }
}

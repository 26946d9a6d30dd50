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

/// Who shows an error to the user: a hint names a setting as that front end spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrontEnd {
    /// The `dryci` command line.
    Cli,
    /// The pytest plugin.
    Plugin,
}

impl FrontEnd {
    /// The setting that names the configuration file.
    pub fn config_setting(self) -> &'static str {
        match self {
            FrontEnd::Cli => "--config",
            FrontEnd::Plugin => "--dryci-config (or the ini option dryci_config)",
        }
    }
}

impl ConfigError {
    /// A hint for `front_end`'s user, when there is a useful one.
    pub fn hint(&self, front_end: FrontEnd) -> Option<String> {
        match self {
            ConfigError::Read { .. } => Some(format!(
                "check the path given with {}",
                front_end.config_setting()
            )),
            ConfigError::Syntax { .. } => Some(
                "the keys and their meaning are listed in README.md, section Configuration"
                    .to_string(),
            ),
            ConfigError::Invalid { .. } => None,
        }
    }
}

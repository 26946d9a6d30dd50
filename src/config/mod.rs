//! The configuration: where it is found (`repo_dagger.yaml`, `[tool.dryci]`
//! in pyproject.toml, or nothing), what is inferred where it is silent, and
//! the compiled rules. Its fingerprint is part of every dependency hash.

mod compile;
mod defaults;
mod error;
mod locate;
mod raw;
mod template;

use std::path::{Path, PathBuf};

pub use compile::{
    build_glob, is_dotted_name, normalize_dir, Actions, EntryPointPolicy, PathRule, RegexRule,
    Rules,
};
pub use error::{ConfigError, FrontEnd, Location};
pub use raw::{OneOrMany, RawActions, RawConfig};
pub use template::Template;

/// File names looked for in the repo root, in order.
pub const CONFIG_FILE_NAMES: &[&str] = &["repo_dagger.yaml", "repo_dagger.yml"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Yaml(PathBuf),
    Pyproject(PathBuf),
    Defaults,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Absolute repo root: `base_dir` resolved against the config file's folder.
    pub root: PathBuf,
    pub source: ConfigSource,
    pub rules: Rules,
    /// The configuration with every default filled in (what `--show-config` prints).
    pub effective: RawConfig,
    /// Keys the configuration left out and DryCI inferred.
    pub inferred: Vec<&'static str>,
    /// blake3 of the configuration as written and the defaults' version, hex.
    pub fingerprint: String,
}

/// Loads the configuration for the repo at `root`: `explicit` if given, else
/// the first of `repo_dagger.yaml`, `[tool.dryci]` in pyproject.toml, defaults.
pub fn load(root: &Path, explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let found = match explicit {
        Some(path) => Some(read_config_file(path)?),
        None => discover(root)?,
    };
    let (raw, source, text) = match found {
        Some(found) => found,
        None => (RawConfig::default(), ConfigSource::Defaults, String::new()),
    };
    let config_dir = match &source {
        ConfigSource::Yaml(path) | ConfigSource::Pyproject(path) => path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| root.to_path_buf()),
        ConfigSource::Defaults => root.to_path_buf(),
    };
    let base_dir = raw.base_dir.clone().unwrap_or_else(|| ".".to_string());
    let root = absolute(&config_dir.join(&base_dir));
    // The fingerprint covers what the user wrote (and the defaults' version),
    // not what was inferred from the tree: inferred values only shape the
    // graph, and the closure's files are hashed anyway. So a new top-level
    // package does not invalidate every hash.
    let fingerprint = fingerprint(&raw);
    let mut effective = raw;
    let inferred = defaults::fill(&mut effective, &root);
    let file = match &source {
        ConfigSource::Yaml(p) | ConfigSource::Pyproject(p) => p.clone(),
        ConfigSource::Defaults => PathBuf::from("<defaults>"),
    };
    let rules = compile::Compiler {
        file: &file,
        text: &text,
    }
    .compile(&effective)?;
    Ok(Config {
        root,
        source,
        rules,
        effective,
        inferred,
        fingerprint,
    })
}

fn discover(root: &Path) -> Result<Option<(RawConfig, ConfigSource, String)>, ConfigError> {
    for name in CONFIG_FILE_NAMES {
        let path = root.join(name);
        if path.is_file() {
            return read_config_file(&path).map(Some);
        }
    }
    let pyproject = root.join("pyproject.toml");
    if pyproject.is_file() {
        let text = read_text(&pyproject)?;
        if let Some(raw) = parse_pyproject(&pyproject, &text)? {
            return Ok(Some((raw, ConfigSource::Pyproject(pyproject), text)));
        }
    }
    Ok(None)
}

fn read_config_file(path: &Path) -> Result<(RawConfig, ConfigSource, String), ConfigError> {
    let text = read_text(path)?;
    if path.extension().is_some_and(|ext| ext == "toml") {
        let raw = parse_pyproject(path, &text)?.unwrap_or_default();
        Ok((raw, ConfigSource::Pyproject(path.to_path_buf()), text))
    } else {
        let raw = parse_yaml(path, &text)?;
        Ok((raw, ConfigSource::Yaml(path.to_path_buf()), text))
    }
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|err| ConfigError::Syntax {
        at: Location {
            file: path.to_path_buf(),
            line: None,
        },
        message: format!("not valid UTF-8 (byte {})", err.utf8_error().valid_up_to()),
    })
}

/// Parses `repo_dagger.yaml`; an empty file is an empty configuration.
pub fn parse_yaml(path: &Path, text: &str) -> Result<RawConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(RawConfig::default());
    }
    serde_norway::from_str(text).map_err(|err| ConfigError::Syntax {
        at: Location {
            file: path.to_path_buf(),
            line: err.location().map(|l| l.line()),
        },
        message: strip_position(&err.to_string()),
    })
}

#[derive(serde::Deserialize)]
struct PyProject {
    #[serde(default)]
    tool: PyProjectTools,
}

#[derive(Default, serde::Deserialize)]
struct PyProjectTools {
    dryci: Option<RawConfig>,
}

/// Reads `[tool.dryci]`; `None` when the table is absent.
pub fn parse_pyproject(path: &Path, text: &str) -> Result<Option<RawConfig>, ConfigError> {
    let parsed: PyProject = toml::from_str(text).map_err(|err| {
        let line = err
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        // toml points an unknown key at its table; point at the key itself.
        let line = unknown_field(err.message())
            .and_then(|key| locate::line_of_key_from(text, key, line.unwrap_or(1)))
            .or(line);
        ConfigError::Syntax {
            at: Location {
                file: path.to_path_buf(),
                line,
            },
            message: err.message().to_string(),
        }
    })?;
    Ok(parsed.tool.dryci)
}

/// The key named by serde's "unknown field `key`" message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split_once("unknown field `")?.1;
    rest.split_once('`').map(|(key, _)| key)
}

/// serde_norway appends " at line L column C"; the location is printed separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

fn fingerprint(written: &RawConfig) -> String {
    // JSON of BTreeMaps and structs is deterministic: same rules, same fingerprint,
    // whatever the comments, the key order or the file format.
    let mut hasher = blake3::Hasher::new();
    hasher.update(&defaults::DEFAULTS_VERSION.to_le_bytes());
    hasher.update(&serde_json::to_vec(written).unwrap_or_default());
    hasher.finalize().to_hex().to_string()
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    std::fs::canonicalize(&joined).unwrap_or(joined)
}

#[cfg(test)]
mod tests;

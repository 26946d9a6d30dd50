//! The configuration as written: serde structs for `repo_dagger.yaml` and
//! `[tool.dryci]` in pyproject.toml. Unknown keys are rejected here; meaning
//! and validation live in `compile`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A value that may be written as a single string or as a list of strings.
/// It always serializes as a list, so both spellings fingerprint alike.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
    #[default]
    #[serde(skip)]
    Empty,
}

impl Serialize for OneOrMany {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.clone().into_vec().serialize(serializer)
    }
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
            OneOrMany::Empty => Vec::new(),
        }
    }
}

/// Top-level keys. Those from the original repo_dagger come first; the rest
/// are DryCI extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inputs: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_deps: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global_exclude: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_python_packages: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_rules: Option<BTreeMap<String, RawActions>>,
    /// Folders below the repo root in which root packages live (default `.` and `src`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_roots: Option<OneOrMany>,
    /// Whether string literals naming a module of a root package are dependencies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_strings: Option<bool>,
    /// Who depends on the project's declared entry points: `global`, `loaders` or `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry_points: Option<String>,
}

/// The actions of a path rule or a regex rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawActions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_siblings: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_grand_siblings: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_imported_python_modules: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_python_all_submodules_for: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude: Option<OneOrMany>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex_rules: Option<BTreeMap<String, RawActions>>,
}

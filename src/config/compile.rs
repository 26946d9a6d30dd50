//! From the configuration as written (`RawConfig`, defaults already filled
//! in) to compiled rules: globs and regexes built once, templates parsed,
//! every error tied to the key and line it came from.

use globset::{Glob, GlobBuilder, GlobMatcher, GlobSet, GlobSetBuilder};
use regex::bytes::Regex;

use super::error::{ConfigError, Location};
use super::locate::{line_of, line_of_key};
use super::raw::{RawActions, RawConfig};
use super::template::Template;

/// What a path rule or a regex rule does to a visited file.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub visit: Vec<Template>,
    pub visit_siblings: Vec<Template>,
    pub visit_grand_siblings: Vec<Template>,
    pub visit_imported_python_modules: bool,
    pub visit_python_all_submodules_for: Vec<Template>,
    /// Files for which this block does not apply.
    pub exclude: Option<GlobSet>,
    pub regex_rules: Vec<RegexRule>,
}

impl Actions {
    pub fn excludes(&self, path: &str) -> bool {
        self.exclude.as_ref().is_some_and(|set| set.is_match(path))
    }
}

#[derive(Debug, Clone)]
pub struct PathRule {
    /// Shared: every edge the rule makes names it.
    pub pattern: std::sync::Arc<str>,
    pub matcher: GlobMatcher,
    pub actions: Actions,
}

#[derive(Debug, Clone)]
pub struct RegexRule {
    pub pattern: std::sync::Arc<str>,
    pub regex: Regex,
    pub actions: Actions,
}

/// Who depends on the modules named by the project's declared entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryPointPolicy {
    /// Every input (sound: pytest and console scripts load them by name).
    Global,
    /// Only files that import an entry-point loader (importlib.metadata, pkg_resources).
    Loaders,
    Off,
}

/// The compiled rules (everything of `Config` except where it came from).
#[derive(Debug, Clone)]
pub struct Rules {
    pub inputs: Vec<String>,
    pub inputs_set: GlobSet,
    pub global_deps: Vec<String>,
    pub global_exclude: GlobSet,
    pub root_packages: Vec<String>,
    pub source_roots: Vec<String>,
    pub path_rules: Vec<PathRule>,
    pub module_strings: bool,
    pub entry_points: EntryPointPolicy,
}

/// Compiles globs and regexes, reporting errors at `file` (whose text is `text`).
pub struct Compiler<'a> {
    pub file: &'a std::path::Path,
    pub text: &'a str,
}

impl Compiler<'_> {
    fn invalid(&self, key: &str, needle: &str, message: String) -> ConfigError {
        let line = line_of(self.text, needle).or_else(|| line_of_key(self.text, key));
        ConfigError::Invalid {
            at: Location {
                file: self.file.to_path_buf(),
                line,
            },
            key: key.to_string(),
            message,
        }
    }

    pub fn compile(&self, raw: &RawConfig) -> Result<Rules, ConfigError> {
        let inputs = raw.inputs.clone().unwrap_or_default().into_vec();
        let global_deps = raw.global_deps.clone().unwrap_or_default().into_vec();
        let global_exclude = raw.global_exclude.clone().unwrap_or_default().into_vec();
        for dep in &global_deps {
            self.glob("global_deps", dep)?;
        }
        let root_packages = raw
            .root_python_packages
            .clone()
            .unwrap_or_default()
            .into_vec();
        for package in &root_packages {
            if !is_dotted_name(package) || package.contains('.') {
                return Err(self.invalid(
                    "root_python_packages",
                    package,
                    format!("{package:?} is not a top-level Python package name"),
                ));
            }
        }
        let source_roots = raw
            .source_roots
            .clone()
            .unwrap_or_default()
            .into_vec()
            .into_iter()
            .map(|root| normalize_dir(&root))
            .collect();
        let entry_points = match raw.entry_points.as_deref().unwrap_or("global") {
            "global" => EntryPointPolicy::Global,
            "loaders" => EntryPointPolicy::Loaders,
            "off" => EntryPointPolicy::Off,
            other => {
                return Err(self.invalid(
                    "entry_points",
                    other,
                    format!("{other:?} is not one of global, loaders, off"),
                ))
            }
        };
        let mut path_rules = Vec::new();
        for (pattern, raw_actions) in raw.path_rules.iter().flatten() {
            let key = format!("path_rules.{pattern}");
            path_rules.push(PathRule {
                pattern: pattern.as_str().into(),
                matcher: self.glob(&key, pattern)?.compile_matcher(),
                actions: self.actions(&key, raw_actions, None)?,
            });
        }
        Ok(Rules {
            inputs_set: self.glob_set("inputs", &inputs)?,
            inputs,
            global_deps,
            global_exclude: self.glob_set("global_exclude", &global_exclude)?,
            root_packages,
            source_roots,
            path_rules,
            module_strings: raw.module_strings.unwrap_or(true),
            entry_points,
        })
    }

    /// `groups` is the number of capture groups of the enclosing regex, if any.
    fn actions(
        &self,
        key: &str,
        raw: &RawActions,
        groups: Option<usize>,
    ) -> Result<Actions, ConfigError> {
        let templates = |name: &str,
                         value: &Option<super::raw::OneOrMany>|
         -> Result<Vec<Template>, ConfigError> {
            let mut out = Vec::new();
            for text in value.clone().unwrap_or_default().into_vec() {
                let template = Template::parse(&text);
                let field = format!("{key}.{name}");
                match (template.max_group(), groups) {
                    (Some(max), Some(available)) if max > available => {
                        return Err(self.invalid(
                            &field,
                            &text,
                            format!(
                                "{text:?} uses ${max} but the regex has only {available} group(s)"
                            ),
                        ))
                    }
                    // Without groups to fill, the text must already be a valid glob.
                    (None, _) | (Some(_), None) if name != "visit_python_all_submodules_for" => {
                        self.glob(&field, &text)?;
                    }
                    _ => {}
                }
                out.push(template);
            }
            Ok(out)
        };
        let exclude = match &raw.exclude {
            Some(patterns) => {
                Some(self.glob_set(&format!("{key}.exclude"), &patterns.clone().into_vec())?)
            }
            None => None,
        };
        let mut regex_rules = Vec::new();
        for (pattern, nested) in raw.regex_rules.iter().flatten() {
            let field = format!("{key}.regex_rules");
            let regex = Regex::new(pattern).map_err(|err| {
                self.invalid(
                    &field,
                    pattern,
                    format!("invalid regular expression: {err}"),
                )
            })?;
            let group_count = regex.captures_len() - 1;
            regex_rules.push(RegexRule {
                pattern: pattern.as_str().into(),
                actions: self.actions(&format!("{field}.{pattern}"), nested, Some(group_count))?,
                regex,
            });
        }
        Ok(Actions {
            visit: templates("visit", &raw.visit)?,
            visit_siblings: templates("visit_siblings", &raw.visit_siblings)?,
            visit_grand_siblings: templates("visit_grand_siblings", &raw.visit_grand_siblings)?,
            visit_imported_python_modules: raw.visit_imported_python_modules.unwrap_or(false),
            visit_python_all_submodules_for: templates(
                "visit_python_all_submodules_for",
                &raw.visit_python_all_submodules_for,
            )?,
            exclude,
            regex_rules,
        })
    }

    fn glob(&self, key: &str, pattern: &str) -> Result<Glob, ConfigError> {
        build_glob(pattern)
            .map_err(|err| self.invalid(key, pattern, format!("invalid glob: {err}")))
    }

    fn glob_set(&self, key: &str, patterns: &[String]) -> Result<GlobSet, ConfigError> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns {
            builder.add(self.glob(key, pattern)?);
        }
        builder
            .build()
            .map_err(|err| self.invalid(key, "", format!("invalid glob set: {err}")))
    }
}

/// Globs are relative to the repo root with `/` separators; `*` stays within
/// one folder and `**` crosses folders, as in the original.
pub fn build_glob(pattern: &str) -> Result<Glob, globset::Error> {
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
}

/// `a.b.c` made of Python identifiers.
pub fn is_dotted_name(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|part| {
            let mut chars = part.chars();
            chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
                && chars.all(|c| c == '_' || c.is_alphanumeric())
        })
}

/// `./src/` -> `src`, `.` -> `` (the repo root).
pub fn normalize_dir(dir: &str) -> String {
    let trimmed = dir.trim_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed == "." {
        String::new()
    } else {
        trimmed.to_string()
    }
}

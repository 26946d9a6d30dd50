//! Module names to the repository's files: `a.b` is each of `a/b/__init__.py`,
//! `a/b.py`, `.pyi`, `.pyx`, `.pxd`, `.c` that exists below a source root,
//! plus the `__init__.py` of every parent package. Relative imports resolve
//! against the importing file's folder; namespace packages and src layouts
//! are folders without files of their own.

use rustc_hash::FxHashMap as HashMap;
use std::sync::RwLock;

use crate::walk::{join, parent_dir, FileId, RepoIndex};

use super::scan::ImportRef;

/// Suffixes a module file may have, in the original's order.
const MODULE_SUFFIXES: &[&str] = &[".py", ".pyx", ".pyi", ".pxd", ".c"];

/// What a module name turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Files implementing the module and its parent packages' `__init__.py`.
    Files(Vec<FileId>),
    /// A folder without `__init__.py` (PEP 420): nothing to hash of its own.
    Namespace,
    /// Not inside a root package: someone else's code.
    External,
    /// Inside a root package (or relative) but no file or folder has that name.
    Missing,
}

pub struct ModuleResolver<'a> {
    index: &'a RepoIndex,
    /// Root package name -> the folders (relative to the repo root) holding it.
    package_bases: HashMap<String, Vec<String>>,
    /// Answers already worked out: every module is imported by many files,
    /// and files are visited in parallel.
    absolute_memo: RwLock<HashMap<String, Resolution>>,
    path_memo: RwLock<HashMap<(String, String), Resolution>>,
}

impl<'a> ModuleResolver<'a> {
    pub fn new(index: &'a RepoIndex, root_packages: &[String], source_roots: &[String]) -> Self {
        let mut package_bases: HashMap<String, Vec<String>> = HashMap::default();
        for package in root_packages {
            let mut bases: Vec<String> = source_roots
                .iter()
                .filter(|root| {
                    let dir = join(root, package);
                    index.is_dir(&dir)
                        || MODULE_SUFFIXES
                            .iter()
                            .any(|s| index.id(&format!("{dir}{s}")).is_some())
                })
                .cloned()
                .collect();
            if bases.is_empty() {
                // Declared but not found under a source root: look at the root,
                // so that a missing package is reported rather than ignored.
                bases.push(String::new());
            }
            package_bases.insert(package.clone(), bases);
        }
        ModuleResolver {
            index,
            package_bases,
            absolute_memo: RwLock::new(HashMap::default()),
            path_memo: RwLock::new(HashMap::default()),
        }
    }

    pub fn is_root_package(&self, top: &str) -> bool {
        self.package_bases.contains_key(top)
    }

    /// Resolves an absolute dotted module name.
    pub fn resolve_absolute(&self, module: &str) -> Resolution {
        if let Some(known) = self
            .absolute_memo
            .read()
            .ok()
            .and_then(|memo| memo.get(module).cloned())
        {
            return known;
        }
        let resolution = self.resolve_absolute_uncached(module);
        if let Ok(mut memo) = self.absolute_memo.write() {
            memo.insert(module.to_string(), resolution.clone());
        }
        resolution
    }

    fn resolve_absolute_uncached(&self, module: &str) -> Resolution {
        let top = module.split('.').next().unwrap_or(module);
        let Some(bases) = self.package_bases.get(top) else {
            return Resolution::External;
        };
        let rel_path = module.replace('.', "/");
        let mut found = Vec::new();
        let mut namespace = false;
        for base in bases {
            match self.resolve_path(base, &rel_path) {
                Resolution::Files(files) => found.extend(files),
                Resolution::Namespace => namespace = true,
                Resolution::External | Resolution::Missing => {}
            }
        }
        if !found.is_empty() {
            found.sort_unstable();
            found.dedup();
            Resolution::Files(found)
        } else if namespace {
            Resolution::Namespace
        } else {
            Resolution::Missing
        }
    }

    /// Resolves `module` (slash-separated, relative to `base`), with the
    /// `__init__.py` of each package on the way from `base` down.
    fn resolve_path(&self, base: &str, rel_path: &str) -> Resolution {
        let key = (base.to_string(), rel_path.to_string());
        if let Some(known) = self
            .path_memo
            .read()
            .ok()
            .and_then(|memo| memo.get(&key).cloned())
        {
            return known;
        }
        let resolution = self.resolve_path_uncached(base, rel_path);
        if let Ok(mut memo) = self.path_memo.write() {
            memo.insert(key, resolution.clone());
        }
        resolution
    }

    fn resolve_path_uncached(&self, base: &str, rel_path: &str) -> Resolution {
        let target = join(base, rel_path);
        let mut files: Vec<FileId> = std::iter::once(format!("{target}/__init__.py"))
            .chain(MODULE_SUFFIXES.iter().map(|s| format!("{target}{s}")))
            .filter_map(|candidate| self.index.id(&candidate))
            .collect();
        if files.is_empty() {
            return if self.index.is_dir(&target) && !target.is_empty() {
                Resolution::Namespace
            } else {
                Resolution::Missing
            };
        }
        let mut package = parent_dir(&target);
        while package.len() > base.len() {
            if let Some(init) = self.index.id(&format!("{package}/__init__.py")) {
                files.push(init);
            }
            package = parent_dir(package);
        }
        Resolution::Files(files)
    }

    /// Resolves a relative import written in `importer` (a repo-relative path).
    /// `module` is dotted without the leading dots; `level` counts them.
    pub fn resolve_relative(&self, importer: &str, level: u32, module: &str) -> Resolution {
        let mut base = parent_dir(importer);
        for _ in 1..level {
            if base.is_empty() {
                return Resolution::Missing; // beyond the repo root
            }
            base = parent_dir(base);
        }
        if module.is_empty() {
            // `from . import x`: the package itself.
            return match self.index.id(&join(base, "__init__.py")) {
                Some(init) => Resolution::Files(with_parent_inits(self.index, base, vec![init])),
                None if self.index.is_dir(base) => Resolution::Namespace,
                None => Resolution::Missing,
            };
        }
        match self.resolve_path(base, &module.replace('.', "/")) {
            Resolution::Files(files) => {
                Resolution::Files(with_parent_inits(self.index, base, files))
            }
            other => other,
        }
    }

    /// The module named by an import statement and, for `from M import a, b`,
    /// the submodules `M.a` and `M.b` that exist. Returns the statement's own
    /// module resolution and the files of the submodules found.
    pub fn resolve_import(&self, importer: &str, import: &ImportRef) -> (Resolution, Vec<FileId>) {
        let resolve = |module: &str| match import.level {
            0 => match self.resolve_absolute(module) {
                Resolution::External => self.resolve_from_script_folder(importer, module),
                other => other,
            },
            level => self.resolve_relative(importer, level, module),
        };
        let main = resolve(&import.module);
        if matches!(main, Resolution::External) {
            return (main, Vec::new());
        }
        let mut submodules = Vec::new();
        for name in &import.names {
            if name == "*" {
                if let Resolution::Files(files) = &main {
                    submodules.extend(self.star_submodules(import, files));
                }
                continue;
            }
            let sub = if import.module.is_empty() {
                name.clone()
            } else {
                format!("{}.{name}", import.module)
            };
            if let Resolution::Files(files) = resolve(&sub) {
                submodules.extend(files);
            }
        }
        (main, submodules)
    }

    /// pytest's default import mode puts the first folder above a test file
    /// (or conftest.py) that is not a package on `sys.path`, and Python does
    /// the same for a script's folder: `import helpers` then finds a
    /// `helpers.py` there even though `helpers` is no root package. Only a
    /// module found there counts; anything else is someone else's code.
    fn resolve_from_script_folder(&self, importer: &str, module: &str) -> Resolution {
        let mut folder = parent_dir(importer);
        while !folder.is_empty() && self.index.id(&join(folder, "__init__.py")).is_some() {
            folder = parent_dir(folder);
        }
        match self.resolve_path(folder, &module.replace('.', "/")) {
            found @ Resolution::Files(_) => found,
            _ => Resolution::External,
        }
    }

    /// `from pkg import *` imports the submodules named in `pkg.__all__`,
    /// which only running the code can tell: every direct submodule counts.
    fn star_submodules(&self, import: &ImportRef, main: &[FileId]) -> Vec<FileId> {
        let suffix = if import.module.is_empty() {
            "__init__.py".to_string()
        } else {
            format!("{}/__init__.py", import.module.replace('.', "/"))
        };
        let package_init = main
            .iter()
            .map(|id| self.index.path(*id))
            .filter(|path| path.ends_with(&suffix))
            .max_by_key(|path| path.len());
        let Some(package_init) = package_init else {
            return Vec::new();
        };
        let folder = parent_dir(package_init);
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{folder}/")
        };
        self.index
            .files_under(folder)
            .filter(|id| {
                let rest = &self.index.path(*id)[prefix.len()..];
                match rest.split_once('/') {
                    None => MODULE_SUFFIXES.iter().any(|s| rest.ends_with(s)),
                    Some((_, tail)) => tail == "__init__.py",
                }
            })
            .collect()
    }

    /// The longest prefix of `dotted` (e.g. `pkg.mod.Class`) that names a
    /// module of a root package; used for strings and entry points.
    pub fn resolve_longest_prefix(&self, dotted: &str) -> Option<(String, Vec<FileId>)> {
        let top = dotted.split('.').next()?;
        if !self.is_root_package(top) {
            return None;
        }
        let mut candidate = dotted;
        loop {
            if let Resolution::Files(files) = self.resolve_absolute(candidate) {
                return Some((candidate.to_string(), files));
            }
            candidate = candidate.rsplit_once('.')?.0;
        }
    }

    /// Every `.py` file below the package `module` (absolute, dotted).
    pub fn all_submodules(&self, module: &str) -> Vec<FileId> {
        let top = module.split('.').next().unwrap_or(module);
        let Some(bases) = self.package_bases.get(top) else {
            return Vec::new();
        };
        let rel_path = module.replace('.', "/");
        bases
            .iter()
            .flat_map(|base| self.index.files_under_owned(join(base, &rel_path)))
            .filter(|id| self.index.path(*id).ends_with(".py"))
            .collect()
    }
}

/// Adds the `__init__.py` of `dir` and of each folder above it, up to the
/// first folder that has none (where the package, and relative imports, end).
fn with_parent_inits(index: &RepoIndex, dir: &str, mut files: Vec<FileId>) -> Vec<FileId> {
    let mut current = dir;
    while !current.is_empty() {
        match index.id(&join(current, "__init__.py")) {
            Some(init) => files.push(init),
            None => break,
        }
        current = parent_dir(current);
    }
    files.sort_unstable();
    files.dedup();
    files
}

#[cfg(test)]
mod tests;

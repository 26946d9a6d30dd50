//! The repository's file index: one walk of the tree, then every lookup
//! (does `a/b.py` exist, which files match a glob) is answered from memory.
//! Paths are relative to the repo root with `/` separators, never relative
//! to the current directory.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::path::{Path, PathBuf};

use globset::GlobSet;

use crate::hashing::hash_field;

/// Index of a file in `RepoIndex::paths` (sorted by path).
pub type FileId = u32;

/// Folders that never hold a project's sources or data: VCS metadata,
/// caches, virtual environments, installed packages.
const SKIPPED_DIR_NAMES: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    ".jj",
    "__pycache__",
    ".venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".dryci",
    "node_modules",
    "site-packages",
];

/// The file that makes its folder a virtual environment.
const VENV_MARKER: &str = "pyvenv.cfg";

pub fn is_skipped_dir(path: &Path) -> bool {
    has_skipped_name(path) || path.join(VENV_MARKER).is_file()
}

fn has_skipped_name(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    SKIPPED_DIR_NAMES.contains(&name)
}

/// Forgets folder `dir`, and every file and folder below it, walked before
/// it was known to be skipped.
fn drop_folder(dir: &str, paths: &mut Vec<String>, dirs: &mut HashSet<String>) {
    let prefix = format!("{dir}/");
    paths.retain(|p| !p.starts_with(&prefix));
    dirs.retain(|d| d != dir && !d.starts_with(&prefix));
}

#[derive(Debug, Default)]
pub struct RepoIndex {
    pub root: PathBuf,
    /// Relative paths, sorted.
    paths: Vec<String>,
    ids: HashMap<String, FileId>,
    dirs: HashSet<String>,
    /// Problems met while walking (unreadable folders, symlink loops).
    pub warnings: Vec<String>,
}

impl RepoIndex {
    /// Walks `root`, leaving out skipped folders and files matching `exclude`.
    pub fn build(root: &Path, exclude: &GlobSet) -> RepoIndex {
        let mut paths = Vec::new();
        let mut dirs = HashSet::default();
        let mut warnings = Vec::new();
        let mut venvs = Vec::new();
        // Each folder's path relative to the root, by depth: an entry's path
        // is its parent's joined with its name. Stripping the root from each
        // absolute path, and a stat of `pyvenv.cfg` in each folder (below),
        // cost a no-change run on Django's sdist 8 of its 41 ms of CPU.
        let mut dir_stack: Vec<String> = vec![String::new()];
        // Links are followed (a linked data folder is a real input); walkdir
        // detects loops and reports them as errors, which become warnings.
        let mut walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0
                    || !(entry.file_type().is_dir() && has_skipped_name(entry.path()))
            });
        while let Some(entry) = walker.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(err) => {
                    warnings.push(walk_warning(root, &err));
                    continue;
                }
            };
            let depth = entry.depth();
            if depth == 0 {
                continue;
            }
            dir_stack.truncate(depth);
            let name = entry.file_name().to_string_lossy();
            let rel = join(&dir_stack[depth - 1], &name);
            if entry.file_type().is_dir() {
                dir_stack.push(rel.clone());
                dirs.insert(rel);
            } else if depth >= 2 && name == VENV_MARKER && entry.file_type().is_file() {
                // A virtual environment: found in its folder's listing rather
                // than by a stat of `pyvenv.cfg` in every folder walked.
                walker.skip_current_dir();
                venvs.push(dir_stack[depth - 1].clone());
            } else if !exclude.is_match(&rel) {
                paths.push(rel);
            }
        }
        for venv in &venvs {
            drop_folder(venv, &mut paths, &mut dirs);
        }
        Self::from_paths(root, paths, dirs, warnings)
    }

    fn from_paths(
        root: &Path,
        mut paths: Vec<String>,
        dirs: HashSet<String>,
        warnings: Vec<String>,
    ) -> Self {
        paths.sort_unstable();
        paths.dedup();
        let ids = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as FileId))
            .collect();
        RepoIndex {
            root: root.to_path_buf(),
            paths,
            ids,
            dirs,
            warnings,
        }
    }

    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn path(&self, id: FileId) -> &str {
        &self.paths[id as usize]
    }

    pub fn absolute(&self, id: FileId) -> PathBuf {
        self.root.join(self.path(id))
    }

    pub fn id(&self, rel: &str) -> Option<FileId> {
        self.ids.get(rel).copied()
    }

    pub fn is_dir(&self, rel: &str) -> bool {
        rel.is_empty() || self.dirs.contains(rel)
    }

    pub fn paths(&self) -> impl Iterator<Item = (FileId, &str)> {
        self.paths
            .iter()
            .enumerate()
            .map(|(i, p)| (i as FileId, p.as_str()))
    }

    /// blake3 of every file and folder path: equal fingerprints, equal answers
    /// to every "does this exist" question resolution can ask.
    pub fn layout_fingerprint(&self) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_derive_key("dryci 2026 repository layout");
        let mut dirs: Vec<&str> = self.dirs.iter().map(String::as_str).collect();
        dirs.sort_unstable();
        for (kind, list) in [
            (b'f', self.paths.iter().map(String::as_str).collect()),
            (b'd', dirs),
        ] {
            hasher.update(&[kind]);
            hasher.update(&(list.len() as u64).to_le_bytes());
            for path in list {
                hash_field(&mut hasher, path.as_bytes());
            }
        }
        hasher.finalize()
    }

    /// Files below folder `dir` ("" is the root), in path order.
    pub fn files_under<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = FileId> + 'a {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let start = self.paths.partition_point(|p| p.as_str() < prefix.as_str());
        self.paths[start..]
            .iter()
            .take_while(move |p| p.starts_with(&prefix))
            .enumerate()
            .map(move |(offset, _)| (start + offset) as FileId)
    }
}

impl RepoIndex {
    /// `files_under` for an owned folder name.
    pub fn files_under_owned(&self, dir: String) -> Vec<FileId> {
        self.files_under(&dir).collect()
    }

    /// An index of the given relative paths (tests and synthetic repos).
    pub fn from_relative_paths(root: &Path, paths: Vec<String>) -> Self {
        let mut dirs = HashSet::default();
        for path in &paths {
            let mut dir = parent_dir(path);
            while !dir.is_empty() && dirs.insert(dir.to_string()) {
                dir = parent_dir(dir);
            }
        }
        Self::from_paths(root, paths, dirs, Vec::new())
    }
}

/// `root/a/b` -> `a/b`; `None` for the root itself or a path outside it.
pub fn relative(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    if rel.as_os_str().is_empty() {
        return None;
    }
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

fn walk_warning(root: &Path, err: &walkdir::Error) -> String {
    let at = err
        .path()
        .and_then(|p| relative(root, p))
        .unwrap_or_else(|| root.display().to_string());
    if err.loop_ancestor().is_some() {
        format!("{at}: symlink loop, not followed")
    } else {
        format!(
            "{at}: cannot read: {}",
            err.io_error()
                .map_or_else(|| err.to_string(), |e| e.to_string())
        )
    }
}

/// Parent folder of a relative path ("" for a file at the root).
pub fn parent_dir(rel: &str) -> &str {
    rel.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// `dir` joined with `name` ("" is the root).
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(files: &[&str]) -> RepoIndex {
        let dirs = files.iter().map(|f| parent_dir(f).to_string()).collect();
        RepoIndex::from_paths(
            Path::new("/r"),
            files.iter().map(|s| s.to_string()).collect(),
            dirs,
            vec![],
        )
    }

    #[test]
    fn files_under_stops_at_sibling_prefixes() {
        let idx = index(&["a/x.py", "a/y/z.py", "ab/q.py", "b.py"]);
        let under: Vec<&str> = idx.files_under("a").map(|id| idx.path(id)).collect();
        assert_eq!(under, ["a/x.py", "a/y/z.py"]);
        assert_eq!(idx.files_under("").count(), 4);
    }

    #[test]
    fn walk_skips_venvs_and_reports_symlink_loops() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::write(root.join("pkg/a.py"), "").unwrap();
        std::fs::create_dir_all(root.join("env/lib")).unwrap();
        std::fs::write(root.join("env/pyvenv.cfg"), "").unwrap();
        std::fs::write(root.join("env/lib/x.py"), "").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("pkg"), root.join("pkg/loop")).unwrap();
        let idx = RepoIndex::build(root, &GlobSet::empty());
        let paths: Vec<&str> = idx.paths().map(|(_, p)| p).collect();
        assert_eq!(paths, ["pkg/a.py"]);
        assert!(idx.is_dir("pkg") && !idx.is_dir("env") && !idx.is_dir("env/lib"));
        #[cfg(unix)]
        assert!(
            idx.warnings.iter().any(|w| w.contains("symlink loop")),
            "{:?}",
            idx.warnings
        );
    }

    /// A venv is known by its `pyvenv.cfg` only when the walk lists it, maybe
    /// after its subfolders: whatever came before is forgotten, deep or not.
    #[test]
    fn venv_found_after_its_subfolders_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["a", "b/c", "d"] {
            std::fs::create_dir_all(root.join("proj/.env").join(sub)).unwrap();
            std::fs::write(root.join("proj/.env").join(sub).join("m.py"), "").unwrap();
        }
        std::fs::write(root.join("proj/.env/pyvenv.cfg"), "").unwrap();
        std::fs::write(root.join("proj/.envrc"), "").unwrap();
        std::fs::write(root.join("pyvenv.cfg"), "").unwrap();
        let idx = RepoIndex::build(root, &GlobSet::empty());
        let paths: Vec<&str> = idx.paths().map(|(_, p)| p).collect();
        assert_eq!(
            paths,
            ["proj/.envrc", "pyvenv.cfg"],
            "the root is never a venv"
        );
        let mut dirs: Vec<&str> = idx.dirs.iter().map(String::as_str).collect();
        dirs.sort_unstable();
        assert_eq!(dirs, ["proj"]);
    }

    #[test]
    fn paths_are_relative_with_slashes_at_every_depth() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b/c")).unwrap();
        for file in ["top.txt", "a/x.py", "a/b/y.po", "a/b/c/z.json"] {
            std::fs::write(root.join(file), "").unwrap();
        }
        let idx = RepoIndex::build(root, &GlobSet::empty());
        let paths: Vec<&str> = idx.paths().map(|(_, p)| p).collect();
        assert_eq!(paths, ["a/b/c/z.json", "a/b/y.po", "a/x.py", "top.txt"]);
        assert!(idx.is_dir("a/b/c") && idx.is_dir("a/b") && !idx.is_dir("a/x.py"));
    }
}

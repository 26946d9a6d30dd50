//! The dependency graph: which files each visited file depends on directly
//! (and why), built from the configuration's rules and the files' imports,
//! and the transitive closure of every input. Cycles are normal.

mod build;
mod closure;
pub mod entry_points;
pub mod explain;
pub mod visit_cache;

use std::sync::Arc;

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

use crate::files::FileDigest;

pub use build::{build, BuildInput};
pub use closure::{reaching, Closures};

/// Index of a node in `DepGraph::nodes` (nodes are sorted by path).
pub type NodeId = u32;

/// Why a file depends on another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// An import statement (or a literal dynamic import) resolved to this file.
    Import { module: Arc<str>, line: u32 },
    /// A string literal naming a module of a root package (`"pkg.mod:attr"`).
    ModuleString { value: Arc<str>, line: u32 },
    /// A declared entry point whose target lives in the repo.
    EntryPoint {
        spec: Arc<str>,
        declared_in: Arc<str>,
    },
    /// An action of a configured rule.
    Rule {
        rule: Arc<str>,
        action: RuleAction,
        regex: Option<Arc<str>>,
    },
    /// `visit_python_all_submodules_for`
    Submodules { package: Arc<str> },
    /// A configured global dependency.
    GlobalDep { pattern: Arc<str> },
}

/// The path actions of a rule (the others are reasons of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Visit,
    VisitSiblings,
    VisitGrandSiblings,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Visit => "visit",
            RuleAction::VisitSiblings => "visit_siblings",
            RuleAction::VisitGrandSiblings => "visit_grand_siblings",
        }
    }
}

impl std::fmt::Display for RuleAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Reason {
    /// Edges that came from a name rather than an import statement or a rule.
    pub fn is_by_name(&self) -> bool {
        matches!(
            self,
            Reason::ModuleString { .. } | Reason::EntryPoint { .. }
        )
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Import { module, line } => write!(f, "line {line}: import {module}"),
            Reason::ModuleString { value, line } => {
                write!(f, "line {line}: string {value:?} names a module")
            }
            Reason::EntryPoint { spec, declared_in } => {
                write!(f, "entry point {spec} declared in {declared_in}")
            }
            Reason::Rule {
                rule,
                action,
                regex: None,
            } => write!(f, "rule {rule:?}: {action}"),
            Reason::Rule {
                rule,
                action,
                regex: Some(regex),
            } => {
                write!(f, "rule {rule:?}, regex {regex:?}: {action}")
            }
            Reason::Submodules { package } => write!(f, "all submodules of {package}"),
            Reason::GlobalDep { pattern } => write!(f, "global dependency {pattern:?}"),
        }
    }
}

/// Where an edge points before nodes are numbered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    File(crate::walk::FileId),
    /// A named file that does not exist: hashed as absent, so creating it
    /// (a new `conftest.py`, say) changes every hash that depends on it.
    Absent(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub to: NodeId,
    pub reason: Reason,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Relative to the repo root, `/`-separated.
    pub path: String,
    pub digest: FileDigest,
    /// Direct dependencies, sorted by target.
    pub edges: Vec<Edge>,
}

/// An import inside a root package (or a relative one) that names no file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unresolved {
    pub file: String,
    pub module: String,
    pub line: u32,
}

#[derive(Debug, Default)]
pub struct DepGraph {
    pub nodes: Vec<Node>,
    node_by_path: FxHashMap<String, NodeId>,
    /// The inputs, in the order given.
    pub inputs: Vec<NodeId>,
    /// Nodes every input depends on (global dependencies, global entry points).
    pub globals: Vec<(NodeId, Reason)>,
    pub unresolved: Vec<Unresolved>,
    /// Things the user should know (parse fallbacks, missing global deps, unreadable files).
    pub warnings: Vec<String>,
}

impl DepGraph {
    pub fn node(&self, path: &str) -> Option<NodeId> {
        self.node_by_path.get(path).copied()
    }

    pub fn path(&self, node: NodeId) -> &str {
        &self.nodes[node as usize].path
    }
}

//! Building the graph: a parallel walk from the inputs and the global
//! dependencies, each file visited as soon as a visit names it. Visiting a
//! file reads it once (digest, imports, regex matches from the same bytes)
//! and applies every matching rule, unless the visit cache already knows
//! what a file with that content derives. Files no input reaches are never
//! read.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use regex::bytes::Captures;

use crate::config::{Actions, Config, EntryPointPolicy, Template};
use crate::files::state::{FileStamp, StateCache};
use crate::files::{known_digest, read_facts, Digest, FileDigest, FileFacts, Needs};
use crate::imports::resolve::{ModuleResolver, Resolution};
use crate::imports::scan::{ImportRef, ScanResult};
use crate::walk::{join, parent_dir, FileId, RepoIndex};

use super::entry_points::EntryPoint;
use super::visit_cache::{Derived, VisitCache};
use super::{DepGraph, Edge, Node, NodeId, Reason, RuleAction, Target, Unresolved};

/// Modules through which code loads entry points by name.
const ENTRY_POINT_LOADERS: &[&str] = &["importlib.metadata", "importlib_metadata", "pkg_resources"];

pub struct BuildInput<'a> {
    pub config: &'a Config,
    pub index: &'a RepoIndex,
    /// Repo-relative paths of the files to compute closures for.
    pub inputs: &'a [String],
    pub state: &'a StateCache,
    /// From `entry_points::for_config`.
    pub entry_points: Vec<EntryPoint>,
    /// What earlier runs learned under the same visit context.
    pub visit_cache: VisitCache,
}

/// The graph, plus what the run learned for the state and visit caches.
pub struct Built {
    pub graph: DepGraph,
    pub fresh: Vec<(String, FileStamp, Digest)>,
    pub scans: Vec<(Digest, Arc<ScanResult>)>,
    /// The visit cache this run used, and the visits it made afresh (to remember).
    pub visit_cache: VisitCache,
    pub fresh_visits: Vec<(FileId, Digest, Arc<Derived>)>,
}

struct Visit {
    facts: FileFacts,
    derived: Arc<Derived>,
    /// `derived` came from the visit cache (nothing new to remember).
    cached: bool,
}

pub fn build(input: BuildInput<'_>) -> Built {
    let inputs = input.inputs;
    let builder = Builder::new(input);
    builder.run(inputs)
}

struct Builder<'a> {
    config: &'a Config,
    index: &'a RepoIndex,
    state: &'a StateCache,
    cache: VisitCache,
    resolver: ModuleResolver<'a>,
    entry_points: Vec<EntryPoint>,
    glob_cache: Mutex<HashMap<String, Arc<Vec<FileId>>>>,
}

impl<'a> Builder<'a> {
    fn new(input: BuildInput<'a>) -> Self {
        let rules = &input.config.rules;
        Builder {
            config: input.config,
            index: input.index,
            state: input.state,
            cache: input.visit_cache,
            resolver: ModuleResolver::new(input.index, &rules.root_packages, &rules.source_roots),
            entry_points: input.entry_points,
            glob_cache: Mutex::new(HashMap::default()),
        }
    }

    fn run(self, inputs: &[String]) -> Built {
        let mut warnings = Vec::new();
        let (globals, global_warnings) = self.global_roots();
        warnings.extend(global_warnings);

        let mut roots = Vec::new();
        let mut absent: HashSet<String> = HashSet::default();
        let mut input_targets = Vec::new();
        for rel in inputs {
            let id = self.index.id(rel);
            input_targets.push(id);
            roots.extend(id);
        }
        for (target, _) in &globals {
            match target {
                Target::File(id) => roots.push(*id),
                Target::Absent(path) => {
                    absent.insert(path.clone());
                }
            }
        }
        let visits = self.walk(roots);
        for visit in visits.values() {
            for (target, _) in &visit.derived.edges {
                if let Target::Absent(path) = target {
                    absent.insert(path.clone());
                }
            }
        }
        let fresh_visits = visits
            .iter()
            .filter(|(_, visit)| !visit.cached)
            .filter_map(|(id, visit)| match &visit.facts.digest {
                FileDigest::Content(digest) => Some((*id, *digest, visit.derived.clone())),
                _ => None,
            })
            .collect();
        let mut built = self.assemble(inputs, input_targets, globals, visits, absent, warnings);
        built.fresh_visits = fresh_visits;
        built.visit_cache = self.cache;
        built
    }

    /// Visits every file reachable from `roots`. Each visit spawns the
    /// visits of the files it names as soon as it is done (no level-by-level
    /// barrier), so both cores stay busy until the walk runs out of files.
    fn walk(&self, roots: Vec<FileId>) -> HashMap<FileId, Visit> {
        let queued: Vec<AtomicBool> = (0..self.index.len())
            .map(|_| AtomicBool::new(false))
            .collect();
        let visits = Mutex::new(HashMap::default());
        let claim = |id: FileId| !queued[id as usize].swap(true, Ordering::Relaxed);
        fn visit_from<'s>(
            builder: &'s Builder<'_>,
            scope: &rayon::Scope<'s>,
            id: FileId,
            claim: &'s (dyn Fn(FileId) -> bool + Sync),
            visits: &'s Mutex<HashMap<FileId, Visit>>,
        ) {
            let visit = builder.visit(id);
            for (target, _) in &visit.derived.edges {
                if let Target::File(next) = target {
                    if claim(*next) {
                        let next = *next;
                        scope.spawn(move |scope| visit_from(builder, scope, next, claim, visits));
                    }
                }
            }
            // A panicking visit fails the whole walk (rayon re-raises it), so a
            // poisoned lock never hides a missing file.
            let mut visits = visits
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            visits.insert(id, visit);
        }
        rayon::scope(|scope| {
            for id in roots {
                if claim(id) {
                    let visits = &visits;
                    let claim = &claim;
                    scope.spawn(move |scope| visit_from(self, scope, id, claim, visits));
                }
            }
        });
        visits
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Numbers the nodes in path order and turns targets into edges.
    fn assemble(
        &self,
        inputs: &[String],
        input_targets: Vec<Option<FileId>>,
        globals: Vec<(Target, Reason)>,
        mut visits: HashMap<FileId, Visit>,
        absent: HashSet<String>,
        mut warnings: Vec<String>,
    ) -> Built {
        let mut keys: Vec<(String, Target)> = visits
            .keys()
            .map(|id| (self.index.path(*id).to_string(), Target::File(*id)))
            .chain(absent.into_iter().map(|p| (p.clone(), Target::Absent(p))))
            .collect();
        keys.sort();
        keys.dedup_by(|a, b| a.0 == b.0);
        let node_of: HashMap<Target, NodeId> = keys
            .iter()
            .enumerate()
            .map(|(i, (_, target))| (target.clone(), i as NodeId))
            .collect();

        let mut graph = DepGraph::default();
        let mut fresh = Vec::new();
        let mut scans = Vec::new();
        let mut unresolved = Vec::new();
        for (path, target) in keys {
            let node = match target {
                Target::Absent(_) => Node {
                    path: path.clone(),
                    digest: FileDigest::Absent,
                    edges: Vec::new(),
                },
                Target::File(id) => {
                    let Some(visit) = visits.remove(&id) else {
                        continue;
                    };
                    if let Some((stamp, digest)) = visit.facts.fresh {
                        fresh.push((path.clone(), stamp, digest));
                        if let (Some(scan), FileDigest::Content(d)) =
                            (&visit.facts.scan, &visit.facts.digest)
                        {
                            scans.push((*d, scan.clone()));
                        }
                    }
                    if let FileDigest::Unreadable(problem) = &visit.facts.digest {
                        warnings.push(format!(
                            "cannot read {path}: {problem}; tests that depend on it will run"
                        ));
                    }
                    warnings.extend(visit.derived.warnings.iter().cloned());
                    unresolved.extend(visit.derived.unresolved.iter().cloned());
                    let mut edges: Vec<Edge> = Vec::new();
                    let mut seen = HashSet::default();
                    for (target, reason) in &visit.derived.edges {
                        if let Some(to) = node_of.get(target).copied() {
                            if seen.insert(to) && *target != Target::File(id) {
                                edges.push(Edge {
                                    to,
                                    reason: reason.clone(),
                                });
                            }
                        }
                    }
                    edges.sort_by_key(|e| e.to);
                    Node {
                        path: path.clone(),
                        digest: visit.facts.digest,
                        edges,
                    }
                }
            };
            graph.node_by_path.insert(path, graph.nodes.len() as NodeId);
            graph.nodes.push(node);
        }
        for (rel, target) in inputs.iter().zip(input_targets) {
            match target.and_then(|id| node_of.get(&Target::File(id))) {
                Some(node) => graph.inputs.push(*node),
                None => warnings.push(format!(
                    "{rel}: not in the repository (missing, excluded or outside the root)"
                )),
            }
        }
        let mut seen_globals = HashSet::default();
        for (target, reason) in globals {
            if let Some(node) = node_of.get(&target) {
                if seen_globals.insert(*node) {
                    graph.globals.push((*node, reason));
                }
            }
        }
        unresolved.sort_by(|a: &Unresolved, b| {
            (&a.file, a.line, &a.module).cmp(&(&b.file, b.line, &b.module))
        });
        graph.unresolved = unresolved;
        graph.warnings = warnings;
        Built {
            graph,
            fresh,
            scans,
            visit_cache: VisitCache::disabled(),
            fresh_visits: Vec::new(),
        }
    }

    /// Global dependencies and the entry points every input depends on.
    fn global_roots(&self) -> (Vec<(Target, Reason)>, Vec<String>) {
        let mut roots = Vec::new();
        let mut warnings = Vec::new();
        let inferred = self.config.inferred.contains(&"global_deps");
        for pattern in &self.config.rules.global_deps {
            let reason = Reason::GlobalDep {
                pattern: pattern.as_str().into(),
            };
            for target in self.expand(pattern) {
                if let Target::Absent(path) = &target {
                    if inferred {
                        continue; // a default that does not apply to this project
                    }
                    warnings.push(format!(
                        "global dependency {path} does not exist; hashed as absent"
                    ));
                }
                roots.push((target, reason.clone()));
            }
        }
        for entry_point in &self.entry_points {
            let global = match self.config.rules.entry_points {
                EntryPointPolicy::Global => true,
                EntryPointPolicy::Loaders => entry_point.group == "pytest11",
                EntryPointPolicy::Off => false,
            };
            if global {
                roots.extend(self.entry_point_targets(entry_point));
            }
        }
        (roots, warnings)
    }

    fn entry_point_targets(&self, entry_point: &EntryPoint) -> Vec<(Target, Reason)> {
        let reason = Reason::EntryPoint {
            spec: entry_point.spec.as_str().into(),
            declared_in: entry_point.declared_in.as_str().into(),
        };
        match self.resolver.resolve_longest_prefix(&entry_point.module) {
            Some((_, files)) => files
                .into_iter()
                .map(|f| (Target::File(f), reason.clone()))
                .collect(),
            None => Vec::new(),
        }
    }

    fn visit(&self, id: FileId) -> Visit {
        let rel = self.index.path(id);
        let absolute = self.index.absolute(id);
        // Unchanged since the visit cache learned it: nothing to read or resolve.
        if let Some(digest) = self.cache.digest_of(id) {
            if known_digest(&absolute, rel, self.state).as_ref() == Some(digest) {
                if let Some(derived) = self.cache.get(id, digest) {
                    return Visit {
                        facts: FileFacts::known(*digest),
                        derived,
                        cached: true,
                    };
                }
            }
        }
        let rules: Vec<(&Arc<str>, &Actions)> = self
            .config
            .rules
            .path_rules
            .iter()
            .filter(|rule| rule.matcher.is_match(rel) && !rule.actions.excludes(rel))
            .map(|rule| (&rule.pattern, &rule.actions))
            .collect();
        let mut needs = Needs::default();
        for (_, actions) in &rules {
            accumulate_needs(actions, &mut needs);
        }
        let facts = read_facts(&absolute, rel, needs, self.state);
        if let FileDigest::Content(digest) = &facts.digest {
            // Touched, but the same content: it derives the same dependencies.
            if let Some(derived) = self.cache.get(id, digest) {
                return Visit {
                    facts,
                    derived,
                    cached: true,
                };
            }
        }
        let mut derived = Derived::default();
        if let Some(fallback) = facts.scan.as_ref().and_then(|s| s.fallback.as_ref()) {
            derived.warnings.push(format!(
                "{rel}:{}: cannot tokenize ({}); used a conservative import scan",
                fallback.line, fallback.reason
            ));
        }
        for (rule, actions) in rules {
            self.apply(rel, rule, actions, None, &facts, &mut derived);
        }
        Visit {
            facts,
            derived: Arc::new(derived),
            cached: false,
        }
    }

    /// Applies `actions` of `rule` to the file `rel`; `regex` and `captures`
    /// are set inside a regex rule, once per match.
    fn apply(
        &self,
        rel: &str,
        rule: &Arc<str>,
        actions: &Actions,
        regex: Option<(&Arc<str>, &Captures)>,
        facts: &FileFacts,
        out: &mut Derived,
    ) {
        let fill = |template: &Template| match regex {
            Some((_, captures)) => template.expand(|group| {
                captures
                    .get(group)
                    .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                    .unwrap_or_default()
            }),
            None => template.as_str().to_string(),
        };
        let reason = |action: RuleAction| Reason::Rule {
            rule: rule.clone(),
            action,
            regex: regex.map(|(pattern, _)| pattern.clone()),
        };
        for template in &actions.visit {
            let targets = self.expand(&fill(template));
            out.edges
                .extend(targets.into_iter().map(|t| (t, reason(RuleAction::Visit))));
        }
        let dir = parent_dir(rel);
        for template in &actions.visit_siblings {
            let targets = self.expand(&join(dir, &fill(template)));
            out.edges.extend(
                targets
                    .into_iter()
                    .map(|t| (t, reason(RuleAction::VisitSiblings))),
            );
        }
        for template in &actions.visit_grand_siblings {
            let name = fill(template);
            // The file's folder and every folder above it, the repo root included.
            let mut current = Some(dir);
            while let Some(folder) = current {
                let targets = self.expand(&join(folder, &name));
                out.edges.extend(
                    targets
                        .into_iter()
                        .map(|t| (t, reason(RuleAction::VisitGrandSiblings))),
                );
                current = (!folder.is_empty()).then(|| parent_dir(folder));
            }
        }
        if actions.visit_imported_python_modules {
            self.apply_imports(rel, facts, out);
        }
        for template in &actions.visit_python_all_submodules_for {
            let name = fill(template);
            let module = self.module_for_name(&name, facts);
            let files = module
                .map(|m| self.resolver.all_submodules(&m))
                .unwrap_or_default();
            if files.is_empty() {
                out.warnings.push(format!(
                    "{rel}: visit_python_all_submodules_for {name:?} names no package of the repo"
                ));
            }
            let reason = Reason::Submodules {
                package: name.into(),
            };
            out.edges
                .extend(files.into_iter().map(|f| (Target::File(f), reason.clone())));
        }
        if actions.regex_rules.is_empty() {
            return;
        }
        let Some(text) = facts.text.clone() else {
            return;
        };
        for regex_rule in &actions.regex_rules {
            if regex_rule.actions.excludes(rel) {
                continue;
            }
            for captures in regex_rule.regex.captures_iter(&text) {
                self.apply(
                    rel,
                    rule,
                    &regex_rule.actions,
                    Some((&regex_rule.pattern, &captures)),
                    facts,
                    out,
                );
            }
        }
    }

    fn apply_imports(&self, rel: &str, facts: &FileFacts, out: &mut Derived) {
        let Some(scan) = facts.scan.clone() else {
            return;
        };
        for import in &scan.imports {
            let (main, submodules) = self.resolver.resolve_import(rel, import);
            let reason = Reason::Import {
                module: display_module(import).into(),
                line: import.line,
            };
            match main {
                Resolution::Files(files) => out
                    .edges
                    .extend(files.into_iter().map(|f| (Target::File(f), reason.clone()))),
                Resolution::Missing if submodules.is_empty() => out.unresolved.push(Unresolved {
                    file: rel.to_string(),
                    module: display_module(import),
                    line: import.line,
                }),
                Resolution::Missing | Resolution::Namespace | Resolution::External => {}
            }
            out.edges.extend(
                submodules
                    .into_iter()
                    .map(|f| (Target::File(f), reason.clone())),
            );
        }
        if self.config.rules.module_strings {
            for string in &scan.module_strings {
                if let Some((_, files)) = self.resolver.resolve_longest_prefix(&string.value) {
                    let reason = Reason::ModuleString {
                        value: string.value.as_str().into(),
                        line: string.line,
                    };
                    out.edges
                        .extend(files.into_iter().map(|f| (Target::File(f), reason.clone())));
                }
            }
        }
        if self.config.rules.entry_points == EntryPointPolicy::Loaders && imports_a_loader(&scan) {
            for entry_point in &self.entry_points {
                out.edges.extend(self.entry_point_targets(entry_point));
            }
        }
    }

    /// A module name, or a name the file binds to a module (`from a import b`, `import a.b as c`).
    fn module_for_name(&self, name: &str, facts: &FileFacts) -> Option<String> {
        let top = name.split('.').next().unwrap_or(name);
        if self.resolver.is_root_package(top) {
            return Some(name.to_string());
        }
        let scan = facts.scan.as_ref()?;
        for import in scan.imports.iter().filter(|i| i.level == 0) {
            if import.names.iter().any(|n| n == name) {
                return Some(format!("{}.{name}", import.module));
            }
        }
        let text = facts.text.as_ref()?;
        let alias = regex::bytes::Regex::new(&format!(
            r"import\s+([\w.]+)\s+as\s+{}\b",
            regex::escape(name)
        ))
        .ok()?;
        let captures = alias.captures(text)?;
        captures
            .get(1)
            .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
    }

    /// Files a path or glob names. A plain path that does not exist is an
    /// absent target; a plain path naming a folder means every file below it.
    fn expand(&self, pattern: &str) -> Vec<Target> {
        let Some(pattern) = normalize(pattern) else {
            return Vec::new();
        };
        if !has_glob_meta(&pattern) {
            if let Some(id) = self.index.id(&pattern) {
                return vec![Target::File(id)];
            }
            if self.index.is_dir(&pattern) && !pattern.is_empty() {
                return self.index.files_under(&pattern).map(Target::File).collect();
            }
            return vec![Target::Absent(pattern)];
        }
        let cached = self
            .glob_cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(&pattern).cloned());
        let files = match cached {
            Some(files) => files,
            None => {
                let files = Arc::new(self.match_glob(&pattern));
                if let Ok(mut cache) = self.glob_cache.lock() {
                    cache.insert(pattern.clone(), files.clone());
                }
                files
            }
        };
        files.iter().map(|id| Target::File(*id)).collect()
    }

    fn match_glob(&self, pattern: &str) -> Vec<FileId> {
        let Ok(glob) = crate::config::build_glob(pattern) else {
            return Vec::new();
        };
        let matcher = glob.compile_matcher();
        // Only files below the pattern's literal folder prefix can match.
        let literal_end = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
        let prefix = pattern[..literal_end]
            .rsplit_once('/')
            .map_or("", |(dir, _)| dir);
        self.index
            .files_under(prefix)
            .filter(|id| matcher.is_match(self.index.path(*id)))
            .collect()
    }
}

fn accumulate_needs(actions: &Actions, needs: &mut Needs) {
    needs.imports |= actions.visit_imported_python_modules
        || !actions.visit_python_all_submodules_for.is_empty();
    needs.text |=
        !actions.regex_rules.is_empty() || !actions.visit_python_all_submodules_for.is_empty();
    for rule in &actions.regex_rules {
        accumulate_needs(&rule.actions, needs);
    }
}

fn imports_a_loader(scan: &ScanResult) -> bool {
    scan.imports.iter().any(|i| {
        i.level == 0
            && (ENTRY_POINT_LOADERS.contains(&i.module.as_str())
                || (i.module == "importlib" && i.names.iter().any(|n| n == "metadata")))
    })
}

/// `from ..a import b` is shown as `..a`.
fn display_module(import: &ImportRef) -> String {
    format!("{}{}", ".".repeat(import.level as usize), import.module)
}

fn has_glob_meta(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Resolves `.` and `..` in a relative path; `None` when it leaves the repo root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

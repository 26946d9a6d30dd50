//! `dryci graph` and `dryci why`: the dependency graph's outputs, covering
//! repo_dagger's flags (also accepted with its single-dash spelling) and more.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::analysis::{
    analyze, dependency_hashes, Analysis, AnalysisError, Request, StateCacheMode,
};
use crate::config::FrontEnd;
use crate::graph::explain;
use crate::hash::memo::InputHash;
use crate::hash::DependencyHash;
use crate::hash::Salt;

use super::{CliError, ExitStatus};

/// Options shared by `graph` and `why`.
#[derive(Debug, clap::Args)]
pub struct CommonArgs {
    /// Repository root (default: the nearest folder above the current one
    /// holding repo_dagger.yaml, pyproject.toml or .git).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Configuration file (repo_dagger.yaml, or a pyproject.toml with [tool.dryci]).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Free text mixed into every hash.
    #[arg(long = "hash-salt", env = "DRYCI_SALT", default_value = "")]
    pub salt: String,
    /// Do not read or write the caches under .dryci/ (state, visits, hash memo).
    #[arg(long)]
    pub no_state_cache: bool,
    /// Print timings and every warning.
    #[arg(long, short)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Inputs to use instead of the configuration's `inputs` (comma separated).
    #[arg(long = "input-files", value_delimiter = ',')]
    pub input_files: Option<Vec<PathBuf>>,
    /// Write {input: dependency hash} as JSON to FILE (`-` for stdout). The default output.
    #[arg(long, value_name = "FILE")]
    pub out_dep_hashes: Option<PathBuf>,
    /// Write every visited file's direct dependencies as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub out_relations: Option<PathBuf>,
    /// With --out-relations: each dependency with why (import, rule, by name...).
    #[arg(long)]
    pub with_reasons: bool,
    /// Write the closure of --out-recursive-deps-for as JSON to FILE.
    #[arg(long, value_name = "FILE", requires = "out_recursive_deps_for")]
    pub out_recursive_deps: Option<PathBuf>,
    #[arg(long, value_name = "INPUT", requires = "out_recursive_deps")]
    pub out_recursive_deps_for: Option<PathBuf>,
    /// Print each input's closure size.
    #[arg(long)]
    pub print_dep_stats: bool,
    /// Print for each file how many inputs depend on it.
    #[arg(long)]
    pub print_rev_dep_stats: bool,
    #[arg(long, value_enum, default_value = "count")]
    pub stats_sort: StatsSort,
    /// Print the configuration in force, with what was inferred.
    #[arg(long)]
    pub show_config: bool,
    /// Print imports inside root packages that name no file.
    #[arg(long)]
    pub unresolved: bool,
    /// Print a Graphviz DOT picture of INPUT's dependencies.
    #[arg(long, value_name = "INPUT")]
    pub dot: Option<PathBuf>,
    /// Print a Mermaid picture of INPUT's dependencies.
    #[arg(long, value_name = "INPUT")]
    pub mermaid: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatsSort {
    Count,
    Name,
}

#[derive(Debug, clap::Args)]
pub struct WhyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The input (test file).
    pub input: PathBuf,
    /// The file it may depend on.
    pub dependency: PathBuf,
}

/// repo_dagger's flags, which Go lets users write with one dash.
const SINGLE_DASH_FLAGS: &[&str] = &[
    "out-dep-hashes",
    "out-relations",
    "out-recursive-deps",
    "out-recursive-deps-for",
    "print-dep-stats",
    "print-rev-dep-stats",
    "stats-sort",
    "input-files",
    "hash-salt",
    "verbose",
    "config",
];

/// `-out-dep-hashes x` -> `--out-dep-hashes x` (and `-flag=value`).
pub fn normalize_single_dash(arg: String) -> String {
    let Some(rest) = arg.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
        return arg;
    };
    let name = rest.split('=').next().unwrap_or(rest);
    if SINGLE_DASH_FLAGS.contains(&name) {
        format!("-{arg}")
    } else {
        arg
    }
}

fn request(common: &CommonArgs, inputs: Option<Vec<PathBuf>>) -> Result<Request, CliError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::new("cannot read the current folder").with_source(e))?;
    let root = match &common.root {
        Some(root) => root.clone(),
        None => discover_root(&cwd),
    };
    // Inputs on the command line are relative to where the user stands.
    let inputs = inputs.map(|list| {
        list.into_iter()
            .map(|p| if p.is_absolute() { p } else { cwd.join(p) })
            .collect()
    });
    Ok(Request {
        root: std::fs::canonicalize(&root).unwrap_or(root),
        config_path: common.config.clone(),
        inputs,
        salt: Salt::new(common.salt.clone(), None),
        state_cache: if common.no_state_cache {
            StateCacheMode::Off
        } else {
            StateCacheMode::Default
        },
        function_level: None,
    })
}

fn discover_root(cwd: &Path) -> PathBuf {
    let markers = [
        "repo_dagger.yaml",
        "repo_dagger.yml",
        "pyproject.toml",
        ".git",
    ];
    cwd.ancestors()
        .find(|dir| markers.iter().any(|m| dir.join(m).exists()))
        .unwrap_or(cwd)
        .to_path_buf()
}

fn analysis_error(err: AnalysisError) -> CliError {
    let hint = err.hint(FrontEnd::Cli);
    let error = CliError::new(err.to_string());
    match hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

/// Prints the first ten warnings, or all of them when `verbose`.
fn print_warnings(warnings: &[String], verbose: bool) {
    let shown = if verbose { warnings.len() } else { 10 };
    for warning in warnings.iter().take(shown) {
        eprintln!("warning: {warning}");
    }
    if warnings.len() > shown {
        eprintln!(
            "warning: ... and {} more (use --verbose)",
            warnings.len() - shown
        );
    }
}

fn run_analysis(request: &Request, verbose: bool) -> Result<Analysis, CliError> {
    let analysis = analyze(request).map_err(analysis_error)?;
    print_warnings(&analysis.warnings, verbose);
    if verbose {
        let t = analysis.timings;
        eprintln!(
            "dryci: {} files indexed, {} in the graph, {} inputs; index {:?}, graph {:?}, hashes {:?}, state cache {:?}",
            analysis.files_indexed,
            analysis.graph.nodes.len(),
            analysis.inputs.len(),
            t.index,
            t.graph,
            t.hashes,
            t.state_save
        );
    }
    Ok(analysis)
}

pub fn run(args: GraphArgs) -> Result<ExitStatus, CliError> {
    let request = request(&args.common, args.input_files.clone())?;
    if !needs_graph(&args) {
        return run_hashes_only(&args, &request);
    }
    let analysis = run_analysis(&request, args.common.verbose)?;
    let graph = &analysis.graph;
    let mut wrote_something = false;

    if args.show_config {
        print_config(&analysis)?;
        wrote_something = true;
    }
    if let Some(out) = &args.out_relations {
        let relations: BTreeMap<&str, serde_json::Value> = graph
            .nodes
            .iter()
            .filter(|n| n.digest != crate::files::FileDigest::Absent)
            .map(|node| {
                let deps: Vec<serde_json::Value> = node
                    .edges
                    .iter()
                    .filter_map(|e| {
                        let to = graph.path(e.to);
                        let absent = is_absent(graph, e.to);
                        if args.with_reasons {
                            Some(
                                serde_json::json!({"to": to, "absent": absent, "reason": e.reason}),
                            )
                        } else {
                            (!absent).then(|| serde_json::json!(to))
                        }
                    })
                    .collect();
                (node.path.as_str(), serde_json::Value::Array(deps))
            })
            .collect();
        write_json(out, &relations)?;
        wrote_something = true;
    }
    if let (Some(out), Some(input)) = (&args.out_recursive_deps, &args.out_recursive_deps_for) {
        let result = find_input(&request, &analysis, input)?;
        let closure = analysis.closure(result);
        let paths: Vec<&str> = existing(graph, &closure).map(|n| graph.path(n)).collect();
        write_json(out, &paths)?;
        wrote_something = true;
    }
    if args.print_dep_stats {
        let mut rows: Vec<(&str, usize)> = analysis
            .inputs
            .iter()
            .map(|i| {
                (
                    i.path.as_str(),
                    existing(graph, &analysis.closure(i)).count(),
                )
            })
            .collect();
        sort_rows(&mut rows, args.stats_sort);
        print_rows("dependencies", &rows)?;
        wrote_something = true;
    }
    if args.print_rev_dep_stats {
        let mut counts = vec![0usize; graph.nodes.len()];
        for input in &analysis.inputs {
            for node in existing(graph, &analysis.closure(input)) {
                counts[node as usize] += 1;
            }
        }
        let mut rows: Vec<(&str, usize)> = counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(n, c)| (graph.path(n as u32), *c))
            .collect();
        sort_rows(&mut rows, args.stats_sort);
        print_rows("dependents", &rows)?;
        wrote_something = true;
    }
    if args.unresolved {
        for u in &graph.unresolved {
            println!(
                "{}:{}: {} names no file of the repo",
                u.file, u.line, u.module
            );
        }
        wrote_something = true;
    }
    type Render = fn(&crate::graph::DepGraph, u32, &[u32]) -> String;
    let pictures: [(&Option<PathBuf>, Render); 2] = [
        (&args.dot, explain::to_dot),
        (&args.mermaid, explain::to_mermaid),
    ];
    for (picture, render) in pictures {
        if let Some(input) = picture {
            let result = find_input(&request, &analysis, input)?;
            let node = result
                .node
                .ok_or_else(|| CliError::new(format!("{}: no graph node", result.path)))?;
            print!("{}", render(graph, node, &analysis.closure(result)));
            wrote_something = true;
        }
    }
    if args.out_dep_hashes.is_some() || !wrote_something {
        let rows: Vec<InputHash> = analysis.inputs.iter().map(InputHash::from).collect();
        write_dep_hashes(args.out_dep_hashes.as_deref(), &rows)?;
    }
    Ok(ExitStatus::Success)
}

/// Whether any requested output needs the graph itself, not only the hashes.
fn needs_graph(args: &GraphArgs) -> bool {
    args.show_config
        || args.out_relations.is_some()
        || args.out_recursive_deps.is_some()
        || args.print_dep_stats
        || args.print_rev_dep_stats
        || args.unresolved
        || args.dot.is_some()
        || args.mermaid.is_some()
}

/// `dryci graph` when only dependency hashes are asked for: they may be
/// replayed from the hash memo without building the graph.
fn run_hashes_only(args: &GraphArgs, request: &Request) -> Result<ExitStatus, CliError> {
    let run = dependency_hashes(request).map_err(analysis_error)?;
    print_warnings(&run.warnings, args.common.verbose);
    if args.common.verbose {
        let t = run.timings;
        eprintln!(
            "dryci: {} files indexed, {} in the graph, {} inputs{}; index {:?}, graph {:?}, hashes {:?}, state cache {:?}",
            run.files_indexed,
            run.node_count,
            run.inputs.len(),
            if run.remembered {
                " (replayed: nothing changed since a recent run)"
            } else {
                ""
            },
            t.index,
            t.graph,
            t.hashes,
            t.state_save
        );
    }
    write_dep_hashes(args.out_dep_hashes.as_deref(), &run.inputs)?;
    Ok(ExitStatus::Success)
}

/// Writes {input: hash} to `out` (stdout by default) and warns about every
/// input without a hash.
fn write_dep_hashes(out: Option<&Path>, rows: &[InputHash]) -> Result<(), CliError> {
    let hashes: BTreeMap<&str, Option<&str>> = rows
        .iter()
        .map(|row| (row.path.as_str(), row.hash().map(DependencyHash::as_str)))
        .collect();
    write_json(out.unwrap_or(Path::new("-")), &hashes)?;
    for row in rows {
        if let Some(problem) = row.problem() {
            eprintln!("warning: {}: no dependency hash: {problem}", row.path);
        }
    }
    Ok(())
}

pub fn run_why(args: WhyArgs) -> Result<ExitStatus, CliError> {
    let request = request(&args.common, Some(vec![args.input.clone()]))?;
    let analysis = run_analysis(&request, args.common.verbose)?;
    let graph = &analysis.graph;
    let input = find_input(&request, &analysis, &args.input)?;
    let from = input
        .node
        .ok_or_else(|| CliError::new(format!("{}: no graph node", input.path)))?;
    let wanted = relative_to_root(&request, &args.dependency);
    let Some(to) = graph.node(&wanted) else {
        println!("{wanted} is not a dependency of {}", input.path);
        return Ok(ExitStatus::Failure);
    };
    match explain::why(graph, from, to) {
        Some(chain) => {
            println!("{}", input.path);
            for link in chain {
                println!("  -> {}  ({})", graph.path(link.to), link.reason);
            }
            Ok(ExitStatus::Success)
        }
        None => {
            println!("{wanted} is not a dependency of {}", input.path);
            Ok(ExitStatus::Failure)
        }
    }
}

fn is_absent(graph: &crate::graph::DepGraph, node: u32) -> bool {
    matches!(
        graph.nodes[node as usize].digest,
        crate::files::FileDigest::Absent
    )
}

/// The nodes of `closure` that are files (absent names are hashed, not listed).
fn existing<'a>(
    graph: &'a crate::graph::DepGraph,
    closure: &'a [u32],
) -> impl Iterator<Item = u32> + 'a {
    closure.iter().copied().filter(|n| !is_absent(graph, *n))
}

fn relative_to_root(request: &Request, path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let absolute = std::fs::canonicalize(&absolute).unwrap_or(absolute);
    crate::walk::relative(&request.root, &absolute).unwrap_or_else(|| path.display().to_string())
}

/// The analysis row of `input`, which must be one of the analysed inputs.
fn find_input<'a>(
    request: &Request,
    analysis: &'a Analysis,
    input: &Path,
) -> Result<&'a crate::analysis::InputResult, CliError> {
    let rel = relative_to_root(request, input);
    let found = analysis.inputs.iter().find(|i| i.path == rel);
    match found {
        Some(result) if result.node.is_some() => Ok(result),
        Some(result) => Err(CliError::new(match result.problem() {
            Some(problem) => format!("{}: {problem}", result.path),
            None => format!("{}: cannot be analysed", result.path),
        })),
        None => Err(CliError::new(format!("{rel} is not one of the inputs"))
            .with_hint("name it with --input-files, or check the configuration's `inputs`")),
    }
}

fn sort_rows(rows: &mut [(&str, usize)], sort: StatsSort) {
    match sort {
        StatsSort::Count => rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0))),
        StatsSort::Name => rows.sort(),
    }
}

fn print_rows(what: &str, rows: &[(&str, usize)]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let write = |out: &mut std::io::StdoutLock<'_>| -> std::io::Result<()> {
        writeln!(out, "{what:>12}  file")?;
        for (path, count) in rows {
            writeln!(out, "{count:>12}  {path}")?;
        }
        Ok(())
    };
    write(&mut out).map_err(|e| CliError::new("cannot write to stdout").with_source(e))
}

fn print_config(analysis: &Analysis) -> Result<(), CliError> {
    let source = match &analysis.config.source {
        crate::config::ConfigSource::Yaml(p) | crate::config::ConfigSource::Pyproject(p) => {
            p.display().to_string()
        }
        crate::config::ConfigSource::Defaults => "none found: defaults".to_string(),
    };
    println!("# configuration: {source}");
    println!("# root: {}", analysis.config.root.display());
    println!(
        "# inferred: {}",
        if analysis.config.inferred.is_empty() {
            "nothing".to_string()
        } else {
            analysis.config.inferred.join(", ")
        }
    );
    println!("# fingerprint: {}", analysis.config.fingerprint);
    let yaml = serde_norway::to_string(&analysis.config.effective)
        .map_err(|e| CliError::new("cannot print the configuration").with_source(e))?;
    print!("{yaml}");
    Ok(())
}

fn write_json(out: &Path, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::new("cannot encode JSON").with_source(e))?;
    if out == Path::new("-") {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(out, format!("{text}\n"))
        .map_err(|e| CliError::new(format!("cannot write {}", out.display())).with_source(e))
}

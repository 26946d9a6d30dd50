//! `dryci explain` and `dryci observed`: what the last `pytest --dryci` run
//! left in `.dryci/last-run.json` (written by the plugin's `last_run.py`),
//! read back from the repository that holds it: why each test that ran was
//! not served, and what tests read at run time outside their static graph.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CliError, ExitStatus};

const LAST_RUN: &str = ".dryci/last-run.json";
const VERSION: u32 = 1;

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Where to look for `.dryci/last-run.json` (default: the current
    /// directory and its parents).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only the tests whose node id contains one of these.
    pub filters: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ObservedArgs {
    /// Where to look for `.dryci/last-run.json` (default: the current
    /// directory and its parents).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Print the report as JSON (the format of `pytest --dryci-observed`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Deserialize)]
struct LastRun {
    version: u32,
    finished_at: i64,
    served: u64,
    ran: Vec<Ran>,
    /// `None` when the run could not make the report.
    observed: Option<Vec<ObservedFile>>,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct Ran {
    node_id: String,
    why: String,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct ObservedFile {
    test_file: String,
    #[serde(default)]
    files: Vec<String>,
    #[serde(default)]
    listings: Vec<String>,
    #[serde(default)]
    modules: Vec<String>,
    #[serde(default)]
    environment: Vec<String>,
    #[serde(default)]
    subprocesses: Vec<String>,
    #[serde(default)]
    network: Vec<String>,
    #[serde(default)]
    path_rule: Option<serde_json::Value>,
}

pub fn run_explain(args: ExplainArgs) -> Result<ExitStatus, CliError> {
    let (path, last) = read_last_run(args.root.as_deref())?;
    let ran: Vec<&Ran> = last
        .ran
        .iter()
        .filter(|r| args.filters.is_empty() || args.filters.iter().any(|f| r.node_id.contains(f)))
        .collect();
    if args.json {
        print_json(&serde_json::json!({
            "finished_at": last.finished_at,
            "served": last.served,
            "ran": ran,
        }));
        return Ok(ExitStatus::Success);
    }
    println!(
        "{}: the last run ({}) ran {} tests and served {}",
        path.display(),
        utc(last.finished_at),
        last.ran.len(),
        last.served
    );
    for r in &ran {
        println!("ran {}: {}", r.node_id, r.why);
    }
    if ran.is_empty() && !args.filters.is_empty() {
        println!("no test that ran matches {}", args.filters.join(", "));
    }
    Ok(ExitStatus::Success)
}

pub fn run_observed(args: ObservedArgs) -> Result<ExitStatus, CliError> {
    let (path, last) = read_last_run(args.root.as_deref())?;
    let Some(report) = last.observed else {
        return Err(CliError::new(format!(
            "{}: the last run could not make its observed-inputs report",
            path.display()
        ))
        .with_hint("its terminal summary says why (a `dryci: degraded:` line)"));
    };
    if args.json {
        print_json(&serde_json::json!({ "version": 1, "test_files": report }));
        return Ok(ExitStatus::Success);
    }
    println!(
        "{}: in the last run ({}), {} test files read inputs outside their static graph, \
         started subprocesses or used the network",
        path.display(),
        utc(last.finished_at),
        report.len()
    );
    for file in &report {
        println!("{}", file.test_file);
        let kinds = [
            ("file", &file.files),
            ("listing", &file.listings),
            ("module", &file.modules),
            ("environment variable", &file.environment),
            ("subprocess", &file.subprocesses),
            ("connection", &file.network),
        ];
        for (kind, items) in kinds {
            for item in items {
                println!("  {kind} {item}");
            }
        }
        if let Some(rule) = &file.path_rule {
            println!("  to make its file inputs static, add to path_rules: {rule}");
        }
    }
    Ok(ExitStatus::Success)
}

/// Finds and reads `.dryci/last-run.json` in `root`, or in the current
/// directory or its closest parent that has one.
fn read_last_run(root: Option<&Path>) -> Result<(PathBuf, LastRun), CliError> {
    let path = match root {
        Some(root) => root.join(LAST_RUN),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| CliError::new("cannot read the current directory").with_source(e))?;
            cwd.ancestors()
                .map(|dir| dir.join(LAST_RUN))
                .find(|path| path.is_file())
                .ok_or_else(|| {
                    CliError::new(format!("no {LAST_RUN} in {} or its parents", cwd.display()))
                        .with_hint("run `pytest --dryci` first, or give --root")
                })?
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::new(format!("cannot read {}", path.display())).with_source(e))?;
    let last: LastRun = serde_json::from_str(&text).map_err(|e| {
        CliError::new(format!("{} is not a last-run record", path.display()))
            .with_source(e)
            .with_hint("the next `pytest --dryci` run replaces it")
    })?;
    if last.version != VERSION {
        return Err(CliError::new(format!(
            "{} has version {}, this dryci reads version {VERSION}",
            path.display(),
            last.version
        ))
        .with_hint("the next `pytest --dryci` run replaces it"));
    }
    Ok((path, last))
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Seconds since the epoch as an RFC 3339 time in UTC.
fn utc(seconds: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
    }
}

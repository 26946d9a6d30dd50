//! `dryci` subcommands. `run` parses arguments and dispatches; every
//! subcommand returns `Result<ExitStatus, CliError>` and errors are printed
//! here, once, with their cause chain and a hint.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod graph;
mod report;
#[cfg(feature = "server")]
mod server;

/// An error from a subcommand: what failed, a hint for the user, and the cause chain.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub hint: Option<String>,
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl CliError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            source: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
}

/// Prints `error: ...`, one `Cause: ...` line per source, and `hint: ...`.
fn report_error(err: &CliError) {
    eprintln!("error: {}", err.message);
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err
        .source
        .as_deref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(c) = cause {
        eprintln!("  Cause: {c}");
        cause = c.source();
    }
    if let Some(hint) = &err.hint {
        eprintln!("hint: {hint}");
    }
}

/// Exit codes: 0 success, 1 a finding (e.g. `why` found no chain), 2 an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    Failure,
    Error,
}

impl ExitStatus {
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Error => 2,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "dryci",
    version,
    about = "Skip tests that already passed with identical inputs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the dependency graph and print hashes, relations, closures and stats.
    Graph(graph::GraphArgs),
    /// Show the chain of imports and rules that makes FILE a dependency of INPUT.
    Why(graph::WhyArgs),
    /// Say why each test of the last `pytest --dryci` run ran instead of being served.
    Explain(report::ExplainArgs),
    /// List what the tests of the last `pytest --dryci` run read outside their static graph.
    Observed(report::ObservedArgs),
    /// Run the team cache server (HTTP API v1 and v2).
    #[cfg(feature = "server")]
    Server(server::ServerArgs),
    /// Manage the server's users and tokens.
    #[cfg(feature = "server")]
    Admin(server::AdminArgs),
}

/// Runs the command line with `args` (program name first) and returns the exit code.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args = args
        .into_iter()
        .map(|a| graph::normalize_single_dash(a.into().to_string_lossy().into_owned()));
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { 2 } else { 0 };
        }
    };
    let result = match cli.command {
        Command::Graph(args) => graph::run(args),
        Command::Why(args) => graph::run_why(args),
        Command::Explain(args) => report::run_explain(args),
        Command::Observed(args) => report::run_observed(args),
        #[cfg(feature = "server")]
        Command::Server(args) => server::run_server(args),
        #[cfg(feature = "server")]
        Command::Admin(args) => server::run_admin(args),
    };
    match result {
        Ok(status) => status.code(),
        Err(err) => {
            report_error(&err);
            ExitStatus::Error.code()
        }
    }
}

/// Entry point of the `dryci` binary.
pub fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    ExitCode::from(run(args) as u8)
}

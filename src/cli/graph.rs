//! `dryci graph`: the dependency graph's outputs.

use super::{CliError, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct GraphArgs {}

pub fn run(_args: GraphArgs) -> Result<ExitStatus, CliError> {
    Err(CliError::new("dryci graph is not built yet"))
}

//! `dryci server` and `dryci admin`: argument parsing and dispatch to `crate::server`.
//! (Owned by the server work; see issue 4.)

use super::{CliError, ExitStatus};

#[derive(Debug, clap::Args)]
pub struct ServerArgs {}

#[derive(Debug, clap::Args)]
pub struct AdminArgs {}

pub fn run_server(_args: ServerArgs) -> Result<ExitStatus, CliError> {
    Err(CliError::new("the server is not built yet"))
}

pub fn run_admin(_args: AdminArgs) -> Result<ExitStatus, CliError> {
    Err(CliError::new("the admin commands are not built yet"))
}

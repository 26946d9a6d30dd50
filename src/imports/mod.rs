//! Python imports: scanning source text (`scan`) and resolving module names
//! to the repository's files (`resolve`).

pub mod resolve;
pub mod scan;

//! DryCI: a test-result cache for pytest.
//!
//! The core (`config` -> `imports` -> `graph` -> `hash`) turns a repository
//! into one dependency hash per test file; `cache` and `server` share the
//! wire types in `protocol`. `session` composes the core and the cache into
//! what one pytest run needs. The bindings (`python`) and the command line
//! (`cli`) sit on top and compose them.

/// The graph build allocates many small strings and vectors on every
/// thread; mimalloc does that several times faster than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod analysis;
pub mod cache;
pub mod cli;
pub mod config;
pub mod files;
pub mod functions;
pub mod graph;
pub mod hash;
pub mod hashing;
pub mod imports;
pub mod protocol;
pub mod requirements;
#[cfg(feature = "server")]
pub mod server;
pub mod session;
pub mod walk;

#[cfg(feature = "python")]
mod python;

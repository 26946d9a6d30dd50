//! The cache interface the plugin sees: keys (`keys`), the embedded local
//! store (`local`), the team server's HTTP client (`http`), the sealing of
//! requirement sets for the server (`sealed`), and the layered cache that
//! composes them and never fails (`layered`).

pub mod http;
pub mod keys;
pub mod layered;
pub mod local;
pub mod sealed;

pub use layered::{Cache, CacheSettings, Collection, Matchers, ServerSettings};

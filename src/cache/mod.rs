//! The cache interface the plugin sees.

pub mod http;

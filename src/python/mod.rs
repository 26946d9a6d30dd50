//! The only place pyo3 appears: the `pytest_dryci._native` module. Every
//! function converts its arguments, runs a plain Rust function with the GIL
//! released, and converts the result; errors cross to Python in one place.

use pyo3::prelude::*;

/// Runs the `dryci` command line with `argv` (program name first); returns the exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> i32 {
    py.detach(|| crate::cli::run(argv))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    Ok(())
}

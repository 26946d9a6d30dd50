"""The package imports and its native module is the one built from this tree."""

import subprocess
import sys

import pytest_dryci


def test_native_version_matches_package():
    from pytest_dryci import _native

    assert pytest_dryci.__version__ == "0.1.0"  # from the distribution's metadata
    assert _native.__version__ == pytest_dryci.__version__


def test_console_entry_runs_the_rust_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_dryci", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("dryci ")

"""pytest --dryci: skip tests that already passed with identical inputs.

Importing this package loads nothing else: the pytest entry point
(`plugin.py`) imports the rest, and the native module, only when DryCI is on.
"""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # The version comes from the installed distribution's metadata, read on
    # first use, so that importing the package costs nothing.
    if name == "__version__":
        from importlib.metadata import version

        return version("dryci")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

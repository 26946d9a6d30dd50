"""pytest --dryci: skip tests that already passed with identical inputs."""

from pytest_dryci._native import __version__

__all__ = ["__version__"]

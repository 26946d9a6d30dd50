"""`python -m pytest_dryci` and the `dryci` console script: the Rust CLI."""

import sys

from pytest_dryci import _native


def main() -> int:
    return _native.cli_main(sys.argv)


if __name__ == "__main__":
    sys.exit(main())

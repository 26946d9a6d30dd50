"""Type stub of the native module (checked by mypy.stubtest in `make test`)."""

__version__: str

def cli_main(argv: list[str]) -> int: ...

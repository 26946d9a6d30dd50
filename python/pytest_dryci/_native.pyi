"""Type stub of the native module (checked by mypy.stubtest in `make test`)."""

from typing import final

__all__ = [
    "HashReport",
    "ResultCache",
    "__version__",
    "cli_main",
    "compute_hashes",
    "file_key",
    "node_keys",
]

__version__: str

@final
class HashReport:
    @property
    def root(self) -> str: ...
    @property
    def hashes(self) -> dict[str, str | None]: ...
    @property
    def problems(self) -> dict[str, str]: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def config_source(self) -> str: ...

@final
class ResultCache:
    def __new__(
        cls,
        local_path: str | None = None,
        server_url: str | None = None,
        token: str | None = None,
        timeout: float = 3.0,
    ) -> ResultCache: ...
    @property
    def open_warnings(self) -> list[str]: ...
    def query(self, file_keys: list[str]) -> tuple[list[dict[str, int | None]], list[str]]: ...
    def complete_files(self, file_keys: list[str]) -> tuple[list[str | None], list[str]]: ...
    def record_complete_files(self, complete: dict[str, str]) -> list[str]: ...
    def publish(
        self,
        passed: dict[str, dict[str, int | None]],
        counts: tuple[int, int, int, int, int],
    ) -> tuple[int, list[str]]: ...

def compute_hashes(
    root: str,
    files: list[str],
    config: str | None = None,
    salt: str = ...,
    python_env: str | None = None,
    state_cache: bool = True,
) -> HashReport: ...
def file_key(dep_hash: str) -> str: ...
def node_keys(node_ids: list[str], dep_hash: str) -> dict[str, str]: ...
def cli_main(argv: list[str]) -> int: ...

"""Type stub of the native module (checked by mypy.stubtest in `make test`)."""

from collections.abc import Callable
from typing import final

__all__ = [
    "AuditHook",
    "Decision",
    "FileDecision",
    "Publication",
    "Session",
    "__version__",
    "add_audit_hook",
    "cli_main",
    "close_function_window",
    "note_call",
    "open_function_window",
    "profile_thread",
    "start_function_profiler",
    "stop_function_profiler",
    "take_function_calls",
]

__version__: str

@final
class FileDecision:
    @property
    def short_hash(self) -> str | None: ...
    @property
    def problem(self) -> str | None: ...
    @property
    def complete(self) -> list[str] | None: ...
    @property
    def complete_results(self) -> dict[str, tuple[str, str]]: ...
    @property
    def recorded(self) -> list[str] | None: ...
    @property
    def matchers(self) -> str | None: ...
    @property
    def passed_tests(self) -> int: ...
    @property
    def passed_ms(self) -> int: ...

@final
class Decision:
    @property
    def files(self) -> dict[str, FileDecision]: ...
    @property
    def graph_warnings(self) -> list[str]: ...
    @property
    def cache_warnings(self) -> list[str]: ...

@final
class Publication:
    @property
    def published(self) -> int: ...
    @property
    def warnings(self) -> list[str]: ...

@final
class Session:
    def __new__(
        cls,
        root: str,
        *,
        config: str | None = None,
        salt: str = ...,
        python_env: str | None = None,
        state_cache: bool = True,
        local_store: bool = True,
        server_url: str | None = None,
        token: str | None = None,
        timeout: float = 3.0,
        query: bool = True,
        function_level: list[str] | None = None,
    ) -> Session: ...
    @staticmethod
    def restore(data: bytes) -> Session: ...
    def export(self) -> bytes: ...
    def decide(self, files: list[tuple[str, str]], *, matchers: bool = False) -> Decision: ...
    def passed(self, node_ids: list[str]) -> dict[str, tuple[int | None, str, str]]: ...
    def publish(
        self,
        passes: dict[str, dict[str, int]],
        outcomes: dict[str, tuple[str, str]],
        observed: dict[str, dict],
        collections: dict[str, tuple[list[str], str | None]],
        *,
        calls: list[tuple[str, str]] = ...,
        total: int,
        failed: int,
        skipped: int,
        served: int,
    ) -> Publication: ...
    def explain(self, node_ids: list[str]) -> dict[str, str]: ...
    def outside_static_graph(self, observed: dict[str, list[str]]) -> dict[str, list[str]]: ...

def cli_main(argv: list[str]) -> int: ...

@final
class AuditHook:
    def release(self) -> None: ...

def add_audit_hook(callback: Callable[[str, tuple], None]) -> AuditHook: ...
def start_function_profiler(root: str, ignored: list[str], requested: str) -> str: ...
def stop_function_profiler() -> None: ...
def profile_thread() -> None: ...
def open_function_window() -> None: ...
def close_function_window() -> list[str] | None: ...
def take_function_calls() -> list[tuple[str, str]]: ...
def note_call(code: object) -> None: ...

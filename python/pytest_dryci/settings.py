"""DryCI's settings for one run, from pytest's options, ini and the
environment, and the one way a cache failure reaches the user."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_dryci.plugin import DEFAULT_PRECISION, PRECISIONS

DEFAULT_TIMEOUT_SECONDS = 3.0


@dataclass
class Degradations:
    """Cache failures: in strict mode each is an error, otherwise a summary line."""

    strict: bool
    messages: list[str] = field(default_factory=list)

    def add(self, message: str) -> None:
        if self.strict:
            raise pytest.UsageError(f"dryci (strict): {message}")
        self.messages.append(message)


@dataclass
class Settings:
    root: Path
    config_path: str | None
    salt: str
    hash_environment: bool
    publish: bool
    skip: bool
    skip_collection: bool
    # observe what each test reads at run time (`observe`)
    observe: bool
    observe_ignore: list[str]
    # "file" or "function" (`functions`), and whether it was asked for (or is the default)
    precision: str
    precision_requested: bool
    # whether a test that started a subprocess, or connected to the network, may be served
    serve_subprocess: bool
    serve_network: bool
    server: str | None
    token: str | None
    timeout: float

    @classmethod
    def from_pytest(cls, config: pytest.Config, degradations: Degradations) -> Settings:
        config_path = config.getoption("dryci_config") or config.getini("dryci_config") or None
        return cls(
            root=Path(config.rootpath),
            config_path=config_path,
            salt=os.environ.get("DRYCI_SALT", ""),
            hash_environment=config.getini("dryci_hash_environment")
            and not config.getoption("dryci_no_env_hash"),
            publish=not config.getoption("dryci_no_publish"),
            skip=not config.getoption("dryci_no_skip"),
            skip_collection=config.getini("dryci_skip_collection"),
            observe=config.getini("dryci_observe"),
            observe_ignore=list(config.getini("dryci_observe_ignore")),
            precision=_precision(config),
            precision_requested=bool(_requested_precision(config)),
            serve_subprocess=config.getini("dryci_serve_subprocess"),
            serve_network=config.getini("dryci_serve_network"),
            server=os.environ.get("DRYCI_SERVER") or None,
            token=os.environ.get("DRYCI_TOKEN") or None,
            timeout=_timeout(degradations),
        )


def _requested_precision(config: pytest.Config) -> str:
    return config.getoption("dryci_precision") or config.getini("dryci_precision")


def _precision(config: pytest.Config) -> str:
    precision = _requested_precision(config) or DEFAULT_PRECISION
    if precision not in PRECISIONS:
        raise pytest.UsageError(
            f"dryci_precision = {precision!r} in the ini file: expected file or function"
        )
    return precision


def _timeout(degradations: Degradations) -> float:
    text = os.environ.get("DRYCI_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        timeout = float(text)
        if timeout > 0:
            return timeout
    except ValueError:
        pass
    degradations.add(
        f"DRYCI_TIMEOUT={text!r} is not a positive number of seconds; "
        f"using {DEFAULT_TIMEOUT_SECONDS}"
    )
    return DEFAULT_TIMEOUT_SECONDS

"""Which command-line and ini options go into the cache key.

An option can change a test's outcome (`-o filterwarnings=error`,
`--log-level`, a project's own `--env=staging`), so by default every option
value is part of the salt. Only options known to change nothing but what is
selected, reported or scheduled are left out; otherwise `-v`, `-k` or `-n 2`
would make every cached result unusable.
"""

from __future__ import annotations

import hashlib

import pytest

OUTCOME_NEUTRAL_OPTIONS = frozenset(
    {
        # what runs, in which order, where
        "file_or_dir", "keyword", "markexpr", "deselect", "ignore", "ignore_glob",
        "lf", "failedfirst", "newfirst", "last_failed_no_failures",
        "stepwise", "stepwise_skip", "stepwise_reset", "maxfail",
        "numprocesses", "dist", "distload", "maxprocesses", "tx", "px", "rsyncdir",
        "rsyncignore", "looponfail", "maxschedchunk", "loadscopereorder",
        "maxworkerrestart", "testrunuid", "collectonly", "continue_on_collection_errors",
        "rootdir", "basetemp", "cacheclear", "cacheshow", "plugins",
        # how results are shown
        "verbose", "quiet", "reportchars", "tbstyle", "color", "code_highlight", "durations",
        "durations_min", "showlocals", "fulltrace", "showcapture", "no_header",
        "no_summary", "force_short_summary", "fold_skipped", "xfail_tb", "debug",
        "traceconfig", "help", "version", "markers", "showfixtures",
        "show_fixtures_per_test", "setupshow", "pastebin", "xmlpath", "junitprefix",
        "log_cli_format", "log_cli_date_format", "log_file",
        "log_file_format", "log_file_date_format", "log_file_mode",
        "usepdb", "usepdb_cls", "trace",
        # reruns only decide whether a flaky test is retried; retried tests are never published
        "reruns", "reruns_delay", "reruns_delay_backoff_factor", "reruns_mode", "only_rerun",
        "rerun_except", "rerun_exclude_path", "rerun_show_tracebacks", "force_reruns",
        "fail_on_flaky", "max_suite_reruns",
    }
)  # fmt: skip

NEUTRAL_PREFIXES = ("dryci", "randomly_", "testmon")

# ini values that only change how results are shown, for `-o name=value`
# (a value in the ini file itself is keyed with the file's content). Not the
# live log's or the log file's level (nor their options): each lowers the
# root logger's level, which the code under test and `caplog` then see.
OUTCOME_NEUTRAL_INI = frozenset(
    {
        "console_output_style", "log_cli", "log_cli_format", "log_cli_date_format",
        "junit_suite_name", "junit_family", "junit_logging", "junit_log_passing_tests",
        "junit_duration_report",
    }
)  # fmt: skip


def _neutral_override(entry: object) -> bool:
    name = str(entry).split("=", 1)[0].strip()
    return name in OUTCOME_NEUTRAL_INI or name.startswith("dryci")


def options_fingerprint(config: pytest.Config) -> str:
    """blake2b over every option that may change an outcome, by name. An
    `-o` override of one of DryCI's own ini values is left out, like its
    options: those that change what is served are salted where they act
    (`dryci_observe`, `dryci_hash_environment`, `dryci_config`); so is one of
    an ini value that only changes how results are shown."""
    parts = []
    for name, value in sorted(vars(config.option).items()):
        if name in OUTCOME_NEUTRAL_OPTIONS or name.startswith(NEUTRAL_PREFIXES):
            continue
        if name == "override_ini" and isinstance(value, list):
            value = [entry for entry in value if not _neutral_override(entry)] or None
        parts.append(f"{name}={value!r}")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()

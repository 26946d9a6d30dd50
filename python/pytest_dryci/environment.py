"""A fingerprint of the Python environment: interpreter and installed distributions.

It goes into every dependency hash (unless switched off), so that upgrading a
package or the interpreter re-runs the tests instead of trusting old passes.

Reading every distribution's metadata costs about half a millisecond each
(a few hundred milliseconds in a large environment), so the fingerprint is
remembered in `.dryci/` under a signature of everything that reading looks
at: each `sys.path` entry and, in each folder on it, the name and the file
status (inode, size, modification time in ns) of every `*.dist-info`,
`*.egg-info` and `*.egg` entry and of the metadata files inside. Installing,
removing, upgrading or editing a distribution changes the signature, and the
fingerprint is computed again. When in doubt it is computed again too: a
finder on `sys.meta_path` that can list distributions other than the
standard one, metadata changed in the last few seconds (a timestamp may not
yet tell two writes apart), an unreadable or corrupt record.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import json
import os
import platform
import sys
import time
from importlib import metadata

CACHE_NAME = "environment-v1.json"
KEPT_ENTRIES = 8  # environments (tox, nox, several venvs) sharing one project
RECENT_SECONDS = 3.0
METADATA_SUFFIXES = (".dist-info", ".egg-info", ".egg")
METADATA_FILES = ("METADATA", "PKG-INFO", os.path.join("EGG-INFO", "PKG-INFO"))


def environment_fingerprint(cache_dir: str | None = None) -> str:
    """blake2b over the interpreter's identity and every installed
    `name==version`; remembered in `cache_dir` when given (see above)."""
    identity = [
        sys.implementation.name,
        platform.python_version(),
        sys.platform,
        platform.machine(),
    ]
    signature = metadata_signature() if cache_dir else None
    if signature is None or cache_dir is None:
        return _fingerprint(identity)
    key_text = "\n".join([sys.executable, sys.prefix, sys.version, *identity, *signature])
    key = hashlib.blake2b(key_text.encode(), digest_size=32).hexdigest()
    path = os.path.join(cache_dir, CACHE_NAME)
    entries = _read_entries(path)
    fingerprint = entries.get(key)
    if isinstance(fingerprint, str) and len(fingerprint) == 64:
        return fingerprint
    fingerprint = _fingerprint(identity)
    entries.pop(key, None)
    entries[key] = fingerprint
    _write_entries(path, dict(list(entries.items())[-KEPT_ENTRIES:]))
    return fingerprint


def _fingerprint(identity: list[str]) -> str:
    distributions = []
    for dist in metadata.distributions():
        # `dist.version` reads and parses the metadata file again: parse it once.
        fields = dist.metadata
        distributions.append(f"{(fields['Name'] or '').lower()}=={fields['Version']}")
    distributions.sort()
    text = "\n".join([*identity, *distributions])
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def metadata_signature() -> list[str] | None:
    """One line per thing importlib.metadata reads to list the installed
    distributions, with its file status; None when it cannot be trusted."""
    for finder in sys.meta_path:
        if finder is not importlib.machinery.PathFinder and hasattr(finder, "find_distributions"):
            return None  # distributions this signature does not see
    recent = time.time() - RECENT_SECONDS
    lines = []
    try:
        for entry in sys.path:
            folder = entry or "."
            if not os.path.isdir(folder):
                # A zip or a missing entry: its own status covers what is in it.
                lines.append(f"path {entry!r} {_status(folder, recent)}")
                continue
            # A folder: what importlib.metadata reads in it is listed below
            # (an .egg folder on sys.path has its metadata in EGG-INFO).
            egg_info = os.path.join(folder, "EGG-INFO", "PKG-INFO")
            lines.append(f"path {entry!r} folder {_status(egg_info, recent)}")
            with os.scandir(folder) as children:
                names = sorted(
                    c.name for c in children if c.name.lower().endswith(METADATA_SUFFIXES)
                )
            for name in names:
                child = os.path.join(folder, name)
                lines.append(f"  {name!r} {_status(child, recent)}")
                if os.path.isdir(child):
                    for inner in METADATA_FILES:
                        lines.append(f"    {inner} {_status(os.path.join(child, inner), recent)}")
    except _TooRecent:
        return None
    except OSError:
        return None
    return lines


class _TooRecent(Exception):
    pass


def _status(path: str, recent: float) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "-"
    if st.st_mtime >= recent:
        raise _TooRecent(path)
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns}"


def _read_entries(path: str) -> dict[str, str]:
    try:
        with open(path, encoding="utf-8") as file:
            entries = json.load(file)
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write_entries(path: str, entries: dict[str, str]) -> None:
    """Atomically (a temporary file renamed over the old one); a failure only
    means computing it again next time."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(entries, file)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)

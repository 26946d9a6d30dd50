"""A fingerprint of the Python environment: interpreter and installed distributions.

It goes into every dependency hash (unless switched off), so that upgrading a
package or the interpreter re-runs the tests instead of trusting old passes.
"""

from __future__ import annotations

import hashlib
import platform
import sys
from importlib import metadata


def environment_fingerprint() -> str:
    """blake2b over the interpreter's identity and every installed `name==version`."""
    distributions = []
    for dist in metadata.distributions():
        # `dist.version` reads and parses the metadata file again: parse it once.
        fields = dist.metadata
        distributions.append(f"{(fields['Name'] or '').lower()}=={fields['Version']}")
    distributions.sort()
    parts = [
        sys.implementation.name,
        platform.python_version(),
        sys.platform,
        platform.machine(),
        *distributions,
    ]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=32).hexdigest()

"""The OpenAPI document matches the server (issue 13 item 4): schemathesis
runs every check it has, on valid and on invalid data, against
`/api/openapi.json` of the real `dryci server`, once with each kind of
token and once with none, and must find nothing.

Its CLI runs in a subprocess, as a developer would run it: the findings it
prints (each with a curl line that reproduces it) are the failure message.
The seed, one worker and no example database make a run repeatable. With
50 examples per operation the four runs took 31 s of CPU (55 s on the two
cores, shared with a load of 10); the same settings found each of the
server's mismatches that were fixed with this test (`0.0` refused as a
count, `duration_ms: null` accepted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES_PER_OPERATION = 50
SEED = 13


@pytest.mark.parametrize("token", ["read-write", "read-only", "admin", "none"])
def test_schemathesis_finds_nothing(server, tmp_path: Path, token: str) -> None:
    url, admin_token, admin = server
    headers: list[str] = []
    if token == "admin":
        headers = ["-H", f"Authorization: Bearer {admin_token}"]
    elif token != "none":
        admin("create-user", "conformance", "--tenant", "team")
        secret = admin("create-token", "conformance", "--scope", token).strip().splitlines()[-1]
        assert secret.startswith("dryci-"), secret
        headers = ["-H", f"Authorization: Bearer {secret}"]
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/api/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--continue-on-failure",
        "--request-timeout",
        "10",
        "--no-color",
        *headers,
    ]
    # In tmp_path: no schemathesis.toml of ours is read, nothing is left behind.
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis with {token} token:\n{report}"
    # Every generated case passed, and there were some: a run that tested
    # nothing (a schema it could not load, a server it could not reach)
    # must not pass.
    counts = re.search(r"(\d+) generated, (\d+) passed", report)
    assert counts and counts[1] == counts[2] and int(counts[1]) > 0, report

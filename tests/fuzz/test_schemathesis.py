"""Schemathesis, a third-party OpenAPI fuzzer, against Envoy with the generated docs/openapi.yaml and
its default checks: every request the schema calls valid is accepted (or answered 401, 403, 404, 409,
429), every request it calls invalid is refused, every answer matches the schema, a method a path does
not take is 405 with an Allow header naming the ones it does, and no answer is a 5xx other than 503.
The exceptions, each with its reason, are in tests/fuzz/schemathesis.toml.

Calls are made as a signed-in user, so the operations that need one run past authentication (until
the fuzzer logs that session out or changes its password). The two live streams are left out: their
answer never ends, and a request-response fuzzer reads an answer whole (tests/e2e and
tests/integration test them).

`make test` runs SCHEMATHESIS_EXAMPLES=10 cases per operation and phase; `make fuzz` runs 200.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.mesh import ROOT, Mesh
from tests.conftest import report_lines
from tests.helpers import Stubs

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "10"))
SEED = os.environ.get("SCHEMATHESIS_SEED", "1")


def test_schemathesis_finds_nothing(mesh: Mesh, tmp_path: Path, pytestconfig: pytest.Config) -> None:
    envoy = f"127.0.0.1:{mesh.ports.envoy}"
    stubs = Stubs.through(envoy)
    try:
        token = stubs.sign_up("fuzzer").token
    finally:
        stubs.close()
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(CONFIG),
        "run",
        str(ROOT / "docs" / "openapi.yaml"),
        "--url",
        f"http://{envoy}",
        "--header",
        f"Authorization: Bearer {token}",
        "--exclude-path-regex",
        ":stream$",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        SEED,
        "--request-timeout",
        "30",
        "--no-color",
    ]
    # Its working directory gets its cache (.schemathesis/); the run's output is kept beside it.
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=1500, check=False)
    output = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    summary = output[output.rfind("SUMMARY") :]
    report_lines(pytestconfig).append("schemathesis: " + " ".join(summary.split())[:300])
    assert done.returncode == 0, output[-20000:]
    assert "Tested: " in summary, output[-5000:]

"""The tweetmesh-client wheel as a third party gets it: built from clients/python and gen/, installed
with its pinned dependencies into a clean venv that has nothing of the server, and running the
story (client_story.py) against the mesh through Envoy's TLS port: sign up, follow, post, the home
timeline page by page, a live stream that resumes by itself across a timeline_svc restart, delete,
and errors as exceptions with their google.rpc details."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from devstack.mesh import Mesh

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import build_client  # noqa: E402  (tools/ holds scripts, not a package)


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the wheel and its dependencies (pinned by requirements.txt) installed."""
    folder = tmp_path_factory.mktemp("client-wheel")
    wheel = build_client.build(folder / "dist")
    venv.create(folder / "venv", with_pip=True)
    python = folder / "venv" / "bin" / "python"
    # The repository's pins as constraints (pip takes no extras there): the same grpcio, protobuf
    # and googleapis-common-protos as the mesh runs.
    pins = [re.sub(r"\[.*?\]", "", line) for line in (ROOT / "requirements.txt").read_text().splitlines()]
    constraints = folder / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n")
    done = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--constraint", constraints, wheel],
        capture_output=True, text=True, timeout=600, check=False, env=_clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def _run(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", code], capture_output=True, text=True, timeout=60, check=False, cwd=python.parent,
        env=_clean_env(),
    )  # fmt: skip


def test_the_wheel_has_the_stubs_and_no_server_dependency(client_python: Path) -> None:
    typed = _run(
        client_python,
        "import tweetmesh_client, tweetmesh.timeline.v1.timeline_service_pb2_grpc as t, pathlib;"
        "print(pathlib.Path(tweetmesh_client.__file__).with_name('py.typed').exists(),"
        " hasattr(t, 'TimelineServiceStub'))",
    )
    assert typed.stdout.split() == ["True", "True"], typed.stderr
    for server_only in ("meshkit", "devstack", "psycopg", "redis", "argon2", "tweetmesh.fanout"):
        missing = _run(client_python, f"import {server_only}")
        assert "ModuleNotFoundError" in missing.stderr, server_only


def _steps(stdout: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stdout:
        yield json.loads(line)


def test_the_story_through_envoy_over_tls_with_a_resuming_stream(
    client_python: Path, mesh: Mesh, tmp_path: Path
) -> None:
    assert mesh.tls is not None
    script = tmp_path / "client_story.py"  # away from the repository, so nothing of it is importable
    shutil.copyfile(Path(__file__).with_name("client_story.py"), script)
    story = subprocess.Popen(
        [client_python, script, f"localhost:{mesh.ports.envoy_tls}", mesh.tls.cert],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=tmp_path, env=_clean_env(),
    )  # fmt: skip
    assert story.stdin is not None and story.stdout is not None
    try:
        steps = _steps(story.stdout)
        assert next(steps) == {"step": "followed", "followers": 1}
        streaming = next(steps)
        assert streaming["streamed"] == streaming["posted"]
        assert streaming["posted"] in streaming["home"]

        # timeline_svc stops (its streams end with SERVER_STOPPING and their resume point) and
        # comes back; the client reconnects by itself and the next tweet arrives on the same iterator.
        mesh.stop_service("timeline")
        mesh.start_service("timeline")
        story.stdin.write("go\n")
        story.stdin.flush()
        resumed = next(steps)
        assert resumed["streamed"] == resumed["posted"]
        assert "SERVER_STOPPING" in resumed["reconnects"], resumed

        deleted = next(steps)
        assert deleted["error"] == "NotFound", deleted
        refused = next(steps)
        assert refused["code"] == "INVALID_ARGUMENT" and refused["fields"] == ["text"], refused
        assert next(steps) == {"step": "logged-out", "code": "UNAUTHENTICATED", "is_base": True}
        assert story.wait(30) == 0, story.stderr.read() if story.stderr else ""
    except StopIteration:
        story.kill()
        pytest.fail(f"the story stopped early: {story.stderr.read() if story.stderr else ''}")
    finally:
        if story.poll() is None:
            story.kill()
            story.wait()

"""Builds the tweetmesh-client wheel: clients/python plus the public services' generated stubs
copied from gen/ (which `make check-gen` keeps equal to what protos/ generate), so nothing of the
stubs is committed twice and the wheel cannot drift from the protos.

Usage: python tools/build_client.py [--out DIR]   (default dist/; `make client` runs it)
Prints the wheel's path.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "python"
# The public API's stubs; fanout is the mesh's internal admin API and stays out.
PUBLIC = ("users", "tweets", "timeline", "notifications")


def stage(into: Path) -> None:
    """clients/python, gen/tweetmesh/{users,tweets,timeline,notifications} and gen/buf laid out as
    one source tree."""
    shutil.copytree(CLIENT, into, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    stubs = into / "tweetmesh"
    stubs.mkdir()
    (stubs / "__init__.py").touch()
    (stubs / "py.typed").touch()
    for service in PUBLIC:
        shutil.copytree(ROOT / "gen" / "tweetmesh" / service, stubs / service,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    # The field rules the stubs' protos import (buf.validate), compiled with them.
    shutil.copytree(ROOT / "gen" / "buf", into / "buf", ignore=shutil.ignore_patterns("__pycache__"))


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tweetmesh-client-") as folder:
        source = Path(folder) / "src"
        stage(source)
        # No build isolation: the venv's pinned setuptools builds it, offline.
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "--disable-pip-version-check", "--wheel-dir", str(out), str(source)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            sys.exit(f"building the client wheel failed:\n{done.stdout}{done.stderr}")
    (wheel,) = sorted(out.glob("tweetmesh_client-*.whl"), key=lambda p: p.stat().st_mtime)[-1:]
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the wheel goes")
    print(build(parser.parse_args().out))


if __name__ == "__main__":
    main()

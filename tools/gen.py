"""Generates gen/ from protos/: Python messages, typed stubs and the descriptor set Envoy loads.

Usage: python tools/gen.py [OUT_DIR]   (default: gen). `make gen` and `make check-gen` call it.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Error detail types Envoy must know to render google.rpc details as JSON.
EXTRA_DESCRIPTOR_FILES = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def _include_dirs() -> list[str]:
    grpc_tools_protos = str(resources.files("grpc_tools") / "_proto")
    import google.api  # googleapis-common-protos ships google/api and google/rpc .proto files

    googleapis = str(Path(next(iter(google.api.__path__))).parent.parent)
    return [str(PROTOS), googleapis, grpc_tools_protos]


def _run(args: list[str]) -> None:
    code = protoc.main(["protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def generate(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    includes = [f"-I{d}" for d in _include_dirs()]
    plugin = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    _run(
        [
            *includes,
            f"--plugin=protoc-gen-mypy_grpc={plugin}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *sources,
        ]
    )
    _run(
        [
            *includes,
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out / 'tweetmesh.pb'}",
            *sources,
            *EXTRA_DESCRIPTOR_FILES,
        ]
    )
    for folder in {p.parent for p in out.rglob("*.py")} | {out / "tweetmesh"}:
        for package in [folder, *folder.parents]:
            if package == out:
                break
            (package / "__init__.py").touch()


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "gen")

"""Generates gen/ from protos/ (Python messages, typed stubs and the descriptor set Envoy loads)
and, from that descriptor set, the OpenAPI description of the HTTP API (tools/openapi.py).

Usage: python tools/gen.py [OUT_DIR [OPENAPI_FILE]]   (default: gen docs/openapi.yaml)
       python tools/gen.py --image FILE [--no-source-info]   (only the descriptor set, for buf)
`make gen`, `make check-gen`, `make lint` and `make api-release` call it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openapi  # tools/ is not a package: it runs as a script, next to this file

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Error detail types Envoy must know to render google.rpc details as JSON.
EXTRA_DESCRIPTOR_FILES = ("google/rpc/status.proto", "google/rpc/error_details.proto")


def _include_dirs(protos: Path = PROTOS) -> list[str]:
    grpc_tools_protos = str(resources.files("grpc_tools") / "_proto")
    import google.api  # googleapis-common-protos ships google/api and google/rpc .proto files

    googleapis = str(Path(next(iter(google.api.__path__))).parent.parent)
    return [str(protos), googleapis, grpc_tools_protos]


def _run(args: list[str]) -> None:
    code = protoc.main(["protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def _sources(protos: Path) -> list[str]:
    return sorted(str(p.relative_to(protos)) for p in protos.rglob("*.proto"))


def descriptor_set(out: Path, *, protos: Path = PROTOS, source_info: bool = True) -> None:
    """Writes the protos (and everything they import) as one FileDescriptorSet: the image Envoy
    loads, buf lints, and buf breaking compares (a buf image is a FileDescriptorSet)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{d}" for d in _include_dirs(protos)]
    _run(
        [
            *includes,
            "--include_imports",
            *(["--include_source_info"] if source_info else []),
            f"--descriptor_set_out={out}",
            *_sources(protos),
            *EXTRA_DESCRIPTOR_FILES,
        ]
    )


def generate(out: Path, openapi_out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
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
            *_sources(PROTOS),
        ]
    )
    descriptor_set(out / "tweetmesh.pb")
    for folder in {p.parent for p in out.rglob("*.py")} | {out / "tweetmesh"}:
        for package in [folder, *folder.parents]:
            if package == out:
                break
            (package / "__init__.py").touch()
    openapi_out.parent.mkdir(parents=True, exist_ok=True)
    openapi_out.write_text(openapi.render((out / "tweetmesh.pb").read_bytes()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "gen")
    parser.add_argument("openapi", nargs="?", type=Path, default=ROOT / "docs" / "openapi.yaml")
    parser.add_argument("--image", type=Path, help="write only the descriptor set (a buf image) to this file")
    parser.add_argument("--no-source-info", action="store_true", help="with --image: leave out comments")
    args = parser.parse_args()
    if args.image:
        descriptor_set(args.image, source_info=not args.no_source_info)
    else:
        generate(args.out, args.openapi)


if __name__ == "__main__":
    main()

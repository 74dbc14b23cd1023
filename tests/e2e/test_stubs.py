"""buf.gen.yaml's Go and TypeScript stubs of the public API: generated with the local plugins (as
`make stubs` does), and compiled: Go with Debian's Go and its packaged protobuf/gRPC libraries,
TypeScript with tsc (strict) against @bufbuild/protobuf."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import debian_tool

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / ".venv" / "npm" / "node_modules" / ".bin"
PUBLIC = ("users", "tweets", "timeline", "notifications")
GO_PACKAGE = "tweetmesh.dev/api/gen/go"


def _npm_tool(name: str) -> Path:
    found = NODE_BIN / name
    if not found.exists():
        pytest.skip(f"{name} is not installed: `make stubs` (and `make test`) install it from npm")
    return found


def _run(
    argv: list[str | os.PathLike[str]], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=cwd, env=env)
    assert done.returncode == 0, f"{argv[0]} failed:\n{done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stubs")
    buf = _npm_tool("buf")
    _npm_tool("protoc-gen-es")
    go_plugins = [debian_tool(name, name) for name in ("protoc-gen-go", "protoc-gen-go-grpc")]
    image = out / "tweetmesh.binpb"
    _run([sys.executable, ROOT / "tools" / "gen.py", "--image", image])
    paths = [arg for service in PUBLIC for arg in ("--path", f"tweetmesh/{service}")]
    paths += ["--path", "buf/validate"]  # the field rules the protos import
    search = os.pathsep.join([str(NODE_BIN), *(str(Path(p).parent) for p in go_plugins), os.environ["PATH"]])
    _run(
        [buf, "generate", f"{image}#format=binpb", "--template", ROOT / "buf.gen.yaml", "-o", out, *paths],
        cwd=ROOT,
        env={**os.environ, "PATH": search},
    )
    return out / "dist" / "stubs"


def test_the_go_stubs_compile_with_their_grpc_clients(stubs: Path) -> None:
    go = debian_tool("go", "golang-go")
    generated = stubs / "go" / GO_PACKAGE / "tweetmesh"
    assert sorted(p.name for p in generated.iterdir()) == sorted(PUBLIC)  # no internal fanout API
    assert (
        "func NewTimelineServiceClient"
        in (generated / "timeline" / "v1" / "timeline_service_grpc.pb.go").read_text()
    )
    # GOPATH mode: the stubs' packages and Debian's google.golang.org/{protobuf,grpc,genproto}.
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": os.pathsep.join([str(stubs / "go_path"), "/usr/share/gocode"]),
        # Kept between runs: compiling gRPC's Go sources the first time takes a minute.
        "GOCACHE": str(ROOT / ".venv" / "go-cache"),
        "GOFLAGS": "",
    }
    (stubs / "go_path").mkdir()
    (stubs / "go_path" / "src").symlink_to(stubs / "go")
    _run([go, "vet", f"{GO_PACKAGE}/..."], env=env)


def test_the_typescript_stubs_typecheck_strictly(stubs: Path) -> None:
    tsc = _npm_tool("tsc")
    ts = stubs / "ts"
    assert (ts / "tweetmesh" / "tweets" / "v1" / "tweets_service_pb.ts").is_file()
    (ts / "node_modules").symlink_to(NODE_BIN.parent)
    config = {
        "compilerOptions": {
            "strict": True, "noEmit": True, "target": "es2022", "module": "esnext",
            "moduleResolution": "bundler", "types": [],
        },
        "include": ["**/*.ts"],
    }  # fmt: skip
    (ts / "tsconfig.json").write_text(json.dumps(config))
    _run([tsc, "-p", ts / "tsconfig.json"])

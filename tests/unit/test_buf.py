"""buf lint and buf breaking (run by `make lint`) catch what they are there for: a name that breaks
the STANDARD rules, and a change that breaks the released contract (protos/released.binpb)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".venv" / "npm" / "node_modules" / ".bin" / "buf"
sys.path.insert(0, str(ROOT / "tools"))

import gen  # noqa: E402  (tools/ is a folder of scripts)

pytestmark = pytest.mark.skipif(not BUF.exists(), reason=f"buf is not installed at {BUF}: run `make lint`")


def image_of(protos: Path, out: Path) -> str:
    gen.descriptor_set(out, protos=protos)
    return f"{out}#format=binpb"


def buf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), *args, "--path", "tweetmesh", "--config", str(ROOT / "buf.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def edited_protos(tmp_path: Path, old: str, new: str) -> Path:
    protos = tmp_path / "protos"
    shutil.copytree(ROOT / "protos", protos)
    users = protos / "tweetmesh" / "users" / "v1" / "users_service.proto"
    text = users.read_text()
    assert old in text
    users.write_text(text.replace(old, new))
    return protos


def test_the_protos_pass_lint_and_keep_the_released_contract(tmp_path: Path) -> None:
    image = image_of(ROOT / "protos", tmp_path / "now.binpb")
    assert buf("lint", image).returncode == 0
    released = f"{ROOT / 'protos' / 'released.binpb'}#format=binpb"
    done = buf("breaking", image, "--against", released)
    assert done.returncode == 0, done.stdout + done.stderr


def test_removing_a_field_of_the_released_contract_is_caught(tmp_path: Path) -> None:
    protos = edited_protos(tmp_path, "  int64 tweets_count = 7;\n", "")
    image = image_of(protos, tmp_path / "broken.binpb")
    done = buf("breaking", image, "--against", f"{ROOT / 'protos' / 'released.binpb'}#format=binpb")
    assert done.returncode != 0
    assert 'field "7" with name "tweets_count" on message "User" was deleted' in done.stdout


def test_adding_a_field_is_not_a_breaking_change(tmp_path: Path) -> None:
    field = "  int64 tweets_count = 7;\n"
    protos = edited_protos(tmp_path, field, field + "  string added_in_a_test = 999;\n")
    image = image_of(protos, tmp_path / "grown.binpb")
    done = buf("breaking", image, "--against", f"{ROOT / 'protos' / 'released.binpb'}#format=binpb")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_name_against_the_style_guide_fails_lint(tmp_path: Path) -> None:
    protos = edited_protos(tmp_path, "  int64 tweets_count = 7;\n", "  int64 TweetsCount = 7;\n")
    done = buf("lint", image_of(protos, tmp_path / "badly-named.binpb"))
    assert done.returncode != 0
    assert 'Field name "TweetsCount" should be lower_snake_case' in done.stdout

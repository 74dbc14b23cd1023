"""The CLI's config file: one session per target, owner-only from the moment it exists, a clear
error when it is not ours to read, XDG_CONFIG_HOME honoured."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tweetmesh_cli.config import Config, Session, config_path


def test_sessions_are_kept_per_target_and_forgotten(tmp_path: Path) -> None:
    config = Config(tmp_path / "tweetmesh" / "config.json")
    assert config.session("a:1") is None
    config.save("a:1", Session("token-a", "1", "alice"))
    config.save("b:2", Session("token-b", "2", "bob"))
    assert config.session("a:1") == Session("token-a", "1", "alice")
    assert stat.S_IMODE(config.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.path.parent.stat().st_mode) == 0o700
    config.forget("a:1")
    assert config.session("a:1") is None
    assert config.session("b:2") == Session("token-b", "2", "bob")


def test_an_unreadable_config_is_reported_by_path(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(SystemExit, match=str(path)):
        Config(path).session("a:1")


def test_xdg_config_home_then_home() -> None:
    assert config_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/tweetmesh/config.json")
    assert config_path({"HOME": "/home/u"}) == Path("/home/u/.config/tweetmesh/config.json")

"""Where the CLI keeps its sessions: $XDG_CONFIG_HOME/tweetmesh/config.json (else ~/.config/...),
readable by the owner only, one session per target so several meshes can be used side by side."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Session:
    token: str
    user_id: str
    handle: str


def config_path(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "tweetmesh" / "config.json"


class Config:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, dict[str, dict[str, str]]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"sessions": {}}
        except (OSError, ValueError) as error:
            raise SystemExit(f"tweetmesh: cannot read {self.path}: {error}") from None
        return data if isinstance(data, dict) and isinstance(data.get("sessions"), dict) else {"sessions": {}}

    def _write(self, data: dict[str, dict[str, dict[str, str]]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_suffix(".tmp")
        # Created 0600 from the start (never readable by others, not even for a moment), then renamed.
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(data, file, indent=2)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)

    def session(self, target: str) -> Session | None:
        entry = self._read()["sessions"].get(target)
        if not entry:
            return None
        return Session(entry.get("token", ""), entry.get("user_id", ""), entry.get("handle", ""))

    def save(self, target: str, session: Session) -> None:
        data = self._read()
        data["sessions"][target] = asdict(session)
        self._write(data)

    def forget(self, target: str) -> None:
        data = self._read()
        if data["sessions"].pop(target, None) is not None:
            self._write(data)

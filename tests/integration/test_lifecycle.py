"""Each service stops cleanly on SIGTERM and comes back; a bad setting stops it with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from devstack.mesh import SERVICES
from tests.helpers import Stubs


@pytest.mark.parametrize("service", SERVICES)
def test_sigterm_stops_a_service_cleanly_and_it_restarts(mesh: Any, stubs: Stubs, service: str) -> None:
    assert mesh.stop_service(service) == 0
    mesh.start_service(service)
    account = stubs.sign_up("back")
    assert stubs.post(account, "after a restart").author.user_id == account.user_id


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"GRPC_PORT": "not-a-port", "PAGE_TOKEN_SECRET": "a-secret-long-enough"}, "GRPC_PORT"),
        # No silent default: a secret everyone could read would let anyone forge page tokens.
        ({"PAGE_TOKEN_SECRET": ""}, "PAGE_TOKEN_SECRET must be set"),
    ],
)
def test_a_bad_setting_stops_the_service_with_a_message_naming_it(
    setting: dict[str, str], named: str
) -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0", **setting}
    done = subprocess.run(
        [sys.executable, "-m", "timeline_svc"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert named in done.stderr

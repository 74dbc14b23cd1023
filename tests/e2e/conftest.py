"""Fixtures of the end-to-end tests: a plain HTTP/JSON client of the test mesh's Envoy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.test_envoy_http import Http


@pytest.fixture(scope="module")
def api(mesh: Any) -> Http:
    return Http(mesh.ports.envoy)

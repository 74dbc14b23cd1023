"""CORS at Envoy: a browser on a listed origin may call the API (its preflight is answered, the
answer carries the allow headers); any other origin gets neither, and the web client needs none."""

from __future__ import annotations

from tests.conftest import CORS_ORIGIN
from tests.e2e.test_envoy_http import Http
from tests.helpers import http_call


def preflight(api: Http, origin: str, method: str = "POST", path: str = "/v1/tweets") -> dict[str, str]:
    response = http_call(
        api.port,
        "OPTIONS",
        path,
        headers={
            "origin": origin,
            "access-control-request-method": method,
            "access-control-request-headers": "authorization, content-type",
        },
    )
    return {"status": str(response.status), **response.headers}


def test_a_listed_origin_gets_its_preflight_answered(api: Http) -> None:
    answer = preflight(api, CORS_ORIGIN)
    assert answer["status"] == "204"
    assert answer["access-control-allow-origin"] == CORS_ORIGIN
    assert "POST" in answer["access-control-allow-methods"]
    assert {"authorization", "content-type"} <= {
        h.strip() for h in answer["access-control-allow-headers"].split(",")
    }
    streamed = preflight(api, CORS_ORIGIN, "GET", "/v1/timelines/home:stream")
    assert streamed["access-control-allow-origin"] == CORS_ORIGIN


def test_a_listed_origin_may_read_answers_and_their_retry_after(api: Http) -> None:
    response = http_call(api.port, "GET", "/v1/handles/nobody_cors_x", headers={"origin": CORS_ORIGIN})
    assert response.status == 404
    assert response.headers["access-control-allow-origin"] == CORS_ORIGIN
    assert "retry-after" in response.headers["access-control-expose-headers"]


def test_other_origins_are_not_allowed(api: Http) -> None:
    for origin in ("http://evil.example.test", CORS_ORIGIN.replace("8000", "8001"), "null"):
        answer = preflight(api, origin)
        assert "access-control-allow-origin" not in answer, origin
        assert answer["status"] == "405", origin  # OPTIONS is no method of the API
        plain = http_call(api.port, "GET", "/v1/handles/nobody_cors_x", headers={"origin": origin})
        assert "access-control-allow-origin" not in plain.headers, origin

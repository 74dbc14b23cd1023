"""The deployments' Redis is no open door: a real redis-server started with the ACL that
deploy/k8s-example and docker-compose.yml give it refuses anonymous connections and the default
user, runs the probes those files define, keeps its user from the dangerous commands, and runs the
whole mesh, logged in with the Secret's REDIS_URL."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import yaml

from devstack import binaries
from devstack.mesh import MeshPorts
from devstack.process import ManagedProcess
from tests.conftest import TEST_ENV, mesh_stubs
from tests.conftest import test_mesh as private_mesh  # (its own name would be collected as a test)
from tests.helpers import LiveStream, Stubs, eventually

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "k8s-example"


def _compose_value(text: str) -> str:
    """docker compose's interpolation of `text` with nothing set: ${VAR:-default} is the default,
    $$ a literal $."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text).replace("$$", "$")


def _example() -> tuple[dict[str, Any], dict[str, str]]:
    """The example's Redis container and its Secret's values."""
    (statefulset,) = [
        d for d in yaml.safe_load_all((EXAMPLE / "redis.yaml").read_text()) if d["kind"] == "StatefulSet"
    ]
    secret = yaml.safe_load((EXAMPLE / "secret.yaml").read_text())["stringData"]
    return statefulset["spec"]["template"]["spec"]["containers"][0], secret


def _compose_redis() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["redis"])


def acl_arguments(arguments: list[str]) -> list[str]:
    """The --user groups of a redis-server command line."""
    kept, keep = [], False
    for argument in arguments:
        if argument.startswith("--"):
            keep = argument == "--user"
        if keep:
            kept.append(argument)
    return kept


def example_acl() -> list[str]:
    container, secret = _example()
    return [
        a.replace("$(REDIS_PASSWORD)", secret["REDIS_PASSWORD"]) for a in acl_arguments(container["args"])
    ]


def test_both_deployments_give_redis_the_same_acl_with_the_default_user_off() -> None:
    compose = [_compose_value(a) for a in acl_arguments(_compose_redis()["command"][1:])]
    compose_password = _compose_value(_compose_redis()["environment"]["REDIS_PASSWORD"])
    _, secret = _example()
    assert [a.replace(compose_password, "PASSWORD") for a in compose] == [
        a.replace(secret["REDIS_PASSWORD"], "PASSWORD") for a in example_acl()
    ]
    assert example_acl()[:3] == ["--user", "default", "off"]


@pytest.fixture(scope="module")
def acl_redis() -> Iterator[int]:
    """redis-server on a free port with the example's ACL; yields the port."""
    port = MeshPorts.free().redis
    workdir = Path(tempfile.mkdtemp(prefix="tweetmesh-acl-redis-"))
    argv = [os.fspath(binaries.redis_server()), "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    if redis_major_version() >= 7:
        # Redis 7 refuses DEBUG to everyone unless told otherwise: allowed here, so that what
        # refuses it to the services below is the ACL, as on a server that allows it.
        argv += ["--enable-debug-command", "yes"]
    process = ManagedProcess(
        "redis-acl", [*argv, *example_acl()], log_path=workdir / "redis.log", cwd=workdir
    )
    _, secret = _example()
    try:
        client = redis.Redis.from_url(_local(secret["REDIS_URL"], port))
        process.wait_until(lambda: _pings(client), 30, "answering PING as tweetmesh")
        yield port
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def redis_major_version() -> int:
    """The major version of the redis-server the tests run (`Redis server v=7.0.15 ...`)."""
    printed = subprocess.run(
        [os.fspath(binaries.redis_server()), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return int(printed.split("v=", 1)[1].split(".", 1)[0])


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _local(url: str, port: int) -> str:
    """`url` with its host and port replaced by this machine's test server."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


def test_no_anonymous_connection_and_no_dangerous_command(acl_redis: int) -> None:
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_redis).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=acl_redis, username="default", password="").ping()
    _, secret = _example()
    services = redis.Redis.from_url(_local(secret["REDIS_URL"], acl_redis))
    assert services.set("acl-check", "1")
    for command in (("FLUSHALL",), ("CONFIG", "GET", "*"), ("KEYS", "*"), ("DEBUG", "SLEEP", "0")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            services.execute_command(*command)  # type: ignore[no-untyped-call]
    assert services.get("acl-check") == b"1"


def _probe(command: str, port: int, password: str) -> int:
    """Runs a probe's shell command against the test server (its redis-cli pointed at our port)."""
    redis_cli = Path(os.fspath(binaries.redis_server())).with_name("redis-cli")
    command = command.replace("redis-cli ", f"{redis_cli} -p {port} ", 1)
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": password}
    return subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, timeout=30, check=False
    ).returncode


def test_the_deployments_probes_log_in_and_fail_without_the_password(acl_redis: int) -> None:
    container, secret = _example()
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[:2] == ["sh", "-c"]
    compose = _compose_redis()["healthcheck"]["test"]
    assert compose[0] == "CMD-SHELL"
    for command in (probe[2], _compose_value(compose[1])):
        assert _probe(command, acl_redis, secret["REDIS_PASSWORD"]) == 0, command
        assert _probe(command, acl_redis, "wrong") != 0, command


def test_the_mesh_runs_on_it_logged_in_with_the_secrets_url(acl_redis: int) -> None:
    _, secret = _example()
    with private_mesh(
        TEST_ENV, "tweetmesh-acl-mesh-", redis_url=_local(secret["REDIS_URL"], acl_redis)
    ) as mesh:
        with mesh_stubs(mesh) as stubs:
            story(stubs)
        assert mesh.casualties() == []


def story(stubs: Stubs) -> None:
    """Sessions, fan-out (streams of Redis), home timelines and a live stream (pub/sub) all work."""
    reader, author = stubs.sign_up("aclread"), stubs.sign_up("aclpost")
    stubs.follow(reader, author)
    stubs.home(reader)
    stream = LiveStream(stubs.timeline, reader)
    try:
        stream.next_event(timeout=15)  # the stream is open once the first heartbeat arrives
        posted = stubs.post(author, "through an ACL").tweet_id
        eventually(lambda: stubs.home_ids(reader) == [posted])
        assert stream.next_tweet(timeout=15).tweet_id == posted
    finally:
        stream.close()

"""Faults during a burst of acknowledged tweets, on real processes: fan-out workers and tweets_svc
SIGKILLed, Redis restarted and wiped, PostgreSQL restarted, every service SIGTERMed, a dependency frozen.

Each scenario checks the same promises with the history checker: every acknowledged tweet is in
its author's timeline, in each follower's home timeline and on a follower's live stream (which
resumes with since_tweet_id), exactly once, and nothing else is; no call gets INTERNAL or hangs;
and the mesh reports SERVING again by itself, without a restart.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from devstack.mesh import SERVICES, Mesh
from tests.faults.conftest import FAULT_ENV
from tests.faults.history import History, Report, check
from tests.faults.workload import (
    Population,
    ResumingStream,
    Violations,
    burst,
    populate,
    post,
    read_back,
)
from tests.helpers import Stubs, eventually, http_call, redis_client

Health = Callable[[str], str]


@dataclass
class Run:
    """What a fault can watch while it lasts."""

    history: History
    violations: Violations
    stream: ResumingStream
    people: Population


@dataclass
class Outcome:
    report: Report
    stream: ResumingStream


def all_serving(health: Health) -> bool:
    return all(health(name) == "SERVING" for name in SERVICES)


def logged_errors(mesh: Mesh, most: int = 5) -> list[str]:
    """The last ERROR lines the mesh's processes logged: what to read when a scenario fails."""
    lines = []
    for log in sorted((mesh.data_dir / "logs").glob("*.log")):
        lines += [
            f"{log.stem}: {line[:1500]}"
            for line in log.read_text(errors="replace").splitlines()
            if '"ERROR"' in line
        ]
    return lines[-most:]


def run_scenario(
    scenario: str,
    mesh: Mesh,
    stubs: Stubs,
    health: Health,
    report: Callable[[str], None],
    fault: Callable[[Run], None],
) -> Outcome:
    violations = Violations()
    history = History()
    people: Population = populate(stubs)
    viewer = people.readers[0]
    stream = ResumingStream(stubs, viewer, violations)
    on_stream = f"stream:{viewer.user_id}"

    # A first tweet gives the stream a since_tweet_id to resume from.
    first = f"{scenario}-first"
    history.attempt(first, [*people.targets(people.authors[0]), on_stream])
    post(stubs, people.authors[0], first, history, violations)
    # Right after a scenario that froze or restarted Redis, a new stream has taken over 20 s to get
    # its first tweet on a loaded machine (the note of this change says so; not yet understood).
    eventually(lambda: first in stream.texts, timeout=60)

    burst(
        stubs,
        people,
        scenario,
        history,
        violations,
        lambda: fault(Run(history, violations, stream, people)),
        extra_targets=lambda _: [on_stream],
    )
    eventually(lambda: all_serving(health), timeout=30, interval=0.2)  # healed by itself

    # Fan-out, outbox sweeps and rebuilds catch up within seconds; poll until nothing is missing.
    last: list[Report] = []

    def settled() -> bool:
        reads = read_back(stubs, people, violations)
        reads[on_stream] = list(stream.texts)
        last.append(check(history, reads, deduped=[on_stream]))
        return not last[-1].lost

    with contextlib.suppress(AssertionError):  # the report below says what is missing
        eventually(settled, timeout=30, interval=0.5)
    stream.close()
    result = last[-1]
    line = f"{result.line(scenario)} retries={violations.retries}"
    report(line)
    print(line, file=sys.stderr)
    assert not violations.seen, (violations.seen[:10], logged_errors(mesh))
    assert result.valid, result.explain()
    assert result.ok > 0
    return Outcome(result, stream)


def kill_repeatedly(mesh: Mesh, service: str, times: int = 3) -> Callable[[Run], None]:
    """SIGKILL, as a crash would, then start it again: `times` times while the burst goes on."""

    def fault(_: Run) -> None:
        for _n in range(times):
            mesh.kill_service(service)
            mesh.start_service(service)

    return fault


def test_a_fanout_workers_sigkilled_repeatedly(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None]
) -> None:
    run_scenario(
        "a-fanout-sigkill", fault_mesh, fault_stubs, health, report, kill_repeatedly(fault_mesh, "fanout")
    )


def test_a2_tweets_svc_sigkilled_between_commit_and_relay(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None]
) -> None:
    """A crash can land after a tweet's commit and before its event reaches Redis: the client
    retries with the same request_id and gets that tweet; the sweeper of the restarted service
    relays the event."""

    run_scenario(
        "a2-tweets-sigkill", fault_mesh, fault_stubs, health, report, kill_repeatedly(fault_mesh, "tweets")
    )


def test_b1_redis_restarted(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None]
) -> None:
    def fault(run: Run) -> None:
        fault_mesh.stop_dependency("redis")  # memory only: it comes back empty
        eventually(lambda: all(health(s) == "NOT_SERVING" for s in SERVICES), timeout=15, interval=0.1)
        # Writes are refused meanwhile (503: the rate limits live in Redis) and retried.
        retries = run.violations.retries
        eventually(lambda: run.violations.retries >= retries + 3, timeout=15)
        # Through Envoy too: a home timeline needs Redis, so 503 with the gRPC status in the body.
        answer = http_call(
            fault_mesh.ports.envoy, "GET", "/v1/timelines/home", token=run.people.readers[0].token
        )
        assert (answer.status, answer.json()["code"]) == (503, 14), answer.body[:300]
        fault_mesh.start_dependency("redis")

    outcome = run_scenario("b1-redis-restart", fault_mesh, fault_stubs, health, report, fault)
    # The open stream noticed and ended with the point to resume from: FEED_LOST when it found the
    # canary gone, DEPENDENCY_UNAVAILABLE when one of its own calls met Redis down first.
    noticed = {(c, r) for c, r, at in outcome.stream.endings if at != "?"}
    assert noticed & {("UNAVAILABLE", "FEED_LOST"), ("UNAVAILABLE", "DEPENDENCY_UNAVAILABLE")}, noticed


def test_b2_redis_wiped(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None]
) -> None:
    def fault(run: Run) -> None:
        redis_client(fault_mesh.redis_url).flushall()

        # Events fan-out had not read yet are gone with the wipe: open streams must notice, end,
        # and resume (their tweets come back from the rebuilt home timeline; the history checker
        # finds any that did not). They end FEED_LOST when the canary is found gone, or, when a
        # call of the stream's own met Redis busy wiping, DEPENDENCY_UNAVAILABLE; either way
        # UNAVAILABLE with the point to resume from.
        def lost() -> bool:
            endings, violations = run.stream.endings, run.violations.seen
            resumable = {"FEED_LOST", "DEPENDENCY_UNAVAILABLE"}
            noticed = [e for e in endings if e[0] == "UNAVAILABLE" and e[1] in resumable and e[2] != "?"]
            assert noticed, f"the stream did not end yet; its endings: {endings}; violations: {violations}"
            return True

        eventually(lost, timeout=20)

    run_scenario("b2-redis-flushall", fault_mesh, fault_stubs, health, report, fault)


def test_c_postgresql_restarted(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None]
) -> None:
    def fault(run: Run) -> None:
        fault_mesh.stop_dependency("postgres")
        eventually(lambda: health("users") == health("tweets") == "NOT_SERVING", timeout=15, interval=0.1)
        author = run.people.authors[0]
        answer = http_call(fault_mesh.ports.envoy, "GET", f"/v1/users/{author.user_id}/tweets")
        assert (answer.status, answer.json()["code"]) == (503, 14), answer.body[:300]
        fault_mesh.start_dependency("postgres")

    run_scenario("c-postgres-restart", fault_mesh, fault_stubs, health, report, fault)


def test_d_every_service_sigtermed_under_load(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None]
) -> None:
    def fault(_: Run) -> None:
        for name in SERVICES:
            # Clean: it exits 0 by itself (never SIGKILLed) after its grace period; the margin is a
            # loaded machine's, which can take seconds to tear a process down.
            code = None
            try:
                code = fault_mesh.stop_service(name, timeout=float(FAULT_ENV["GRACE_SECONDS"]) + 25)
            finally:
                fault_mesh.start_service(name)  # the scenarios after this one need every service
            log = fault_mesh.data_dir / "logs" / f"{name}.log"
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log.exists() else ""
            assert code == 0, f"{name} did not stop cleanly on SIGTERM (exit {code}); its log ends:\n{tail}"

    outcome = run_scenario("d-sigterm-each", fault_mesh, fault_stubs, health, report, fault)
    stopping = [e for e in outcome.stream.endings if e[1] == "SERVER_STOPPING"]
    assert stopping, f"the stream did not end with the reconnect hint: {outcome.stream.endings}"
    assert all(code == "UNAVAILABLE" and hint for code, _, hint in stopping)


@pytest.mark.parametrize("dependency", ["redis", "postgres"])
def test_e_a_dependency_frozen_for_a_while(
    fault_mesh: Mesh, fault_stubs: Stubs, health: Health, report: Callable[[str], None], dependency: str
) -> None:
    needs = [s for s in SERVICES if dependency == "redis" or s in {"users", "tweets", "notifications"}]

    def fault(run: Run) -> None:
        fault_mesh.pause_dependency(dependency)
        try:
            # Frozen, not gone: connections open and nothing answers. Health says so, and calls
            # still come back (UNAVAILABLE within HANDLER_TIMEOUT_SECONDS, then retried).
            eventually(lambda: all(health(s) == "NOT_SERVING" for s in needs), timeout=15, interval=0.1)
            retries = run.violations.retries
            eventually(lambda: run.violations.retries >= retries + 3, timeout=15)
        finally:
            fault_mesh.resume_dependency(dependency)

    run_scenario(f"e-{dependency}-frozen", fault_mesh, fault_stubs, health, report, fault)

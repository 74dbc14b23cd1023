"""make run's restart policy for crashed services: backoff that doubles to a ceiling, and giving up
after repeated crashes within a window (crashes older than it are forgotten)."""

from __future__ import annotations

from devstack.process import RestartPolicy


def test_the_delay_doubles_up_to_its_ceiling_and_the_fifth_crash_is_the_last() -> None:
    policy = RestartPolicy(first_delay=1, max_delay=5, give_up_after=5, window=300)
    assert [policy.crashed(t) for t in (0, 10, 20, 30, 40)] == [1, 2, 4, 5, None]
    assert policy.recent_crashes == 5


def test_crashes_outside_the_window_are_forgotten() -> None:
    policy = RestartPolicy(first_delay=1, max_delay=30, give_up_after=3, window=60)
    assert policy.crashed(0) == 1
    assert policy.crashed(30) == 2
    # The first crash is a minute old now: this is the second within the window, not the third.
    assert policy.crashed(61) == 2
    assert policy.crashed(62) is None

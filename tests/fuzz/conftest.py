"""What both fuzzers aim at: a few real users, tweets and sessions on the shared test mesh."""

from __future__ import annotations

import pytest

from tests.fuzz.routes import Known
from tests.helpers import Stubs


@pytest.fixture(scope="package")
def known(stubs: Stubs) -> Known:
    people = [stubs.sign_up("fuzz") for _ in range(3)]
    tweets = [stubs.post(p, f"fuzz target {i}").tweet_id for i, p in enumerate(people)]
    return Known(
        user_ids=[p.user_id for p in people],
        tweet_ids=tweets,
        handles=[p.user.handle for p in people],
        tokens=[p.token for p in people],
    )

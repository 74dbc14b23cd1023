"""Who to follow, the pure parts: popular accounts fill what friends of friends leave, never twice
nor an excluded one; the popular accounts are read again only once they are old."""

from __future__ import annotations

from users_svc.suggestions import Candidate, PopularAccounts, fill_with_popular


def test_popular_accounts_fill_up_after_friends_of_friends() -> None:
    ranked = [Candidate(10, 3), Candidate(11, 1)]
    popular = [11, 12, 13, 14, 15]
    assert fill_with_popular(ranked, popular, never={13}, limit=4) == [
        Candidate(10, 3),
        Candidate(11, 1),  # not again as a popular one
        Candidate(12, 0),
        Candidate(14, 0),  # 13 is never suggested
    ]
    assert fill_with_popular(ranked, popular, never=set(), limit=1) == [Candidate(10, 3)]
    assert fill_with_popular([], [], never=set(), limit=5) == []


async def test_the_popular_accounts_are_read_again_once_old() -> None:
    now = [0.0]
    reads: list[int] = []

    async def read(size: int) -> list[int]:
        reads.append(size)
        return [len(reads)]

    popular = PopularAccounts(read, size=7, seconds=60, clock=lambda: now[0])
    assert await popular.get() == [1]
    now[0] = 59.0
    assert await popular.get() == [1]
    now[0] = 60.0
    assert await popular.get() == [2]
    assert reads == [7, 7]

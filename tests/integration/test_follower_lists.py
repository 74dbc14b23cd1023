"""Fan-out inside Redis from the follower lists users_svc keeps there: the script applies the same
rule as the domain (social.rules), and fan-out from the lists equals fan-out from PostgreSQL after
follows, unfollows, timelines that come and go, and wipes of the lists."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from devstack.mesh import Mesh
from fanout_svc.service import Fanout, TweetChanged
from social import belongs_in_home, is_for_everyone
from social.follower_lists import FollowerLists, meta_key
from social.timelines import TimelineStore, key_start, unpack
from tests.helpers import Account, Stubs, eventually, held_in_redis, redis_client
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc

CASES = 120
FIRST_ID = 7_200_000_000_000_000_000


@dataclass
class Case:
    """A random follow graph in its own key space: users, who follows whom, whose home timeline
    exists, who is a celebrity."""

    users: list[int]
    follows: set[tuple[int, int]]  # (follower, followee)
    with_timeline: set[int]
    celebrities: set[int]

    def followers(self, author: int) -> list[int]:
        return [f for f, a in self.follows if a == author]

    def following(self, user: int) -> set[int]:
        return {a for f, a in self.follows if f == user}

    def receivers(self, event: TweetChanged) -> set[int]:
        """Who should hold a new tweet, by the domain's rule: its author and those it mentions,
        and the followers it belongs in the home of (a celebrity's tweets for everyone are merged
        at read time instead); only timelines that exist."""
        celebrity_share = event.author_id in self.celebrities and is_for_everyone(event)
        fanned = {
            f
            for f in self.followers(event.author_id)
            if not celebrity_share and belongs_in_home(event, f, self.following(f))
        }
        return {u for u in {event.author_id, *event.mentioned_user_ids, *fanned} if u in self.with_timeline}


def random_case(rng: random.Random, first_id: int) -> Case:
    users = [first_id + n * 7919 for n in range(rng.randint(2, 12))]
    follows = {(f, a) for f in users for a in users if f != a and rng.random() < 0.45}
    with_timeline = {u for u in users if rng.random() < 0.75}
    celebrities = {u for u in users if rng.random() < 0.2}
    return Case(users, follows, with_timeline, celebrities)


def random_event(rng: random.Random, case: Case, tweet_id: int) -> TweetChanged:
    author = rng.choice(case.users)
    reply_to = rng.choice([None, author, *case.users])
    mentioned = {u for u in case.users if u != author and rng.random() < 0.15}
    if reply_to is not None and reply_to != author:
        mentioned.add(reply_to)  # tweets_svc names the replied-to author among those mentioned
    return TweetChanged(
        tweet_id, author, reply_to_author_id=reply_to, mentioned_user_ids=tuple(sorted(mentioned))
    )


def twin(rng: random.Random, case: Case, event: TweetChanged, tweet_id: int) -> TweetChanged:
    """Another tweet by the event's author for the same followers (a reply to the same author, or
    not a reply either), mentioning others."""
    mentioned = {u for u in case.users if u != event.author_id and rng.random() < 0.3}
    if event.reply_to_author_id is not None and event.reply_to_author_id != event.author_id:
        mentioned.add(event.reply_to_author_id)
    return TweetChanged(
        tweet_id,
        event.author_id,
        reply_to_author_id=event.reply_to_author_id,
        mentioned_user_ids=tuple(sorted(mentioned)),
    )


async def holders(redis: aioredis.Redis, home: TimelineStore, users: list[int]) -> dict[int, set[int]]:
    """tweet id -> the users whose timeline holds it (decoded as readers decode)."""
    held: dict[int, set[int]] = {}
    for user in users:
        data: bytes | None = await redis.get(home.key(user))  # type: ignore[assignment]
        for tweet_id in unpack(data) if data else []:
            held.setdefault(tweet_id, set()).add(user)
    return held


async def test_the_fan_out_script_applies_the_home_rule(mesh: Mesh) -> None:
    """Random graphs, timelines and tweets (replies, mentions, celebrities; in half the cases two
    for the same followers, which the script writes together), written by the script in calls of a
    few timelines each (lists of many buckets, so calls stop and resume mid-list), against the rule
    in Python; then edits, which change no timeline, and deletions, which leave no
    timeline holding them."""
    redis = aioredis.Redis.from_url(mesh.redis_url)
    rng = random.Random(13)
    try:
        for number in range(CASES):
            space = f"test-fanout-{number}-"
            case = random_case(rng, FIRST_ID + number * 1000)
            home = TimelineStore(
                redis, 30, 3600, key_prefix=f"{space}home", channel_prefix=f"{space}live:",
                list_prefix=f"{space}followers:",
            )  # fmt: skip
            lists = FollowerLists(
                redis,
                key_start(f"{space}home"),
                3600,
                prefix=f"{space}followers:",
                bucket_target=rng.randint(1, 3),
            )
            for user in case.with_timeline:
                await home.finish_rebuild(user, [], [], await home.begin_rebuild(user))
            for author in case.users:
                gen = await lists.begin_build(author, len(case.followers(author)))
                assert gen is not None
                await lists.fill(author, gen, case.followers(author))
                await lists.finish_build(author, gen)
            # A timeline gone since its lists were built: fan-out finds it missing and drops it.
            gone = rng.choice(case.users)
            await redis.delete(home.key(gone))
            case.with_timeline.discard(gone)

            own_lists = TimelineStore(
                redis, 30, 3600, key_prefix=f"{space}celeb", channel_prefix=f"{space}celebrity:"
            )
            fanout = Fanout(None, None, home, None, None, own_lists)  # type: ignore[arg-type]
            events = [random_event(rng, case, 10_000 + n) for n in range(rng.randint(1, 6))]
            if rng.random() < 0.5:  # another for the same followers, other mentions: written together
                first = events[0]
                events.append(twin(rng, case, first, 10_000 + len(events)))
            jobs = [fanout.job(e, celebrity=e.author_id in case.celebrities) for e in events]
            outcomes = await home.fan_out(jobs, budget=rng.randint(1, 4))
            held = await holders(redis, home, case.users)
            for event, outcome in zip(events, outcomes, strict=True):
                wanted = case.receivers(event)
                assert held.get(event.tweet_id, set()) == wanted, (number, event, case)
                merged_at_read = event.author_id in case.celebrities and is_for_everyone(event)
                followers = None if merged_at_read else len(case.followers(event.author_id))
                assert (outcome.written, outcome.missing, outcome.followers) == (
                    len(wanted),
                    False,
                    followers,
                )
            for author in case.users:  # every follower with a timeline, no one else (a gone one may linger)
                members = await lists.members(author)
                assert members is not None
                assert {f for f in case.followers(author) if f in case.with_timeline} <= members
                assert members <= set(case.followers(author))

            edits = [fanout.job(TweetChanged(e.tweet_id, e.author_id, edited=True,
                                             mentioned_user_ids=e.mentioned_user_ids), celebrity=False)
                     for e in events]  # fmt: skip
            await home.fan_out(edits, budget=rng.randint(1, 4))
            assert await holders(redis, home, case.users) == held  # an edit only tells the streams

            deletions = [fanout.job(TweetChanged(e.tweet_id, e.author_id, deleted=True,
                                                 mentioned_user_ids=e.mentioned_user_ids), celebrity=False)
                         for e in events]  # fmt: skip
            await home.fan_out(deletions, budget=rng.randint(1, 4))
            assert await holders(redis, home, case.users) == {}
            async for key in redis.scan_iter(match=f"{space}*", count=1000):
                await redis.unlink(key)
    finally:
        await redis.aclose()


def home_by_the_rule(stubs: Stubs, viewer: Account, authors: list[Account]) -> set[str]:
    """The viewer's home timeline as a rebuild from PostgreSQL makes it (social.rules.belongs_in_home
    over the owners' answers): the tweets of whom they follow and theirs that belong, and those
    mentioning them."""
    following = {
        u.user_id
        for u in stubs.users.ListFollowing(
            users_pb.ListFollowingRequest(user_id=viewer.user_id, page_size=100), timeout=10
        ).users
    }
    found = set()
    for author in authors:
        if author.user_id not in following | {viewer.user_id}:
            continue
        for tweet in stubs.tweets.ListUserTweets(
            tweets_pb.ListUserTweetsRequest(user_id=author.user_id, page_size=100), timeout=10
        ).tweets:
            ref = Ref(
                int(tweet.author_id), int(tweet.reply_to_author_id) if tweet.reply_to_author_id else None
            )
            if belongs_in_home(ref, int(viewer.user_id), {int(u) for u in following}):
                found.add(tweet.tweet_id)
    mentions = stubs.tweets.ListMentions(
        tweets_pb.ListMentionsRequest(user_id=viewer.user_id, page_size=100), timeout=10
    ).tweets
    return found | {t.tweet_id for t in mentions}


@dataclass(frozen=True)
class Ref:
    author_id: int
    reply_to_author_id: int | None


def wipe_lists(mesh: Mesh) -> None:
    redis = redis_client(mesh.redis_url)
    for key in redis.scan_iter(match="followers:*", count=1000):
        redis.unlink(key)


@pytest.fixture
def people(stubs: Stubs) -> Iterator[tuple[list[Account], list[Account]]]:
    yield [stubs.sign_up(f"la{n}") for n in range(3)], [stubs.sign_up(f"lr{n}") for n in range(4)]


def test_fan_out_from_the_follower_lists_equals_fan_out_from_postgresql(
    mesh: Mesh, stubs: Stubs, people: tuple[list[Account], list[Account]]
) -> None:
    (a1, a2, a3), readers = people
    r1, r2, r3, r4 = readers
    everyone = [a1, a2, a3, *readers]

    def agrees() -> bool:
        """Each home timeline in Redis holds what the rule gives from PostgreSQL."""
        for viewer in everyone:
            held = held_in_redis(redis_client(mesh.redis_url), viewer.user_id)
            if held is not None:
                rule = home_by_the_rule(stubs, viewer, everyone)
                assert set(held) == rule, (viewer.user.handle, set(held) - rule, rule - set(held))
        return True

    for follower, followee in ((r1, a1), (r2, a1), (r3, a1), (r3, a2), (r4, a2), (r4, a3), (r1, a3)):
        stubs.follow(follower, followee)
    for account in everyone:
        stubs.home(account)  # every timeline exists (and joins the lists of whom it follows)
    p2 = stubs.post(a2, "from a2").tweet_id
    stubs.post(a1, "from a1")
    stubs.post(a1, "a reply to a2, for those who follow both", reply_to_tweet_id=p2)
    stubs.post(a3, f"hello @{r2.user.handle}")
    eventually(agrees, timeout=20)

    unfollow = users_pb.UnfollowUserRequest(user_id=a1.user_id)
    stubs.users.UnfollowUser(unfollow, metadata=r3.auth, timeout=10)
    stubs.follow(r4, a1)
    stubs.post(a1, "after the follow and the unfollow")
    eventually(agrees, timeout=20)

    wipe_lists(mesh)  # the lists are built again from PostgreSQL on the next posts
    stubs.post(a1, "after the wipe")
    stubs.post(a2, "after the wipe too", reply_to_tweet_id=p2)
    eventually(agrees, timeout=20)

    redis_client(mesh.redis_url).delete(f"home:{r2.user_id}")  # r2's timeline expired
    stubs.post(a1, "r2 is away")
    eventually(agrees, timeout=20)
    assert held_in_redis(redis_client(mesh.redis_url), r2.user_id) is None  # fan-out made none
    stubs.home(r2)  # r2 comes back: the timeline is rebuilt, and r2 rejoins the lists
    eventually(lambda: not stubs.home(r2).rebuilding, timeout=20)
    stubs.post(a1, "r2 is back")
    eventually(agrees, timeout=20)


async def test_follows_unfollows_and_rebuilds_racing_leave_each_list_as_postgresql_has_it(
    mesh: Mesh, stubs: Stubs
) -> None:
    authors = [stubs.sign_up(f"ra{n}") for n in range(2)]
    followers = [stubs.sign_up(f"rf{n}") for n in range(8)]
    for account in followers:
        stubs.home(account)
    rng = random.Random(7)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{mesh.ports.users}") as channel:
        users = users_grpc.UserServiceStub(channel)

        async def toggle(follower: Account, author: Account) -> None:
            for _ in range(rng.randint(1, 5)):
                request: Any = (
                    users_pb.FollowUserRequest(user_id=author.user_id)
                    if rng.random() < 0.5
                    else users_pb.UnfollowUserRequest(user_id=author.user_id)
                )
                call = (
                    users.FollowUser
                    if isinstance(request, users_pb.FollowUserRequest)
                    else users.UnfollowUser
                )
                await call(request, metadata=follower.auth, timeout=10)

        async def rebuild_lists() -> None:
            for _ in range(3):
                await users.EnsureFollowerLists(
                    users_pb.EnsureFollowerListsRequest(user_ids=[a.user_id for a in authors]), timeout=10
                )
                for follower in followers[:3]:
                    await users.JoinFollowerLists(users_pb.JoinFollowerListsRequest(user_id=follower.user_id))
                wipe_lists(mesh)

        await asyncio.gather(rebuild_lists(), *(toggle(f, a) for f in followers for a in authors))
        await users.EnsureFollowerLists(
            users_pb.EnsureFollowerListsRequest(user_ids=[a.user_id for a in authors]), timeout=10
        )

    lists = FollowerLists(aioredis.Redis.from_url(mesh.redis_url), key_start("home"), 3600)

    async def lists_agree() -> bool:
        for author in authors:
            truth = {
                int(u.user_id)
                for u in stubs.users.ListFollowers(
                    users_pb.ListFollowersRequest(user_id=author.user_id, page_size=100), timeout=10
                ).users
            }
            if await lists.members(int(author.user_id)) != truth:
                return False
        return True

    deadline = asyncio.get_running_loop().time() + 30
    while not await lists_agree():  # the follow events still being applied
        assert asyncio.get_running_loop().time() < deadline, "the follower lists disagree with PostgreSQL"
        await asyncio.sleep(0.1)
    assert redis_client(mesh.redis_url).exists(meta_key(int(authors[0].user_id)))

"""Typed clients for the calls services make to each other, so each lives in one place.

Every call goes over a Runtime channel and so carries the default deadline. Errors surface as
grpc.aio.AioRpcError; the server edge turns UNAVAILABLE / DEADLINE_EXCEEDED into UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from meshkit.auth import Session
from meshkit.batching import GroupCommit
from meshkit.protos import wire_id
from meshkit.status import relayed
from social.rules import Relation, TweetRef
from tweetmesh.media.v1 import media_service_pb2 as media_pb
from tweetmesh.media.v1 import media_service_pb2_grpc as media_grpc
from tweetmesh.notifications.v1 import notifications_service_pb2 as notifications_pb
from tweetmesh.notifications.v1 import notifications_service_pb2_grpc as notifications_grpc
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.tweets.v1 import tweets_service_pb2_grpc as tweets_grpc
from tweetmesh.users.v1 import users_service_pb2 as users_pb
from tweetmesh.users.v1 import users_service_pb2_grpc as users_grpc

# Everything users_svc knows of a user except tweets_count, which tweets_svc owns.
AUTHOR_MASK = FieldMask(
    paths=["user_id", "handle", "display_name", "create_time", "followers_count", "following_count"]
)
ID_PAGE = 10_000
# tweets_svc's ListTweetIdsByAuthors takes at most this many authors a call.
AUTHORS_PER_CALL = 5000
# Tokens per AuthenticateTokens call (its request's limit).
AUTHENTICATE_BATCH = 1000
# Concurrent session lookups gathered into one AuthenticateTokens call (callers, not tokens).
LOOKUPS_PER_CALL = 256


def relation_of(message: users_pb.Relation) -> Relation:
    relation = Relation.NONE
    for flag, bit in ((message.blocks, Relation.BLOCKS), (message.blocked_by, Relation.BLOCKED_BY)):
        if flag:
            relation |= bit
    return relation | Relation.MUTES if message.mutes else relation


class UsersPeer:
    SERVICE = users_pb.DESCRIPTOR.services_by_name["UserService"]

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = users_grpc.UserServiceStub(channel)
        # The session lookups of concurrent calls (each a cache miss of meshkit.auth) share a call:
        # one at a time, the lookups that arrive meanwhile go together in the next.
        self._lookups: GroupCommit[tuple[str, ...], dict[str, Session]] = GroupCommit(
            "session lookups", self._lookup_batch, max_batch=LOOKUPS_PER_CALL, max_in_flight=1
        )

    async def users(self, user_ids: Sequence[int], *, with_tweet_counts: bool) -> dict[int, users_pb.User]:
        if not user_ids:
            return {}
        reply = await self._stub.BatchGetUsers(
            users_pb.BatchGetUsersRequest(
                user_ids=[str(u) for u in dict.fromkeys(user_ids)],
                read_mask=None if with_tweet_counts else AUTHOR_MASK,
            )
        )
        return {int(u.user_id): u for u in reply.users}

    async def sessions(self, tokens: Sequence[str]) -> dict[str, Session]:
        """The sessions behind tokens that users_svc knows (for meshkit.auth), asked together with
        the lookups of concurrent calls; a failed call is the error of every lookup it carried."""
        if not tokens:
            return {}
        return await self._lookups(tuple(tokens))

    async def _lookup_batch(self, lookups: Sequence[tuple[str, ...]]) -> list[dict[str, Session]]:
        """Each lookup's sessions, from one AuthenticateTokens call per 1,000 distinct tokens."""
        tokens = list(dict.fromkeys(t for lookup in lookups for t in lookup))
        found: dict[str, Session] = {}
        for start in range(0, len(tokens), AUTHENTICATE_BATCH):
            reply = await self._stub.AuthenticateTokens(
                users_pb.AuthenticateTokensRequest(tokens=tokens[start : start + AUTHENTICATE_BATCH])
            )
            for s in reply.sessions:
                found[s.token] = Session(int(s.user_id), s.expire_time.ToDatetime(tzinfo=UTC))
        return [{t: found[t] for t in lookup if t in found} for lookup in lookups]

    async def user_exists(self, user_id: int) -> bool:
        return bool(await self.users([user_id], with_tweet_counts=False))

    async def resolve_handles(self, handles: Sequence[str]) -> dict[str, int]:
        """Lowercased handle -> user id, for the handles that exist."""
        reply = await self._stub.ResolveHandles(users_pb.ResolveHandlesRequest(handles=list(handles)))
        return {u.handle.lower(): int(u.user_id) for u in reply.users}

    async def followers_count(self, user_id: int) -> int:
        """How many follow user_id (0 for an unknown user)."""
        found = await self.users([user_id], with_tweet_counts=False)
        return int(found[user_id].followers_count) if user_id in found else 0

    async def followers_among(self, user_id: int, candidates: Sequence[int]) -> list[int]:
        """Which of `candidates` follow user_id."""
        reply = await self._stub.FilterFollowers(
            users_pb.FilterFollowersRequest(user_id=str(user_id), candidate_ids=[str(c) for c in candidates])
        )
        return [int(f) for f in reply.follower_ids]

    async def ensure_follower_lists(self, author_ids: Sequence[int]) -> None:
        """Has users_svc build the Redis follower lists of `author_ids` that are missing."""
        await self._stub.EnsureFollowerLists(
            users_pb.EnsureFollowerListsRequest(user_ids=[str(a) for a in author_ids])
        )

    async def sync_follow(self, follower_id: int, followee_id: int) -> None:
        """Has users_svc bring the followee's follower list in line with the follow graph."""
        await self._stub.SyncFollow(
            users_pb.SyncFollowRequest(follower_id=str(follower_id), followee_id=str(followee_id))
        )

    async def join_follower_lists(self, user_id: int) -> None:
        """Tells users_svc that the user's home timeline exists now (they join follower lists)."""
        await self._stub.JoinFollowerLists(users_pb.JoinFollowerListsRequest(user_id=str(user_id)))

    async def follower_pages(self, user_id: int) -> AsyncIterator[list[int]]:
        """Everyone following user_id, a page at a time."""
        token = ""
        while True:
            reply = await self._stub.ListFollowerIds(
                users_pb.ListFollowerIdsRequest(user_id=str(user_id), page_size=ID_PAGE, page_token=token)
            )
            yield [int(u) for u in reply.user_ids]
            token = reply.next_page_token
            if not token:
                return

    async def relations(self, viewer: int, others: Sequence[int] | None) -> dict[int, Relation]:
        """The viewer's blocks and mutes with `others` (None: all of them), as users_svc reads them
        from PostgreSQL (social.relations.Relations asks this when its cache cannot answer)."""
        reply = await self._stub.ListRelations(
            users_pb.ListRelationsRequest(
                user_id=str(viewer), other_ids=[str(o) for o in others or ()], all=others is None
            )
        )
        return {int(r.user_id): relation_of(r) for r in reply.relations}

    async def following(self, user_id: int) -> list[int]:
        """Everyone user_id follows."""
        ids: list[int] = []
        token = ""
        while True:
            reply = await self._stub.ListFollowingIds(
                users_pb.ListFollowingIdsRequest(user_id=str(user_id), page_size=ID_PAGE, page_token=token)
            )
            ids.extend(int(u) for u in reply.user_ids)
            token = reply.next_page_token
            if not token:
                return ids


class TweetsPeer:
    SERVICE = tweets_pb.DESCRIPTOR.services_by_name["TweetService"]

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = tweets_grpc.TweetServiceStub(channel)

    async def ids_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        """Newest first, ids strictly between `after` and `before`."""
        return [
            r.tweet_id
            for r in await self.refs_by_authors(author_ids, before=before, after=after, limit=limit)
        ]

    async def refs_by_authors(
        self, author_ids: Sequence[int], *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[TweetRef]:
        """Like ids_by_authors, with each tweet's author and replied-to author. More authors than
        one call takes are asked in chunks, and the newest `limit` of all answers kept."""
        refs: list[TweetRef] = []
        for start in range(0, len(author_ids), AUTHORS_PER_CALL):
            reply = await self._stub.ListTweetIdsByAuthors(
                tweets_pb.ListTweetIdsByAuthorsRequest(
                    author_ids=[str(a) for a in author_ids[start : start + AUTHORS_PER_CALL]],
                    before_tweet_id=wire_id(before),
                    after_tweet_id=wire_id(after),
                    limit=limit,
                )
            )
            refs.extend(
                TweetRef(
                    int(t.tweet_id),
                    int(t.author_id),
                    int(t.reply_to_author_id) if t.reply_to_author_id else None,
                )
                for t in reply.tweets
            )
        if len(author_ids) > AUTHORS_PER_CALL:
            refs.sort(key=lambda r: r.tweet_id, reverse=True)
        return refs[:limit]

    async def mention_ids(
        self, user_id: int, *, before: int | None = None, after: int | None = None, limit: int
    ) -> list[int]:
        """Tweets mentioning (or replying to) user_id, newest first, strictly between the bounds."""
        reply = await self._stub.ListMentionIds(
            tweets_pb.ListMentionIdsRequest(
                user_id=str(user_id),
                before_tweet_id=wire_id(before),
                after_tweet_id=wire_id(after),
                limit=limit,
            )
        )
        return [int(t) for t in reply.tweet_ids]

    async def global_page(self, page_token: str, page_size: int) -> tuple[list[tweets_pb.Tweet], str]:
        """One page of the global timeline, newest first, and the next page's token."""
        reply = await self._stub.GetGlobalTimeline(
            tweets_pb.GetGlobalTimelineRequest(page_size=page_size, page_token=page_token)
        )
        return list(reply.tweets), reply.next_page_token

    async def tweets(self, tweet_ids: Sequence[int]) -> dict[int, tweets_pb.Tweet]:
        """Hydrated tweets by id; ids unknown to tweets_svc are absent."""
        if not tweet_ids:
            return {}
        reply = await self._stub.BatchGetTweets(
            tweets_pb.BatchGetTweetsRequest(tweet_ids=[str(t) for t in tweet_ids])
        )
        return {int(t.tweet_id): t for t in reply.tweets}

    async def tweet_counts(self, user_ids: Sequence[int]) -> dict[int, int]:
        reply = await self._stub.BatchGetTweetCounts(
            tweets_pb.BatchGetTweetCountsRequest(user_ids=[str(u) for u in user_ids])
        )
        return {int(c.user_id): c.tweets_count for c in reply.counts}

    async def media_tweets(self, media_ids: Sequence[int]) -> dict[int, int]:
        """media id -> the tweet holding it, for the media a tweet holds."""
        reply = await self._stub.BatchGetMediaTweets(
            tweets_pb.BatchGetMediaTweetsRequest(media_ids=[str(m) for m in media_ids])
        )
        return {int(m.media_id): int(m.tweet_id) for m in reply.media}


@dataclass(frozen=True, slots=True)
class MediaFacts:
    """What a tweet shows of an uploaded media (media_svc's record of it)."""

    media_id: int
    content_type: str
    width: int
    height: int
    duration_ms: int
    url: str
    thumbnail_url: str


class MediaPeer:
    SERVICE = media_pb.DESCRIPTOR.services_by_name["MediaService"]

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = media_grpc.MediaServiceStub(channel)

    async def claim(self, owner_id: int, media_ids: Sequence[int]) -> list[MediaFacts]:
        """owner_id's media reserved for a tweet they post, in order; media_svc's refusal (not
        found, not theirs, attached elsewhere) is raised as the same DomainError."""
        try:
            reply = await self._stub.ClaimMedia(
                media_pb.ClaimMediaRequest(owner_id=str(owner_id), media_ids=[str(m) for m in media_ids])
            )
        except grpc.aio.AioRpcError as error:
            refusal = relayed(error)
            if refusal is None:
                raise
            raise refusal from None
        return [
            MediaFacts(
                media_id=int(m.media_id),
                content_type=m.content_type,
                width=m.width,
                height=m.height,
                duration_ms=m.duration.ToMilliseconds(),
                url=m.url,
                thumbnail_url=m.thumbnail_url,
            )
            for m in reply.media
        ]


class NotificationsPeer:
    SERVICE = notifications_pb.DESCRIPTOR.services_by_name["NotificationService"]

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = notifications_grpc.NotificationServiceStub(channel)

    async def notifications(
        self, recipient_id: int, ids: Sequence[int]
    ) -> dict[int, notifications_pb.Notification]:
        """The recipient's notifications by id, hydrated; those taken away are absent."""
        if not ids:
            return {}
        reply = await self._stub.BatchGetNotifications(
            notifications_pb.BatchGetNotificationsRequest(
                recipient_id=str(recipient_id), notification_ids=[str(i) for i in ids]
            )
        )
        return {int(n.notification_id): n for n in reply.notifications}

    async def after(self, recipient_id: int, after: int, limit: int) -> list[notifications_pb.Notification]:
        """The recipient's notifications after `after`, oldest first."""
        reply = await self._stub.ListNotificationsAfter(
            notifications_pb.ListNotificationsAfterRequest(
                recipient_id=str(recipient_id), after_id=wire_id(after or None), limit=limit
            )
        )
        return list(reply.notifications)

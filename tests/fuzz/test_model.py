"""The model-based test: random sequences of every public action by several accounts, run against
the real mesh (the test session's: PostgreSQL, Redis, the four services), with every read checked
against a plain in-memory model after each step.

`Model` is what the mesh should hold, written as simply as the README states the rules (who sees
what, counts, orders); `MeshMachine` (hypothesis's RuleBasedStateMachine) draws the actions, does
each on the mesh and on the model, and after every step compares every read of the public API with
the model: GetUser (profile, counts), GetTweet (text, counts, reply, retweet and quote fields,
mentions, hashtags), user timelines, replies, quotes, conversations, who liked a tweet and what a
user liked, bookmarks, mentions, hashtags, search, the global timeline, followers and following,
and home timelines (eventual: polled with a
deadline, as fan-out runs after the write).

To add an action (block, mute...): one `@rule` on MeshMachine that calls
the mesh and then the Model method of the same name, which changes the model the way the action
should (and says which error the mesh must answer, if any); if the action adds something to read,
one more comparison in `MeshMachine.check_reads` (and the model's rule for it, e.g. a blocked
author's tweets leave `Model.home`). Everything else (drawing accounts and tweets, the eventual
reads, shrinking a failure to a short sequence) is shared.

Bounded in `make test` (MODEL_EXAMPLES examples of MODEL_STEPS steps); `make fuzz` runs more
(FUZZ_EXAMPLES / 100 examples of twice the steps).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.helpers import Account, Stubs, eventually
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

FUZZ = int(os.environ.get("FUZZ_EXAMPLES", "0"))
EXAMPLES = max(FUZZ // 100, 3) if FUZZ else 3
STEPS = 40 if FUZZ else 20
ACCOUNTS_MAX = 4  # signed up one by one; a crowd (becomes_popular) adds more
CROWD = 5  # followers that make an author a celebrity in the test mesh (CELEBRITY_FOLLOWERS)
WORDS = 3  # search words per example (unique to it, so other tests' tweets never match)
TAGS = 2
TIMEOUT = 10.0


@dataclass
class Tweet:
    tweet_id: str
    author: str
    text: str = ""
    reply_to: str | None = None
    reply_to_author: str | None = None
    retweet_of: str | None = None
    mentions: tuple[str, ...] = ()  # user ids of the @handles, in order of appearance, each once
    hashtags: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    likes: list[str] = field(default_factory=list)  # user ids, in the order they liked
    deleted: bool = False
    quote_of: str | None = None
    quote_author: str | None = None
    versions: list[str] = field(default_factory=list)  # the texts edits replaced, oldest first

    @property
    def for_everyone(self) -> bool:
        return self.reply_to_author is None or self.reply_to_author == self.author

    @property
    def public(self) -> bool:
        return self.retweet_of is None and self.for_everyone

    @property
    def mentioned(self) -> set[str]:
        """Who the mention list shows it to: the @handles and the replied-to and quoted authors."""
        implicit = [a for a in (self.reply_to_author, self.quote_author) if a is not None]
        return {*self.mentions, *implicit}


@dataclass
class User:
    user_id: str
    handle: str
    display_name: str
    bio: str = ""


class Refused(Exception):
    """What the model says the mesh must answer instead of OK."""

    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self.code = code


EDIT_MAX = 5  # edits per tweet (tweets_svc's EDIT_MAX; the 30-minute window is never reached here)
RETWEET_WINDOW = 40  # timeline_svc hides a retweet whose original is among this many older entries


class Model:
    """The mesh as the README describes it, in plain Python. Each action checks what the mesh must
    refuse (raising Refused with the status) before changing anything."""

    def __init__(self) -> None:
        self.users: dict[str, User] = {}
        self.follows: list[tuple[str, str]] = []  # (follower, followee), oldest follow first
        self.tweets: dict[str, Tweet] = {}  # in creation order
        self.bookmarks: dict[str, list[str]] = {}  # user -> tweet ids, oldest bookmark first

    # ----- actions

    def sign_up(self, user: User) -> None:
        self.users[user.user_id] = user

    def follow(self, follower: str, followee: str) -> None:
        if follower == followee:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT)
        if (follower, followee) not in self.follows:
            self.follows.append((follower, followee))

    def unfollow(self, follower: str, followee: str) -> None:
        if follower == followee:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT)
        if (follower, followee) in self.follows:
            self.follows.remove((follower, followee))

    def post(self, tweet: Tweet) -> None:
        self.tweets[tweet.tweet_id] = tweet

    def reply_target(self, tweet_id: str) -> Tweet:
        """The tweet a reply answers (a retweet stands for its original); NOT_FOUND when gone."""
        return self.tweets[self.original(tweet_id)]

    def original(self, tweet_id: str) -> str:
        tweet = self.tweets[tweet_id]
        if tweet.deleted:
            raise Refused(grpc.StatusCode.NOT_FOUND)
        return tweet.retweet_of or tweet_id

    def retweet_by(self, actor: str, original: str) -> Tweet | None:
        return next(
            (t for t in self.live() if t.author == actor and t.retweet_of == original),
            None,
        )

    def retweet(self, actor: str, tweet_id: str, new_id: str) -> str:
        """The id of the actor's retweet of the original (an existing one is answered again)."""
        original = self.original(tweet_id)
        existing = self.retweet_by(actor, original)
        if existing is not None:
            return existing.tweet_id
        self.tweets[new_id] = Tweet(new_id, actor, retweet_of=original)
        return new_id

    def unretweet(self, actor: str, tweet_id: str) -> None:
        existing = self.retweet_by(actor, self.original(tweet_id))
        if existing is not None:
            existing.deleted = True

    def like(self, actor: str, tweet_id: str) -> None:
        original = self.tweets[self.original(tweet_id)]
        if actor not in original.likes:
            original.likes.append(actor)

    def unlike(self, actor: str, tweet_id: str) -> None:
        original = self.tweets[self.original(tweet_id)]
        if actor in original.likes:
            original.likes.remove(actor)

    def delete(self, actor: str, tweet_id: str) -> None:
        tweet = self.tweets[tweet_id]
        if tweet.deleted:
            raise Refused(grpc.StatusCode.NOT_FOUND)
        if tweet.author != actor:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED)
        for doomed in [tweet, *(t for t in self.live() if t.retweet_of == tweet_id)]:
            doomed.deleted = True
            doomed.likes.clear()
            for kept in self.bookmarks.values():
                if doomed.tweet_id in kept:
                    kept.remove(doomed.tweet_id)

    def bookmark(self, actor: str, tweet_id: str) -> None:
        original = self.original(tweet_id)
        kept = self.bookmarks.setdefault(actor, [])
        if original not in kept:
            kept.append(original)

    def unbookmark(self, actor: str, tweet_id: str) -> None:
        """Works for a deleted tweet (a retweet still stands for its original)."""
        tweet = self.tweets[tweet_id]
        original = tweet.retweet_of or tweet_id
        if original in self.bookmarks.get(actor, []):
            self.bookmarks[actor].remove(original)

    def edit(self, actor: str, tweet_id: str, edited: Tweet) -> None:
        """The tweet takes the text (and what it names) of `edited`; its old text is kept."""
        tweet = self.tweets[tweet_id]
        if tweet.deleted:
            raise Refused(grpc.StatusCode.NOT_FOUND)
        if tweet.author != actor:
            raise Refused(grpc.StatusCode.PERMISSION_DENIED)
        if tweet.retweet_of is not None or len(tweet.versions) >= EDIT_MAX:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION)
        tweet.versions.append(tweet.text)
        tweet.text, tweet.words = edited.text, edited.words
        tweet.mentions, tweet.hashtags = edited.mentions, edited.hashtags

    def edit_profile(self, actor: str, display_name: str | None, bio: str | None) -> None:
        user = self.users[actor]
        if display_name is not None:
            user.display_name = display_name
        if bio is not None:
            user.bio = bio

    # ----- reads

    def live(self) -> Iterator[Tweet]:
        return (t for t in self.tweets.values() if not t.deleted)

    def newest_first(self, tweets: Iterator[Tweet]) -> list[str]:
        return sorted((t.tweet_id for t in tweets), key=int, reverse=True)

    def following(self, user: str) -> list[str]:
        """Newest follow first, as ListFollowing pages them."""
        return [b for a, b in reversed(self.follows) if a == user]

    def followers(self, user: str) -> list[str]:
        return [a for a, b in reversed(self.follows) if b == user]

    def tweets_count(self, user: str) -> int:
        return sum(1 for t in self.live() if t.author == user)

    def counts(self, tweet: Tweet) -> tuple[int, int, int, int]:
        """(likes, retweets, replies, quotes) as GetTweet shows them."""
        return (
            len(tweet.likes),
            sum(1 for t in self.live() if t.retweet_of == tweet.tweet_id),
            sum(1 for t in self.live() if t.reply_to == tweet.tweet_id),
            sum(1 for t in self.live() if t.quote_of == tweet.tweet_id),
        )

    def conversation(self, tweet_id: str, max_depth: int) -> tuple[list[str], list[tuple[str, int, bool]]]:
        """The ids above a tweet, root first, and (id, depth, deleted) of the replies below it in
        reading order: each followed by its own replies, the asked-for author's first among
        siblings, then oldest first; a deleted reply only where it has replies."""
        focal = self.tweets[self.tweets[tweet_id].retweet_of or tweet_id]
        above: list[str] = []
        parent = focal.reply_to
        while parent is not None:
            above.insert(0, parent)
            parent = self.tweets[parent].reply_to
        below: list[tuple[tuple[int, ...], str, int, bool]] = []

        def walk(node: str, path: tuple[int, ...], depth: int) -> None:
            for child in (t for t in self.tweets.values() if t.reply_to == node):
                child_path = (*path, 0 if child.author == focal.author else 1, int(child.tweet_id))
                has_replies = any(t.reply_to == child.tweet_id for t in self.tweets.values())
                if not child.deleted or has_replies:
                    below.append((child_path, child.tweet_id, depth, child.deleted))
                if depth < max_depth:
                    walk(child.tweet_id, child_path, depth + 1)

        walk(focal.tweet_id, (), 1)
        return above, [(t, depth, deleted) for _, t, depth, deleted in sorted(below)]

    def home(self, viewer: str) -> list[str]:
        """The viewer's home timeline (social.rules.belongs_in_home and the mentions), newest
        first, without the retweets whose original one of the 40 older entries shows already."""
        following = set(self.following(viewer))

        def belongs(tweet: Tweet) -> bool:
            if tweet.author == viewer or viewer in tweet.mentioned:
                return True
            return tweet.author in following and (tweet.for_everyone or tweet.reply_to_author in following)

        ids = self.newest_first(t for t in self.live() if belongs(t))
        shows = [self.tweets[t].retweet_of or t for t in ids]
        return [
            t
            for i, t in enumerate(ids)
            if self.tweets[t].retweet_of is None or shows[i] not in shows[i + 1 : i + 1 + RETWEET_WINDOW]
        ]


def pages(call: Callable[[str], Any], items: Callable[[Any], list[Any]]) -> list[Any]:
    """Every item of a paged list, following next_page_token to the end."""
    found: list[Any] = []
    token = ""
    while True:
        reply = call(token)
        found.extend(items(reply))
        token = reply.next_page_token
        if not token:
            return found


class MeshMachine(RuleBasedStateMachine):
    stubs: Stubs  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.model = Model()
        self.accounts: dict[str, Account] = {}
        nonce = secrets.token_hex(3)
        # Letters then a digit: PostgreSQL's parser keeps such a word whole (no stemming).
        self.words = [f"zq{nonce}w{i}" for i in range(WORDS)]
        self.tags = [f"zq{nonce}t{i}" for i in range(TAGS)]

    # ----- drawing from what exists

    def _user(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.model.users)))

    def _tweet(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(list(self.model.tweets)))

    def _expect(self, action: Callable[[], object], mesh: Callable[[], Any]) -> Any:
        """Applies `action` to the model and `mesh` to the mesh; they must agree on the outcome."""
        try:
            action()
        except Refused as refused:
            with pytest.raises(grpc.RpcError) as error:
                mesh()
            assert error.value.code() == refused.code, error.value.details()
            return None
        return mesh()

    def _text(self, data: st.DataObject) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """A tweet text with some of this example's words, @handles and #tags; and those."""
        words = tuple(data.draw(st.lists(st.sampled_from(self.words), max_size=2, unique=True)))
        handles = data.draw(st.lists(st.sampled_from(sorted(self.model.users)), max_size=2, unique=True))
        tags = tuple(data.draw(st.lists(st.sampled_from(self.tags), max_size=2, unique=True)))
        parts = [*words, *(f"@{self.model.users[u].handle}" for u in handles), *(f"#{t}" for t in tags)]
        text = " ".join(parts) or "just words"
        return text, words, tuple(handles), tags

    # ----- actions

    @initialize()
    def two_accounts(self) -> None:
        self.sign_up()
        self.sign_up()

    @precondition(lambda self: len(self.model.users) < ACCOUNTS_MAX)
    @rule()
    def sign_up(self) -> None:
        account = self.stubs.sign_up("model")
        self.accounts[account.user_id] = account
        self.model.sign_up(User(account.user_id, account.user.handle, account.user.display_name))

    @precondition(lambda self: len(self.model.users) <= ACCOUNTS_MAX)
    @rule(data=st.data())
    def becomes_popular(self, data: st.DataObject) -> None:
        """Enough accounts follow someone to make them a celebrity (hybrid fan-out: promoted at
        their next post, merged at read time; demoted again when an unfollow takes them below)."""
        star = self._user(data)
        while len(self.model.users) <= CROWD:
            self.sign_up()
        for fan in sorted(self.model.users):
            if fan != star:
                self.model.follow(fan, star)
                self.stubs.follow(self.accounts[fan], self.accounts[star])

    @rule(data=st.data(), following=st.booleans())
    def follow_or_unfollow(self, data: st.DataObject, following: bool) -> None:
        actor, other = self._user(data), self._user(data)
        auth = self.accounts[actor].auth
        if following:
            self._expect(
                lambda: self.model.follow(actor, other),
                lambda: self.stubs.users.FollowUser(
                    users_pb.FollowUserRequest(user_id=other), metadata=auth, timeout=TIMEOUT
                ),
            )
        else:
            self._expect(
                lambda: self.model.unfollow(actor, other),
                lambda: self.stubs.users.UnfollowUser(
                    users_pb.UnfollowUserRequest(user_id=other), metadata=auth, timeout=TIMEOUT
                ),
            )

    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        author = self._user(data)
        text, words, mentions, tags = self._text(data)
        tweet = self.stubs.post(self.accounts[author], text)
        self.model.post(Tweet(tweet.tweet_id, author, text, mentions=mentions, hashtags=tags, words=words))

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data())
    def reply(self, data: st.DataObject) -> None:
        author, target = self._user(data), self._tweet(data)
        text, words, mentions, tags = self._text(data)
        reply = self._expect(
            lambda: self.model.reply_target(target),
            lambda: self.stubs.post(self.accounts[author], text, reply_to_tweet_id=target),
        )
        if reply is not None:
            answered = self.model.reply_target(target)
            self.model.post(
                Tweet(
                    reply.tweet_id,
                    author,
                    text,
                    reply_to=answered.tweet_id,
                    reply_to_author=answered.author,
                    mentions=mentions,
                    hashtags=tags,
                    words=words,
                )
            )

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data())
    def quote(self, data: st.DataObject) -> None:
        author, target = self._user(data), self._tweet(data)
        text, words, mentions, tags = self._text(data)
        posted = self._expect(
            lambda: self.model.original(target),
            lambda: self.stubs.post(self.accounts[author], text, quote_tweet_id=target),
        )
        if posted is not None:
            quoted = self.model.tweets[self.model.original(target)]
            self.model.post(
                Tweet(
                    posted.tweet_id,
                    author,
                    text,
                    mentions=mentions,
                    hashtags=tags,
                    words=words,
                    quote_of=quoted.tweet_id,
                    quote_author=quoted.author,
                )
            )

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data(), undo=st.booleans())
    def bookmark_or_unbookmark(self, data: st.DataObject, undo: bool) -> None:
        actor, target = self._user(data), self._tweet(data)
        auth = self.accounts[actor].auth
        if undo:
            self._expect(
                lambda: self.model.unbookmark(actor, target),
                lambda: self.stubs.tweets.UnbookmarkTweet(
                    tweets_pb.UnbookmarkTweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
                ),
            )
        else:
            self._expect(
                lambda: self.model.bookmark(actor, target),
                lambda: self.stubs.tweets.BookmarkTweet(
                    tweets_pb.BookmarkTweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
                ),
            )

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data(), undo=st.booleans())
    def retweet_or_unretweet(self, data: st.DataObject, undo: bool) -> None:
        actor, target = self._user(data), self._tweet(data)
        auth = self.accounts[actor].auth
        if undo:
            self._expect(
                lambda: self.model.unretweet(actor, target),
                lambda: self.stubs.tweets.Unretweet(
                    tweets_pb.UnretweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
                ),
            )
            return
        reply = self._expect(
            lambda: self.model.original(target),
            lambda: self.stubs.tweets.Retweet(
                tweets_pb.RetweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
            ),
        )
        if reply is not None:
            answer = self.model.retweet(actor, target, reply.tweet.tweet_id)
            assert reply.tweet.tweet_id == answer, "a repeated retweet answers the existing one"

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data(), undo=st.booleans())
    def like_or_unlike(self, data: st.DataObject, undo: bool) -> None:
        actor, target = self._user(data), self._tweet(data)
        auth = self.accounts[actor].auth
        if undo:
            self._expect(
                lambda: self.model.unlike(actor, target),
                lambda: self.stubs.tweets.UnlikeTweet(
                    tweets_pb.UnlikeTweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
                ),
            )
        else:
            self._expect(
                lambda: self.model.like(actor, target),
                lambda: self.stubs.tweets.LikeTweet(
                    tweets_pb.LikeTweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
                ),
            )

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data(), by_author=st.booleans())
    def delete(self, data: st.DataObject, by_author: bool) -> None:
        target = self._tweet(data)
        actor = self.model.tweets[target].author if by_author else self._user(data)
        auth = self.accounts[actor].auth
        self._expect(
            lambda: self.model.delete(actor, target),
            lambda: self.stubs.tweets.DeleteTweet(
                tweets_pb.DeleteTweetRequest(tweet_id=target), metadata=auth, timeout=TIMEOUT
            ),
        )

    @precondition(lambda self: self.model.tweets)
    @rule(data=st.data(), by_author=st.booleans())
    def edit(self, data: st.DataObject, by_author: bool) -> None:
        target = self._tweet(data)
        actor = self.model.tweets[target].author if by_author else self._user(data)
        text, words, mentions, tags = self._text(data)
        request = tweets_pb.EditTweetRequest(tweet_id=target, text=text)
        answer = self._expect(
            lambda: self.model.edit(
                actor, target, Tweet(target, actor, text, mentions=mentions, hashtags=tags, words=words)
            ),
            lambda: self.stubs.tweets.EditTweet(request, metadata=self.accounts[actor].auth, timeout=TIMEOUT),
        )
        if answer is not None:
            assert (answer.tweet.text, answer.tweet.edit_count) == (
                text,
                len(self.model.tweets[target].versions),
            )

    @rule(
        data=st.data(),
        display_name=st.none() | st.sampled_from(["Ada", "Grace Hopper", "Émile", "李"]),
        bio=st.none() | st.sampled_from(["", "hello", "two\nlines"]),
    )
    def edit_profile(self, data: st.DataObject, display_name: str | None, bio: str | None) -> None:
        actor = self._user(data)
        request = users_pb.UpdateUserRequest(user_id=actor, display_name=display_name, bio=bio)
        self._expect(
            lambda: self.model.edit_profile(actor, display_name, bio),
            lambda: self.stubs.users.UpdateUser(request, metadata=self.accounts[actor].auth, timeout=TIMEOUT),
        )

    # ----- reads

    @invariant()
    def check_reads(self) -> None:
        for user in self.model.users.values():
            self._check_user(user)
        for tweet in list(self.model.tweets.values()):
            self._check_tweet(tweet)
        self._check_lists()
        for user_id in self.model.users:
            # Home timelines are eventual: fan-out writes them after the call answered.
            eventually(lambda user_id=user_id: self._home_matches(user_id), timeout=15)  # type: ignore[misc]

    def _home_matches(self, user_id: str) -> bool:
        """The viewer's home timeline: its tweets, each showing its current text (a retweet its
        original's)."""
        viewer = self.accounts[user_id]
        got = pages(
            lambda token: self.stubs.home(viewer, 100, token),
            lambda reply: [(t.tweet_id, t.retweeted_tweet.text or t.text) for t in reply.tweets],
        )
        tweets = self.model.tweets
        expected = [(t, tweets[tweets[t].retweet_of or t].text) for t in self.model.home(user_id)]
        assert got == expected, f"home of {user_id}: got {got}, expected {expected}"
        return True

    def _check_user(self, user: User) -> None:
        m, stubs = self.model, self.stubs
        got = stubs.users.GetUser(users_pb.GetUserRequest(user_id=user.user_id), timeout=TIMEOUT).user
        assert (got.handle, got.display_name, got.bio) == (user.handle, user.display_name, user.bio)
        assert (got.followers_count, got.following_count, got.tweets_count) == (
            len(m.followers(user.user_id)),
            len(m.following(user.user_id)),
            m.tweets_count(user.user_id),
        ), f"counts of {user.user_id}"
        uid = user.user_id
        assert self._ids(
            lambda token: stubs.tweets.ListUserTweets(
                tweets_pb.ListUserTweetsRequest(user_id=uid, page_token=token, page_size=7), timeout=TIMEOUT
            )
        ) == m.newest_first(t for t in m.live() if t.author == uid)
        assert self._ids(
            lambda token: stubs.tweets.ListMentions(
                tweets_pb.ListMentionsRequest(user_id=uid, page_token=token, page_size=7), timeout=TIMEOUT
            )
        ) == m.newest_first(t for t in m.live() if uid in t.mentioned)
        liked = [t.tweet_id for t in m.live() if uid in t.likes]
        assert sorted(
            self._ids(
                lambda token: stubs.tweets.ListLikedTweets(
                    tweets_pb.ListLikedTweetsRequest(user_id=uid, page_token=token, page_size=7),
                    timeout=TIMEOUT,
                )
            )
        ) == sorted(liked), f"likes of {uid}"
        followers = pages(
            lambda token: stubs.users.ListFollowers(
                users_pb.ListFollowersRequest(user_id=uid, page_token=token, page_size=3), timeout=TIMEOUT
            ),
            lambda reply: [u.user_id for u in reply.users],
        )
        assert followers == m.followers(uid), f"followers of {uid}"
        following = pages(
            lambda token: stubs.users.ListFollowing(
                users_pb.ListFollowingRequest(user_id=uid, page_token=token, page_size=3), timeout=TIMEOUT
            ),
            lambda reply: [u.user_id for u in reply.users],
        )
        assert following == m.following(uid), f"following of {uid}"
        auth = self.accounts[uid].auth
        bookmarks = self._ids(
            lambda token: stubs.tweets.ListBookmarks(
                tweets_pb.ListBookmarksRequest(page_token=token, page_size=3), metadata=auth, timeout=TIMEOUT
            )
        )
        assert bookmarks == list(reversed(m.bookmarks.get(uid, []))), f"bookmarks of {uid}"

    def _ids(self, call: Callable[[str], Any]) -> list[str]:
        return pages(call, lambda reply: [t.tweet_id for t in reply.tweets])

    def _check_tweet(self, tweet: Tweet) -> None:
        m, stubs = self.model, self.stubs
        request = tweets_pb.GetTweetRequest(tweet_id=tweet.tweet_id)
        if tweet.deleted:
            with pytest.raises(grpc.RpcError) as error:
                stubs.tweets.GetTweet(request, timeout=TIMEOUT)
            assert error.value.code() == grpc.StatusCode.NOT_FOUND, f"deleted {tweet.tweet_id} is readable"
        else:
            got = stubs.tweets.GetTweet(request, timeout=TIMEOUT).tweet
            parent = m.tweets.get(tweet.reply_to or "")
            assert (
                got.author_id,
                got.text,
                got.reply_to_tweet_id,
                got.reply_to_author_id,
                got.reply_to_deleted,
                got.retweet_of_tweet_id,
                [u.user_id for u in got.mentions],
                list(got.hashtags),
            ) == (
                tweet.author,
                tweet.text,
                tweet.reply_to or "",
                tweet.reply_to_author or "",
                parent is not None and parent.deleted,
                tweet.retweet_of or "",
                list(tweet.mentions),
                list(tweet.hashtags),
            ), f"tweet {tweet.tweet_id}"
            assert (got.like_count, got.retweet_count, got.reply_count, got.quote_count) == m.counts(tweet), (
                f"counts of {tweet.tweet_id}"
            )
            if tweet.retweet_of is not None:
                assert got.retweeted_tweet.text == m.tweets[tweet.retweet_of].text, (
                    f"retweet {tweet.tweet_id}"
                )
            else:
                history = stubs.tweets.GetTweetHistory(
                    tweets_pb.GetTweetHistoryRequest(tweet_id=tweet.tweet_id), timeout=TIMEOUT
                )
                assert got.edit_count == len(tweet.versions), f"edits of {tweet.tweet_id}"
                assert [v.text for v in history.versions] == [tweet.text, *reversed(tweet.versions)], (
                    f"history of {tweet.tweet_id}"
                )
            if tweet.quote_of is not None:
                quoted = m.tweets[tweet.quote_of]
                assert (
                    got.quote_tweet_id,
                    got.quote_status,
                    got.quoted_tweet.tweet_id,
                    got.quoted_tweet.text,
                ) == (
                    quoted.tweet_id,
                    tweets_pb.QUOTE_STATUS_DELETED if quoted.deleted else tweets_pb.QUOTE_STATUS_AVAILABLE,
                    "" if quoted.deleted else quoted.tweet_id,
                    "" if quoted.deleted else quoted.text,
                ), f"quote {tweet.tweet_id}"
            likers = pages(
                lambda token: stubs.tweets.ListLikingUsers(
                    tweets_pb.ListLikingUsersRequest(tweet_id=tweet.tweet_id, page_token=token, page_size=3),
                    timeout=TIMEOUT,
                ),
                lambda reply: [u.user_id for u in reply.users],
            )
            assert likers == list(reversed(tweet.likes)), f"likes of {tweet.tweet_id}"
        if tweet.retweet_of is None:
            replies = self._ids(
                lambda token: stubs.tweets.ListReplies(
                    tweets_pb.ListRepliesRequest(tweet_id=tweet.tweet_id, page_token=token, page_size=3),
                    timeout=TIMEOUT,
                )
            )
            expected = reversed(m.newest_first(t for t in m.live() if t.reply_to == tweet.tweet_id))
            assert replies == list(expected), f"replies to {tweet.tweet_id}"
            quotes = self._ids(
                lambda token: stubs.tweets.ListQuotes(
                    tweets_pb.ListQuotesRequest(tweet_id=tweet.tweet_id, page_token=token, page_size=3),
                    timeout=TIMEOUT,
                )
            )
            assert quotes == m.newest_first(t for t in m.live() if t.quote_of == tweet.tweet_id), (
                f"quotes of {tweet.tweet_id}"
            )
            self._check_conversation(tweet)

    def _check_conversation(self, tweet: Tweet) -> None:
        above, below = self.model.conversation(tweet.tweet_id, 3)
        got: list[tuple[str, int, bool]] = []
        token = ""
        while True:
            reply = self.stubs.tweets.GetConversation(
                tweets_pb.GetConversationRequest(
                    tweet_id=tweet.tweet_id, max_depth=3, page_token=token, page_size=2
                ),
                timeout=TIMEOUT,
            )
            got.extend((e.tweet_id, e.depth, e.deleted) for e in reply.replies)
            token = reply.next_page_token
            if not token:
                break
        assert [e.tweet_id for e in reply.ancestors] == above, f"above {tweet.tweet_id}"
        assert got == below, f"conversation of {tweet.tweet_id}"

    def _check_lists(self) -> None:
        m, stubs = self.model, self.stubs
        for tag in self.tags:
            assert self._ids(
                lambda token, tag=tag: stubs.tweets.ListHashtagTweets(  # type: ignore[misc]
                    tweets_pb.ListHashtagTweetsRequest(tag=tag, page_token=token, page_size=5),
                    timeout=TIMEOUT,
                )
            ) == m.newest_first(t for t in m.live() if tag in t.hashtags), f"#{tag}"
        for word in self.words:
            found = self._ids(
                lambda token, word=word: stubs.tweets.SearchTweets(  # type: ignore[misc]
                    tweets_pb.SearchTweetsRequest(query=word, page_token=token, page_size=5), timeout=TIMEOUT
                )
            )
            assert sorted(found) == sorted(t.tweet_id for t in m.live() if word in t.words), f"search {word}"
        if m.tweets:
            floor = min(int(t) for t in m.tweets)
            got: list[str] = []
            token = ""
            while True:  # the global timeline from the top down to this example's first tweet
                reply = stubs.tweets.GetGlobalTimeline(
                    tweets_pb.GetGlobalTimelineRequest(page_token=token, page_size=50), timeout=TIMEOUT
                )
                got.extend(t.tweet_id for t in reply.tweets if int(t.tweet_id) >= floor)
                token = reply.next_page_token
                if not token or any(int(t.tweet_id) < floor for t in reply.tweets):
                    break
            assert got == m.newest_first(t for t in m.live() if t.public), "global timeline"


# Each step reads everything back (about a hundred calls): ~0.5 s a step on a loaded machine.
@pytest.mark.timeout(EXAMPLES * STEPS * 3 + 120)
def test_the_mesh_behaves_like_its_model(stubs: Stubs) -> None:
    MeshMachine.stubs = stubs
    MeshMachine.TestCase.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    MeshMachine.TestCase().runTest()

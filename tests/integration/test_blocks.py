"""Block and mute on every surface, through the real mesh: the home timeline (tweets fanned out
before the block too) and its live stream, replies, mentions, likes, follows, search as a signed-in
viewer, hashtags, quotes, conversations, bookmarks, the global timeline and its stream; what a block
forbids (follow, reply, quote, like, retweet); what a mute hides and what it does not; the lists of
blocks and mutes."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2

from devstack.mesh import Mesh
from meshkit.rpc_details import error_details
from tests.helpers import (
    Account,
    LiveStream,
    Stubs,
    eventually,
    held_in_redis,
    http_call,
    redis_client,
    rpc_error,
)
from tweetmesh.tweets.v1 import tweets_service_pb2 as tweets_pb
from tweetmesh.users.v1 import users_service_pb2 as pb


def word() -> str:
    return "w" + secrets.token_hex(5)


def relate(stubs: Stubs, verb: str, actor: Account, other: Account) -> pb.User:
    """BlockUser, UnblockUser, MuteUser or UnmuteUser by `actor` on `other`."""
    method = getattr(stubs.users, f"{verb.capitalize()}User")
    request = getattr(pb, f"{verb.capitalize()}UserRequest")(user_id=other.user_id)
    return method(request, metadata=actor.auth, timeout=10).user  # type: ignore[no-any-return]


def refused(call: Callable[[], object], code: grpc.StatusCode, reason: str) -> None:
    error = rpc_error(call)
    assert error.code() == code, error.details()
    infos = error_details(error, error_details_pb2.ErrorInfo)
    assert infos and infos[0].reason == reason, error.details()


def ids(tweets: object) -> set[str]:
    return {t.tweet_id for t in tweets}  # type: ignore[attr-defined]


@dataclass
class Scene:
    alice: Account  # blocks bob
    bob: Account
    carol: Account  # a bystander both follow
    tag: str
    alice_tweet: tweets_pb.Tweet
    bob_tweet: tweets_pb.Tweet
    bob_mention: tweets_pb.Tweet
    carol_tweet: tweets_pb.Tweet
    bob_reply: tweets_pb.Tweet
    alice_reply: tweets_pb.Tweet
    bob_retweet_of_carol: tweets_pb.Tweet


@pytest.fixture
def scene(stubs: Stubs) -> Scene:
    """Alice and Bob follow each other and Carol, post, mention, reply and like; all of it fanned
    out into their home timelines before anyone blocks."""
    alice, bob, carol = stubs.sign_up("alice"), stubs.sign_up("bob"), stubs.sign_up("carol")
    for follower, followee in ((alice, bob), (bob, alice), (alice, carol), (bob, carol), (carol, bob)):
        stubs.follow(follower, followee)
    tag = word()
    alice_tweet = stubs.post(alice, f"alice says #{tag}")
    bob_tweet = stubs.post(bob, f"bob says #{tag}")
    bob_mention = stubs.post(bob, f"hey @{alice.user.handle} #{tag}")
    carol_tweet = stubs.post(carol, f"carol asks #{tag}")
    bob_reply = stubs.post(bob, f"bob answers #{tag}", reply_to_tweet_id=carol_tweet.tweet_id)
    alice_reply = stubs.post(alice, f"alice answers #{tag}", reply_to_tweet_id=carol_tweet.tweet_id)
    bob_retweet = stubs.tweets.Retweet(
        tweets_pb.RetweetRequest(tweet_id=carol_tweet.tweet_id), metadata=bob.auth, timeout=10
    ).tweet
    stubs.tweets.LikeTweet(tweets_pb.LikeTweetRequest(tweet_id=alice_tweet.tweet_id), metadata=bob.auth)
    stubs.tweets.LikeTweet(tweets_pb.LikeTweetRequest(tweet_id=carol_tweet.tweet_id), metadata=bob.auth)
    stubs.tweets.LikeTweet(tweets_pb.LikeTweetRequest(tweet_id=carol_tweet.tweet_id), metadata=alice.auth)
    # Fanned out both ways before the block.
    eventually(lambda: {bob_tweet.tweet_id, bob_mention.tweet_id} <= set(stubs.home_ids(alice)))
    eventually(lambda: alice_tweet.tweet_id in stubs.home_ids(bob))
    return Scene(
        alice,
        bob,
        carol,
        tag,
        alice_tweet,
        bob_tweet,
        bob_mention,
        carol_tweet,
        bob_reply,
        alice_reply,
        bob_retweet,
    )


def test_a_block_ends_the_follows_both_ways_and_forbids_every_interaction(stubs: Stubs, scene: Scene) -> None:
    alice, bob = scene.alice, scene.bob
    blocked = relate(stubs, "block", alice, bob)
    assert blocked.followers_count == 1 and blocked.following_count == 1  # carol only, both ways
    following = stubs.users.ListFollowing(pb.ListFollowingRequest(user_id=alice.user_id), timeout=10).users
    assert [u.user_id for u in following] == [scene.carol.user_id]
    assert relate(stubs, "block", alice, bob).user_id == bob.user_id  # blocking twice changes nothing

    before = stubs.snapshot(alice, bob)
    is_blocked = functools.partial(refused, code=grpc.StatusCode.PERMISSION_DENIED, reason="BLOCKED")
    blocks = functools.partial(refused, code=grpc.StatusCode.FAILED_PRECONDITION, reason="YOU_BLOCK")
    is_blocked(lambda: stubs.follow(bob, alice))
    blocks(lambda: stubs.follow(alice, bob))
    is_blocked(lambda: stubs.post(bob, "let me in", reply_to_tweet_id=scene.alice_tweet.tweet_id))
    blocks(lambda: stubs.post(alice, "no", reply_to_tweet_id=scene.bob_tweet.tweet_id))
    like = tweets_pb.LikeTweetRequest(tweet_id=scene.alice_tweet.tweet_id)
    is_blocked(lambda: stubs.tweets.LikeTweet(like, metadata=bob.auth))
    retweet = tweets_pb.RetweetRequest(tweet_id=scene.alice_tweet.tweet_id)
    is_blocked(lambda: stubs.tweets.Retweet(retweet, metadata=bob.auth))
    # Through a third party's tweet, alice may still like it although bob retweeted it.
    stubs.tweets.LikeTweet(
        tweets_pb.LikeTweetRequest(tweet_id=scene.bob_retweet_of_carol.tweet_id), metadata=alice.auth
    )
    assert stubs.snapshot(alice, bob) == before
    # Undoing what was done before the block stays possible.
    stubs.tweets.UnlikeTweet(
        tweets_pb.UnlikeTweetRequest(tweet_id=scene.alice_tweet.tweet_id), metadata=bob.auth
    )


def test_neither_sees_the_other_on_any_surface_once_blocked(stubs: Stubs, scene: Scene) -> None:
    alice, bob, carol = scene.alice, scene.bob, scene.carol
    relate(stubs, "block", alice, bob)
    bob_tweets = {scene.bob_tweet.tweet_id, scene.bob_mention.tweet_id, scene.bob_reply.tweet_id}
    bob_tweets.add(scene.bob_retweet_of_carol.tweet_id)
    alice_tweets = {scene.alice_tweet.tweet_id, scene.alice_reply.tweet_id}

    # Home timelines: what was fanned out before the block is gone too.
    assert not bob_tweets & set(stubs.home_ids(alice))
    assert not alice_tweets & set(stubs.home_ids(bob))
    assert scene.carol_tweet.tweet_id in stubs.home_ids(alice)

    # Neither reads the other's tweets, not even one by one; others (and anyone signed out) do.
    def get(viewer: Account) -> tweets_pb.GetTweetResponse:
        request = tweets_pb.GetTweetRequest(tweet_id=scene.alice_tweet.tweet_id)
        return stubs.tweets.GetTweet(request, metadata=viewer.auth, timeout=10)

    def user_tweets(viewer: Account | None, user: Account) -> set[str]:
        request = tweets_pb.ListUserTweetsRequest(user_id=user.user_id)
        return ids(stubs.tweets.ListUserTweets(request, metadata=viewer.auth if viewer else None).tweets)

    refused(lambda: get(bob), grpc.StatusCode.PERMISSION_DENIED, "BLOCKED")
    assert get(carol).tweet.tweet_id == scene.alice_tweet.tweet_id
    refused(lambda: user_tweets(bob, alice), grpc.StatusCode.PERMISSION_DENIED, "BLOCKED")
    refused(lambda: user_tweets(alice, bob), grpc.StatusCode.FAILED_PRECONDITION, "YOU_BLOCK")
    assert scene.bob_retweet_of_carol.tweet_id in user_tweets(carol, bob)
    assert scene.alice_tweet.tweet_id in user_tweets(None, alice)

    # Replies, mentions, hashtags, search and the global timeline, as each signed-in viewer.
    def replies(viewer: Account) -> set[str]:
        request = tweets_pb.ListRepliesRequest(tweet_id=scene.carol_tweet.tweet_id)
        return ids(stubs.tweets.ListReplies(request, metadata=viewer.auth, timeout=10).tweets)

    assert replies(alice) == {scene.alice_reply.tweet_id}
    assert replies(bob) == {scene.bob_reply.tweet_id}
    assert replies(carol) == {scene.alice_reply.tweet_id, scene.bob_reply.tweet_id}

    def mentions(viewer: Account | None) -> set[str]:
        request = tweets_pb.ListMentionsRequest(user_id=alice.user_id)
        return ids(stubs.tweets.ListMentions(request, metadata=viewer.auth if viewer else None).tweets)

    assert scene.bob_mention.tweet_id not in mentions(alice)
    assert scene.bob_mention.tweet_id in mentions(None)
    for viewer, hidden in ((alice, bob_tweets), (bob, alice_tweets)):
        tagged = stubs.tweets.ListHashtagTweets(
            tweets_pb.ListHashtagTweetsRequest(tag=scene.tag, page_size=100), metadata=viewer.auth
        )
        found = stubs.tweets.SearchTweets(
            tweets_pb.SearchTweetsRequest(query=f"#{scene.tag}", page_size=100), metadata=viewer.auth
        )
        public = stubs.tweets.GetGlobalTimeline(
            tweets_pb.GetGlobalTimelineRequest(page_size=100), metadata=viewer.auth
        )
        for listed in (tagged, found, public):
            assert not hidden & ids(listed.tweets)
        assert scene.carol_tweet.tweet_id in ids(tagged.tweets) & ids(found.tweets)
    everyone = stubs.tweets.SearchTweets(tweets_pb.SearchTweetsRequest(query=f"#{scene.tag}", page_size=100))
    assert bob_tweets - {scene.bob_retweet_of_carol.tweet_id} <= ids(everyone.tweets)

    # Likes: each is left out of the other's view of who liked carol's tweet; bob's like of
    # alice's tweet (from before the block) is no longer shown to him.
    def likers(viewer: Account) -> set[str]:
        request = tweets_pb.ListLikingUsersRequest(tweet_id=scene.carol_tweet.tweet_id)
        return {u.user_id for u in stubs.tweets.ListLikingUsers(request, metadata=viewer.auth).users}

    assert likers(alice) == {alice.user_id} and likers(bob) == {bob.user_id}
    assert likers(carol) == {alice.user_id, bob.user_id}
    liked = stubs.tweets.ListLikedTweets(
        tweets_pb.ListLikedTweetsRequest(user_id=bob.user_id), metadata=bob.auth, timeout=10
    )
    assert scene.alice_tweet.tweet_id not in ids(liked.tweets)

    # Follows and user search.
    followers = stubs.users.ListFollowers(
        pb.ListFollowersRequest(user_id=carol.user_id), metadata=alice.auth, timeout=10
    )
    assert [u.user_id for u in followers.users] == [alice.user_id]

    def search(viewer: Account) -> list[str]:
        request = pb.SearchUsersRequest(query=bob.user.handle)
        return [u.user_id for u in stubs.users.SearchUsers(request, metadata=viewer.auth, timeout=10).users]

    assert search(alice) == [] and search(carol) == [bob.user_id]


def test_the_live_streams_of_both_sides_drop_the_other(stubs: Stubs, scene: Scene) -> None:
    alice, bob, carol = scene.alice, scene.bob, scene.carol
    alice_home, bob_home = LiveStream(stubs.timeline, alice), LiveStream(stubs.timeline, bob)
    alice_global = LiveStream(stubs.timeline, None)
    try:
        for stream in (alice_home, bob_home, alice_global):
            stream.wait_open()
        relate(stubs, "block", alice, bob)
        stubs.follow(carol, alice)
        # Bob mentions alice (a mention reaches her timeline whoever writes it), then carol posts.
        hidden = stubs.post(bob, f"still here @{alice.user.handle}")
        own = stubs.post(alice, "alice, after the block")
        shown = stubs.post(carol, "carol, after the block")
        seen_by_alice = {t.tweet_id for t in alice_home.tweets_until_quiet(3)}
        assert {own.tweet_id, shown.tweet_id} <= seen_by_alice
        assert hidden.tweet_id not in seen_by_alice
        seen_by_bob = {t.tweet_id for t in bob_home.tweets_until_quiet(2)}
        assert {shown.tweet_id, hidden.tweet_id} <= seen_by_bob
    finally:
        for stream in (alice_home, bob_home, alice_global):
            stream.close()
    # Resuming from before the block replays nothing of the other side either.
    resumed = LiveStream(stubs.timeline, alice, since=scene.alice_tweet.tweet_id)
    try:
        replayed = {t.tweet_id for t in resumed.tweets_until_quiet(2)}
    finally:
        resumed.close()
    assert scene.carol_tweet.tweet_id in replayed
    assert not replayed & {scene.bob_tweet.tweet_id, scene.bob_mention.tweet_id, hidden.tweet_id}


def test_the_global_stream_of_a_signed_in_viewer_drops_who_blocks_it(stubs: Stubs, scene: Scene) -> None:
    alice, bob = scene.alice, scene.bob
    relate(stubs, "block", alice, bob)
    watching = LiveStream(stubs.timeline, None, viewer_token=bob.token)
    try:
        watching.wait_open()
        hidden = stubs.post(alice, f"alice in public {word()}")
        shown = stubs.post(scene.carol, f"carol in public {word()}")
        arrived = [t.tweet_id for t in watching.tweets_until_quiet(3)]
    finally:
        watching.close()
    assert shown.tweet_id in arrived and hidden.tweet_id not in arrived


def test_a_mute_hides_the_muted_from_the_home_timeline_and_stream_only(stubs: Stubs) -> None:
    dana, erin, fred = stubs.sign_up("dana"), stubs.sign_up("erin"), stubs.sign_up("fred")
    stubs.follow(dana, erin)
    stubs.follow(dana, fred)
    before = stubs.post(erin, f"erin before the mute {word()}")
    eventually(lambda: before.tweet_id in stubs.home_ids(dana))
    stream = LiveStream(stubs.timeline, dana)
    try:
        stream.wait_open()
        relate(stubs, "mute", dana, erin)
        during = stubs.post(erin, "erin while muted")
        retweet = stubs.tweets.Retweet(tweets_pb.RetweetRequest(tweet_id=during.tweet_id), metadata=fred.auth)
        shown = stubs.post(fred, "fred is not muted")
        arrived = [t.tweet_id for t in stream.tweets_until_quiet(3)]
    finally:
        stream.close()
    assert shown.tweet_id in arrived
    assert not {during.tweet_id, retweet.tweet.tweet_id} & set(arrived)
    assert not {before.tweet_id, during.tweet_id, retweet.tweet.tweet_id} & set(stubs.home_ids(dana))
    # Silently: the follow stays, erin is not told and may still act on dana's tweets; search,
    # erin's own timeline and direct reads still show her to dana.
    assert [
        u.user_id for u in stubs.users.ListFollowing(pb.ListFollowingRequest(user_id=dana.user_id)).users
    ] == [
        fred.user_id,
        erin.user_id,
    ]
    dana_tweet = stubs.post(dana, "dana posts")
    stubs.tweets.LikeTweet(tweets_pb.LikeTweetRequest(tweet_id=dana_tweet.tweet_id), metadata=erin.auth)
    mine = stubs.tweets.ListUserTweets(
        tweets_pb.ListUserTweetsRequest(user_id=erin.user_id), metadata=dana.auth
    )
    assert during.tweet_id in ids(mine.tweets)
    mutes = stubs.users.ListMutes(pb.ListMutesRequest(), metadata=dana.auth, timeout=10).users
    assert [u.user_id for u in mutes] == [erin.user_id]
    assert stubs.users.ListMutes(pb.ListMutesRequest(), metadata=erin.auth).users == []

    relate(stubs, "unmute", dana, erin)
    assert {before.tweet_id, during.tweet_id} <= set(stubs.home_ids(dana))
    assert stubs.users.ListMutes(pb.ListMutesRequest(), metadata=dana.auth).users == []


def test_unblocking_shows_again_and_lets_them_follow_again(stubs: Stubs, scene: Scene) -> None:
    alice, bob = scene.alice, scene.bob
    relate(stubs, "block", alice, bob)
    blocks = stubs.users.ListBlocks(pb.ListBlocksRequest(), metadata=alice.auth, timeout=10).users
    assert [u.user_id for u in blocks] == [bob.user_id]
    assert stubs.users.ListBlocks(pb.ListBlocksRequest(), metadata=bob.auth).users == []
    relate(stubs, "unblock", alice, bob)
    assert stubs.users.ListBlocks(pb.ListBlocksRequest(), metadata=alice.auth).users == []
    stubs.follow(bob, alice)  # allowed again; the follows the block ended are not restored by itself
    assert scene.bob_mention.tweet_id in ids(
        stubs.tweets.ListMentions(
            tweets_pb.ListMentionsRequest(user_id=alice.user_id), metadata=alice.auth
        ).tweets
    )
    again = stubs.post(bob, f"hello again @{alice.user.handle}")
    eventually(lambda: again.tweet_id in stubs.home_ids(alice))


def test_what_was_fanned_out_before_the_block_is_hidden_on_read(stubs: Stubs, mesh: Mesh) -> None:
    """A mention reaches a home timeline whoever wrote it, and a block (no follow to end here)
    takes nothing out of Redis: the read leaves it out."""
    ivy, jack = stubs.sign_up("ivy"), stubs.sign_up("jack")
    stubs.home_ids(ivy)  # her timeline exists, so fan-out writes into it
    mention = stubs.post(jack, f"hi @{ivy.user.handle}")
    eventually(lambda: mention.tweet_id in stubs.home_ids(ivy))
    relate(stubs, "block", ivy, jack)
    assert mention.tweet_id in (held_in_redis(redis_client(mesh.redis_url), ivy.user_id) or [])
    assert mention.tweet_id not in stubs.home_ids(ivy)
    stream = LiveStream(stubs.timeline, ivy, since=str(int(mention.tweet_id) - 1))
    try:
        assert mention.tweet_id not in {t.tweet_id for t in stream.tweets_until_quiet(2)}
    finally:
        stream.close()


def test_a_block_holds_through_a_redis_wipe_and_applies_at_once(
    stubs: Stubs, mesh: Mesh, scene: Scene
) -> None:
    alice, bob = scene.alice, scene.bob
    # Each viewer's relations are cached from their first signed-in read...
    assert scene.bob_tweet.tweet_id in stubs.home_ids(alice)
    relate(stubs, "block", alice, bob)  # ...and forgotten at the block: no stale read after it
    assert scene.bob_tweet.tweet_id not in stubs.home_ids(alice)
    redis_client(mesh.redis_url).flushall()
    assert not {scene.bob_tweet.tweet_id, scene.bob_mention.tweet_id} & set(stubs.home_ids(alice))
    refused(
        lambda: stubs.tweets.GetTweet(
            tweets_pb.GetTweetRequest(tweet_id=scene.alice_tweet.tweet_id), metadata=bob.auth
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "BLOCKED",
    )


def test_blocks_and_mutes_through_envoy(stubs: Stubs, mesh: Mesh) -> None:
    port = mesh.ports.envoy
    gus, hal = stubs.sign_up("gus"), stubs.sign_up("hal")
    assert http_call(port, "POST", f"/v1/users/{hal.user_id}:block", {}, token=gus.token).status == 200
    assert http_call(port, "POST", f"/v1/users/{hal.user_id}:mute", {}, token=gus.token).status == 200
    for path in ("/v1/blocks", "/v1/mutes"):
        listed = http_call(port, "GET", path, token=gus.token).json()
        assert [u["user_id"] for u in listed["users"]] == [hal.user_id]
        assert http_call(port, "GET", path).status == 401
    followed = http_call(port, "POST", f"/v1/users/{gus.user_id}:follow", {}, token=hal.token)
    assert followed.status == 403 and followed.json()["details"][0]["reason"] == "BLOCKED"
    myself = http_call(port, "POST", f"/v1/users/{gus.user_id}:block", {}, token=gus.token)
    assert myself.status == 400
    unknown = http_call(port, "POST", "/v1/users/1999999999999999999:mute", {}, token=gus.token)
    assert unknown.status == 404
    assert http_call(port, "POST", f"/v1/users/{hal.user_id}:unblock", {}, token=gus.token).status == 200
    assert http_call(port, "POST", f"/v1/users/{hal.user_id}:unmute", {}, token=gus.token).status == 200


def test_quotes_conversations_and_bookmarks_leave_the_other_side_out(stubs: Stubs, scene: Scene) -> None:
    alice, bob, carol = scene.alice, scene.bob, scene.carol
    quote = stubs.tweets.CreateTweet(
        tweets_pb.CreateTweetRequest(text="bob quotes carol", quote_tweet_id=scene.carol_tweet.tweet_id),
        metadata=bob.auth,
        timeout=10,
    ).tweet
    for tweet in (scene.bob_tweet, scene.carol_tweet):
        stubs.tweets.BookmarkTweet(
            tweets_pb.BookmarkTweetRequest(tweet_id=tweet.tweet_id), metadata=alice.auth, timeout=10
        )
    relate(stubs, "block", alice, bob)

    def quotes(viewer: Account) -> set[str]:
        request = tweets_pb.ListQuotesRequest(tweet_id=scene.carol_tweet.tweet_id)
        return ids(stubs.tweets.ListQuotes(request, metadata=viewer.auth, timeout=10).tweets)

    assert quotes(alice) == set() and quotes(carol) == {quote.tweet_id}
    # In the conversation under carol's tweet, bob's reply is a placeholder for alice only.
    request = tweets_pb.GetConversationRequest(tweet_id=scene.carol_tweet.tweet_id)
    for viewer, hidden in ((alice, True), (carol, False)):
        replies = stubs.tweets.GetConversation(request, metadata=viewer.auth, timeout=10).replies
        (entry,) = [r for r in replies if r.tweet_id == scene.bob_reply.tweet_id]
        assert entry.deleted is hidden and entry.HasField("tweet") is not hidden
    bookmarks = stubs.tweets.ListBookmarks(tweets_pb.ListBookmarksRequest(), metadata=alice.auth, timeout=10)
    assert ids(bookmarks.tweets) == {scene.carol_tweet.tweet_id}
    # Neither may quote the other.
    refused(
        lambda: stubs.tweets.CreateTweet(
            tweets_pb.CreateTweetRequest(text="no", quote_tweet_id=scene.alice_tweet.tweet_id),
            metadata=bob.auth,
            timeout=10,
        ),
        grpc.StatusCode.PERMISSION_DENIED,
        "BLOCKED",
    )

"""The social API through generated stubs: delete, replies, retweets, likes, mentions, hashtags,
search, profiles and the global timeline, with their effects on home timelines and streams."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from devstack.mesh import Mesh
from tests.helpers import (
    ON_BOTH_REDIS,
    Account,
    LiveStream,
    Stubs,
    eventually,
    held_in_redis,
    redis_client,
    rpc_error,
)
from tweetmesh.timeline.v1 import timeline_service_pb2 as timeline_pb
from tweetmesh.tweets.v1 import tweets_service_pb2 as pb
from tweetmesh.users.v1 import users_service_pb2 as users_pb

UNKNOWN_ID = "1999999999999999999"

# The story runs on one Redis and on a Redis Cluster.
pytestmark = ON_BOTH_REDIS


def word() -> str:
    """A word no other test uses, so that searches and hashtags see only this test's tweets."""
    return "w" + secrets.token_hex(5)


def all_pages(call: Callable[[str], Any], field: str = "tweets") -> list[Any]:
    """Every item of a paginated list, following next_page_token to the end."""
    items: list[Any] = []
    token = ""
    while True:
        page = call(token)
        items.extend(getattr(page, field))
        token = page.next_page_token
        if not token:
            return items


def ids(tweets: list[pb.Tweet]) -> list[str]:
    return [t.tweet_id for t in tweets]


def tweet(stubs: Stubs, tweet_id: str) -> pb.Tweet:
    return stubs.tweets.GetTweet(pb.GetTweetRequest(tweet_id=tweet_id), timeout=10).tweet


def test_replies_form_a_paginated_thread_and_count(stubs: Stubs) -> None:
    author, replier = stubs.sign_up("op"), stubs.sign_up("replier")
    root = stubs.post(author, "what do you think?")
    replies = [stubs.post(replier, f"reply {i}", reply_to_tweet_id=root.tweet_id) for i in range(5)]
    assert replies[0].reply_to_author_id == author.user_id
    thread = all_pages(
        lambda token: stubs.tweets.ListReplies(
            pb.ListRepliesRequest(tweet_id=root.tweet_id, page_size=2, page_token=token), timeout=10
        )
    )
    assert ids(thread) == ids(replies)  # oldest first
    assert tweet(stubs, root.tweet_id).reply_count == 5


def test_delete_is_author_only_and_keeps_replies_marked(stubs: Stubs) -> None:
    author, other = stubs.sign_up("deleter"), stubs.sign_up("other")
    root = stubs.post(author, "soon gone")
    reply = stubs.post(other, "a reply", reply_to_tweet_id=root.tweet_id)

    denied = rpc_error(
        lambda: stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=root.tweet_id), metadata=other.auth)
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert tweet(stubs, root.tweet_id).text == "soon gone"

    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=root.tweet_id), metadata=author.auth)
    gone = rpc_error(lambda: tweet(stubs, root.tweet_id))
    assert gone.code() == grpc.StatusCode.NOT_FOUND
    again = rpc_error(
        lambda: stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=root.tweet_id), metadata=author.auth)
    )
    assert again.code() == grpc.StatusCode.NOT_FOUND
    kept = tweet(stubs, reply.tweet_id)
    assert kept.reply_to_tweet_id == root.tweet_id and kept.reply_to_deleted
    thread = stubs.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=root.tweet_id), timeout=10)
    assert ids(list(thread.tweets)) == [reply.tweet_id]
    assert stubs.user(author).tweets_count == 0
    replying = rpc_error(lambda: stubs.post(other, "too late", reply_to_tweet_id=root.tweet_id))
    assert replying.code() == grpc.StatusCode.NOT_FOUND


def test_delete_reaches_every_place_including_an_open_stream(stubs: Stubs, mesh: Mesh) -> None:
    author, follower, mentioned = stubs.sign_up("gone"), stubs.sign_up("fol"), stubs.sign_up("men")
    stubs.follow(follower, author)
    stubs.home(follower)
    stubs.home(mentioned)
    tag = word()
    home_stream = LiveStream(stubs.timeline, follower)
    global_stream = LiveStream(stubs.timeline, None)
    try:
        home_stream.next_event(timeout=10)  # open (its first heartbeat) before the post, as a
        global_stream.next_event(timeout=10)  # stream hears only what comes after it opened
        doomed = stubs.post(author, f"{tag} #{tag} hi @{mentioned.user.handle}")
        assert home_stream.next_tweet(10).tweet_id == doomed.tweet_id
        assert eventually(lambda: global_stream.next_tweet(10)).tweet_id == doomed.tweet_id
        eventually(lambda: doomed.tweet_id in stubs.home_ids(follower))
        eventually(lambda: doomed.tweet_id in stubs.home_ids(mentioned))

        stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=doomed.tweet_id), metadata=author.auth)
        assert home_stream.next_deletion(10) == doomed.tweet_id
        assert global_stream.next_deletion(10) == doomed.tweet_id
    finally:
        home_stream.close()
        global_stream.close()

    assert rpc_error(lambda: tweet(stubs, doomed.tweet_id)).code() == grpc.StatusCode.NOT_FOUND
    user_tweets = stubs.tweets.ListUserTweets(pb.ListUserTweetsRequest(user_id=author.user_id), timeout=10)
    assert doomed.tweet_id not in ids(list(user_tweets.tweets))
    r = redis_client(mesh.redis_url)
    for viewer in (author, follower, mentioned):
        eventually(lambda viewer=viewer: doomed.tweet_id not in stubs.home_ids(viewer))  # type: ignore[misc]
        # Out of the Redis timeline itself, not only filtered out when read.
        eventually(lambda v=viewer: doomed.tweet_id not in (held_in_redis(r, v.user_id) or []))  # type: ignore[misc]
    assert search(stubs, tag) == []
    tagged = stubs.tweets.ListHashtagTweets(pb.ListHashtagTweetsRequest(tag=tag), timeout=10)
    assert list(tagged.tweets) == []
    mentions = stubs.tweets.ListMentions(pb.ListMentionsRequest(user_id=mentioned.user_id), timeout=10)
    assert list(mentions.tweets) == []
    assert doomed.tweet_id not in ids(global_timeline(stubs, 100))


def search(stubs: Stubs, query: str, page_size: int = 20) -> list[str]:
    return ids(
        all_pages(
            lambda token: stubs.tweets.SearchTweets(
                pb.SearchTweetsRequest(query=query, page_size=page_size, page_token=token), timeout=10
            )
        )
    )


def global_timeline(stubs: Stubs, page_size: int) -> list[pb.Tweet]:
    page = stubs.tweets.GetGlobalTimeline(pb.GetGlobalTimelineRequest(page_size=page_size), timeout=10)
    return list(page.tweets)


def test_search_finds_by_word_phrase_and_tag_ranked_and_paginated(stubs: Stubs) -> None:
    author = stubs.sign_up("searcher")
    w, tag = word(), word()
    exact = stubs.post(author, f"the quick brown fox {w} jumps #{tag}")
    loose = stubs.post(author, f"brown is a colour, quick is a speed, {w}")
    twice = stubs.post(author, f"{w} {w} {w} everywhere")

    assert set(search(stubs, w, page_size=1)) == {exact.tweet_id, loose.tweet_id, twice.tweet_id}
    assert search(stubs, w)[0] == twice.tweet_id  # the best match first
    assert search(stubs, f'"quick brown fox" {w}') == [exact.tweet_id]
    assert search(stubs, f"#{tag}") == [exact.tweet_id]
    assert search(stubs, f"{w} -fox") == [twice.tweet_id, loose.tweet_id]

    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=exact.tweet_id), metadata=author.auth)
    assert search(stubs, f"#{tag}") == []


def test_search_and_lists_refuse_bad_queries_and_foreign_page_tokens(stubs: Stubs) -> None:
    author = stubs.sign_up("tokens")
    w = word()
    for i in range(3):
        stubs.post(author, f"{w} number {i}")
    first = stubs.tweets.SearchTweets(pb.SearchTweetsRequest(query=w, page_size=1), timeout=10)
    assert first.next_page_token
    for request in (
        pb.SearchTweetsRequest(query="", page_size=1),
        pb.SearchTweetsRequest(query="x" * 201),
        pb.SearchTweetsRequest(query=word(), page_token=first.next_page_token),
        pb.SearchTweetsRequest(query=w, page_size=-1),
    ):
        error = rpc_error(lambda request=request: stubs.tweets.SearchTweets(request, timeout=10))  # type: ignore[misc]
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, request
    # Only words too common to index: a valid query that matches nothing.
    nothing = stubs.tweets.SearchTweets(pb.SearchTweetsRequest(query="the and of"), timeout=10)
    assert (list(nothing.tweets), nothing.next_page_token) == ([], "")
    reused = rpc_error(
        lambda: stubs.tweets.ListUserTweets(
            pb.ListUserTweetsRequest(user_id=author.user_id, page_token=first.next_page_token), timeout=10
        )
    )
    assert reused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "other arguments" in (reused.details() or "")


def test_hashtags_are_case_insensitive_and_paginated(stubs: Stubs) -> None:
    author = stubs.sign_up("tagger")
    tag = word()
    posted = [stubs.post(author, f"#{tag.upper()} one"), stubs.post(author, f"two #{tag}")]
    assert list(posted[0].hashtags) == [tag]
    listed = all_pages(
        lambda token: stubs.tweets.ListHashtagTweets(
            pb.ListHashtagTweetsRequest(tag=f"#{tag}", page_size=1, page_token=token), timeout=10
        )
    )
    assert ids(listed) == ids(posted[::-1])
    bad = rpc_error(lambda: stubs.tweets.ListHashtagTweets(pb.ListHashtagTweetsRequest(tag="no spaces")))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_retweets_show_the_original_count_and_are_idempotent(stubs: Stubs) -> None:
    author, fan, reader = stubs.sign_up("orig"), stubs.sign_up("rter"), stubs.sign_up("reader")
    stubs.follow(reader, fan)
    stubs.home(reader)
    original = stubs.post(author, "worth sharing")

    first = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=original.tweet_id), metadata=fan.auth).tweet
    again = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=original.tweet_id), metadata=fan.auth).tweet
    via_retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=first.tweet_id), metadata=fan.auth).tweet
    assert first.tweet_id == again.tweet_id == via_retweet.tweet_id
    assert first.retweet_of_tweet_id == original.tweet_id
    assert first.retweeted_tweet.text == "worth sharing"
    assert first.retweeted_tweet.author.user_id == author.user_id
    assert tweet(stubs, original.tweet_id).retweet_count == 1

    home = eventually(lambda: [t for t in stubs.home(reader).tweets if t.tweet_id == first.tweet_id])
    assert home[0].retweeted_tweet.tweet_id == original.tweet_id

    undone = stubs.tweets.Unretweet(pb.UnretweetRequest(tweet_id=original.tweet_id), metadata=fan.auth).tweet
    assert undone.tweet_id == original.tweet_id and undone.retweet_count == 0
    stubs.tweets.Unretweet(pb.UnretweetRequest(tweet_id=original.tweet_id), metadata=fan.auth)
    assert tweet(stubs, original.tweet_id).retweet_count == 0
    eventually(lambda: first.tweet_id not in stubs.home_ids(reader))


def test_deleting_a_retweeted_tweet_deletes_it_and_its_retweets(stubs: Stubs) -> None:
    author, fan = stubs.sign_up("rtdel"), stubs.sign_up("rtdfan")
    fans_reader, authors_reader = stubs.sign_up("rtdrdr"), stubs.sign_up("rtdrdr")
    stubs.follow(fans_reader, fan)
    stubs.follow(authors_reader, author)
    stubs.home(fans_reader), stubs.home(authors_reader)
    original = stubs.post(author, "retweeted, then deleted")
    retweet = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=original.tweet_id), metadata=fan.auth).tweet
    eventually(lambda: retweet.tweet_id in stubs.home_ids(fans_reader))
    eventually(lambda: original.tweet_id in stubs.home_ids(authors_reader))

    stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=original.tweet_id), metadata=author.auth)
    for gone in (original.tweet_id, retweet.tweet_id):
        assert rpc_error(functools.partial(tweet, stubs, gone)).code() == grpc.StatusCode.NOT_FOUND
    assert stubs.user(author).tweets_count == 0 and stubs.user(fan).tweets_count == 0
    assert not stubs.tweets.ListUserTweets(pb.ListUserTweetsRequest(user_id=fan.user_id)).tweets
    eventually(lambda: retweet.tweet_id not in stubs.home_ids(fans_reader))
    eventually(lambda: original.tweet_id not in stubs.home_ids(authors_reader))


def test_the_same_original_is_not_shown_twice_within_40_entries(stubs: Stubs) -> None:
    author, a, b, reader = (stubs.sign_up(p) for p in ("src", "rta", "rtb", "rdr"))
    for followee in (author, a, b):
        stubs.follow(reader, followee)
    stubs.home(reader)
    original = stubs.post(author, "popular")
    first = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=original.tweet_id), metadata=a.auth).tweet
    second = stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=original.tweet_id), metadata=b.auth).tweet
    eventually(lambda: stubs.home_ids(reader)[:1] == [original.tweet_id])
    shown = stubs.home_ids(reader)
    assert first.tweet_id not in shown and second.tweet_id not in shown


def test_fifty_concurrent_likes_count_exactly_fifty_and_unlikes_return_it(stubs: Stubs) -> None:
    author = stubs.sign_up("liked")
    target = stubs.post(author, "like me")
    fans = [stubs.sign_up("fan") for _ in range(50)]

    def like(fan: Account) -> None:
        for _ in range(2):  # the second like of each is harmless
            stubs.tweets.LikeTweet(
                pb.LikeTweetRequest(tweet_id=target.tweet_id), metadata=fan.auth, timeout=20
            )

    def unlike(fan: Account) -> None:
        stubs.tweets.UnlikeTweet(
            pb.UnlikeTweetRequest(tweet_id=target.tweet_id), metadata=fan.auth, timeout=20
        )

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(like, fans))
    assert tweet(stubs, target.tweet_id).like_count == 50
    likers = all_pages(
        lambda token: stubs.tweets.ListLikingUsers(
            pb.ListLikingUsersRequest(tweet_id=target.tweet_id, page_size=7, page_token=token), timeout=10
        ),
        "users",
    )
    assert sorted(u.user_id for u in likers) == sorted(f.user_id for f in fans)
    liked = stubs.tweets.ListLikedTweets(pb.ListLikedTweetsRequest(user_id=fans[0].user_id), timeout=10)
    assert ids(list(liked.tweets)) == [target.tweet_id]

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(unlike, fans))
    assert tweet(stubs, target.tweet_id).like_count == 0
    unknown = rpc_error(
        lambda: stubs.tweets.LikeTweet(pb.LikeTweetRequest(tweet_id=UNKNOWN_ID), metadata=author.auth)
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND


def test_a_mention_reaches_a_non_follower_home_and_mentions_list(stubs: Stubs) -> None:
    author, target = stubs.sign_up("caller"), stubs.sign_up("target")
    stubs.home(target)
    posted = stubs.post(author, f"hey @{target.user.handle.upper()} and @nobody_{secrets.token_hex(3)}")
    assert [m.user_id for m in posted.mentions] == [target.user_id]
    eventually(lambda: posted.tweet_id in stubs.home_ids(target))
    listed = stubs.tweets.ListMentions(pb.ListMentionsRequest(user_id=target.user_id), timeout=10)
    assert ids(list(listed.tweets)) == [posted.tweet_id]


def test_replies_reach_home_only_when_both_sides_are_followed_or_it_replies_to_you(
    stubs: Stubs, mesh: Mesh
) -> None:
    alice, bob, carol, viewer = (stubs.sign_up(p) for p in ("alice", "bob", "carol", "viewer"))
    stubs.follow(viewer, alice)
    stubs.follow(viewer, bob)  # the viewer follows alice and bob, not carol
    stubs.home(viewer)
    to_bob = stubs.post(bob, "bob says")
    to_carol = stubs.post(carol, "carol says")
    to_viewer = stubs.post(viewer, "viewer says")
    both = stubs.post(alice, "to bob", reply_to_tweet_id=to_bob.tweet_id)
    outsider = stubs.post(alice, "to carol", reply_to_tweet_id=to_carol.tweet_id)
    mine = stubs.post(carol, "to viewer", reply_to_tweet_id=to_viewer.tweet_id)
    marker = stubs.post(alice, "after the replies")

    eventually(lambda: marker.tweet_id in stubs.home_ids(viewer))
    eventually(lambda: mine.tweet_id in stubs.home_ids(viewer))
    home = stubs.home_ids(viewer)
    assert both.tweet_id in home and outsider.tweet_id not in home
    # A rebuild from PostgreSQL applies the same rule.
    redis_client(mesh.redis_url).delete(f"home:{viewer.user_id}")
    assert stubs.home_ids(viewer) == home


def test_profiles_update_only_by_their_owner(stubs: Stubs) -> None:
    owner, other = stubs.sign_up("owner"), stubs.sign_up("other")
    updated = stubs.users.UpdateUser(
        users_pb.UpdateUserRequest(user_id=owner.user_id, display_name="New Name", bio="Hello there"),
        metadata=owner.auth,
    ).user
    assert (updated.display_name, updated.bio) == ("New Name", "Hello there")
    only_bio = stubs.users.UpdateUser(
        users_pb.UpdateUserRequest(user_id=owner.user_id, bio=""), metadata=owner.auth
    ).user
    assert (only_bio.display_name, only_bio.bio) == ("New Name", "")
    denied = rpc_error(
        lambda: stubs.users.UpdateUser(
            users_pb.UpdateUserRequest(user_id=owner.user_id, bio="pwned"), metadata=other.auth
        )
    )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    too_long = rpc_error(
        lambda: stubs.users.UpdateUser(
            users_pb.UpdateUserRequest(user_id=owner.user_id, bio="x" * 161), metadata=owner.auth
        )
    )
    assert too_long.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stubs.user(owner).bio == ""


def test_user_search_by_handle_then_display_name_prefix(stubs: Stubs) -> None:
    stem = "s" + secrets.token_hex(3)
    by_handle = [stubs.sign_up(f"{stem}_{i}") for i in range(3)]
    by_name = stubs.sign_up("named")
    stubs.users.UpdateUser(
        users_pb.UpdateUserRequest(user_id=by_name.user_id, display_name=f"{stem.upper()} Person"),
        metadata=by_name.auth,
    )
    found = all_pages(
        lambda token: stubs.users.SearchUsers(
            users_pb.SearchUsersRequest(query=f"@{stem.upper()}", page_size=2, page_token=token), timeout=10
        ),
        "users",
    )
    handles = sorted(a.user.handle.lower() for a in by_handle)
    assert [u.handle.lower() for u in found] == [*handles, by_name.user.handle.lower()]
    like_wildcards = stubs.users.SearchUsers(users_pb.SearchUsersRequest(query="%_"), timeout=10)
    assert list(like_wildcards.users) == []
    empty = rpc_error(lambda: stubs.users.SearchUsers(users_pb.SearchUsersRequest(query=" ")))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_global_timeline_has_public_tweets_newest_first_and_streams_them(stubs: Stubs) -> None:
    author, other = stubs.sign_up("public"), stubs.sign_up("other")
    before = stubs.post(author, "before the stream")
    stream = LiveStream(stubs.timeline, None, since=before.tweet_id)
    try:
        visible = stubs.post(author, "for everyone")
        reply = stubs.post(other, "a reply to someone", reply_to_tweet_id=visible.tweet_id)
        stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=visible.tweet_id), metadata=other.auth)
        last = stubs.post(other, "last")
        streamed = [stream.next_tweet(10).tweet_id]
        while streamed[-1] != last.tweet_id:
            streamed.append(stream.next_tweet(10).tweet_id)
        assert visible.tweet_id in streamed and reply.tweet_id not in streamed
        assert before.tweet_id not in streamed
    finally:
        stream.close()
    latest = ids(global_timeline(stubs, 100))
    assert latest.index(last.tweet_id) < latest.index(visible.tweet_id) < latest.index(before.tweet_id)
    assert reply.tweet_id not in latest


def test_unknown_ids_are_not_found(stubs: Stubs) -> None:
    someone = stubs.sign_up("someone")
    calls: list[Callable[[], Any]] = [
        lambda: stubs.tweets.ListReplies(pb.ListRepliesRequest(tweet_id=UNKNOWN_ID)),
        lambda: stubs.tweets.ListLikingUsers(pb.ListLikingUsersRequest(tweet_id=UNKNOWN_ID)),
        lambda: stubs.tweets.ListLikedTweets(pb.ListLikedTweetsRequest(user_id=UNKNOWN_ID)),
        lambda: stubs.tweets.ListMentions(pb.ListMentionsRequest(user_id=UNKNOWN_ID)),
        lambda: stubs.tweets.Retweet(pb.RetweetRequest(tweet_id=UNKNOWN_ID), metadata=someone.auth),
        lambda: stubs.tweets.DeleteTweet(pb.DeleteTweetRequest(tweet_id=UNKNOWN_ID), metadata=someone.auth),
        lambda: stubs.users.UpdateUser(users_pb.UpdateUserRequest(user_id=UNKNOWN_ID), metadata=someone.auth),
    ]
    for call in calls:
        assert rpc_error(call).code() == grpc.StatusCode.NOT_FOUND


def test_stream_responses_share_one_event_shape(stubs: Stubs) -> None:
    # The global stream's events are the home stream's: a client handles both the same way.
    home_fields = timeline_pb.StreamHomeTimelineResponse.DESCRIPTOR.fields_by_name.keys()
    global_fields = timeline_pb.StreamGlobalTimelineResponse.DESCRIPTOR.fields_by_name.keys()
    assert sorted(home_fields) == sorted(global_fields)

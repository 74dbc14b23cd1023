"""Who to follow through the real mesh: exact on a small hand-made graph (friends of friends ranked
by how many of the accounts you follow follow them, then popular accounts), never yourself, anyone
you follow, block, are blocked by or mute; owner only; through Envoy."""

from __future__ import annotations

import grpc

from devstack.mesh import Mesh
from tests.helpers import Account, Stubs, http_call, rpc_error
from tweetmesh.users.v1 import users_service_pb2 as pb


def suggestions(stubs: Stubs, who: Account, page_size: int = 100) -> list[tuple[str, int]]:
    reply = stubs.users.ListSuggestions(
        pb.ListSuggestionsRequest(user_id=who.user_id, page_size=page_size), metadata=who.auth, timeout=10
    )
    return [(s.user.user_id, s.followed_by_count) for s in reply.suggestions]


def users_of(stubs: Stubs, user_ids: list[str]) -> list[pb.User]:
    return [stubs.users.GetUser(pb.GetUserRequest(user_id=u), timeout=10).user for u in user_ids]


def test_friends_of_friends_by_how_many_then_popular_accounts_never_the_excluded(stubs: Stubs) -> None:
    me, b, c, d = (stubs.sign_up(name) for name in ("me", "b", "c", "d"))
    x, y, z, w, m, star = (stubs.sign_up(name) for name in ("x", "y", "z", "w", "m", "star"))
    for followee in (b, c, d):
        stubs.follow(me, followee)
    for follower, followees in ((b, (x, y, w)), (c, (x, y, z)), (d, (x, me, b, m)), (x, (star,))):
        for followee in followees:
            stubs.follow(follower, followee)
    for fan in (y, z, m):
        stubs.follow(fan, star)
    # Before any block or mute: x by three, y by two, then the ones followed by one (the account
    # with more followers first: w and z have one each, m one; newest account first among equals).
    assert suggestions(stubs, me)[:5] == [
        (x.user_id, 3),
        (y.user_id, 2),
        (m.user_id, 1),
        (w.user_id, 1),
        (z.user_id, 1),
    ]
    stubs.users.MuteUser(pb.MuteUserRequest(user_id=z.user_id), metadata=me.auth, timeout=10)
    stubs.users.BlockUser(pb.BlockUserRequest(user_id=me.user_id), metadata=w.auth, timeout=10)
    found = suggestions(stubs, me)
    assert found[:3] == [(x.user_id, 3), (y.user_id, 2), (m.user_id, 1)]
    # Then popular accounts, suggested for their followers: never me, whom I follow, block, am
    # blocked by or mute; most followed first, up to the page. `star` (followed by four accounts I
    # do not follow) is among them unless the page filled up with accounts followed as much.
    popular = found[3:]
    assert popular and all(count == 0 for _, count in popular)
    never = {me.user_id, b.user_id, c.user_id, d.user_id, z.user_id, w.user_id}
    assert not never & {user_id for user_id, _ in found}
    assert len({user_id for user_id, _ in found}) == len(found)
    counts = [u.followers_count for u in users_of(stubs, [user_id for user_id, _ in popular])]
    assert counts == sorted(counts, reverse=True)
    assert star.user_id in dict(popular) or (len(found) == 100 and counts[-1] >= 4)
    assert len(suggestions(stubs, me, page_size=2)) == 2
    # Following one takes it out.
    stubs.follow(me, x)
    assert suggestions(stubs, me)[0] == (y.user_id, 2)


def test_suggestions_are_the_owners_only(stubs: Stubs, mesh: Mesh) -> None:
    ann, bob = stubs.sign_up("ann"), stubs.sign_up("bob")
    error = rpc_error(
        lambda: stubs.users.ListSuggestions(
            pb.ListSuggestionsRequest(user_id=bob.user_id), metadata=ann.auth, timeout=10
        )
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    unknown = rpc_error(
        lambda: stubs.users.ListSuggestions(
            pb.ListSuggestionsRequest(user_id="12345"), metadata=ann.auth, timeout=10
        )
    )
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    port = mesh.ports.envoy
    path = f"/v1/users/{ann.user_id}/suggestions"
    listed = http_call(port, "GET", f"{path}?page_size=3", token=ann.token)
    assert listed.status == 200 and len(listed.json()["suggestions"]) <= 3
    assert http_call(port, "GET", path).status == 401
    assert http_call(port, "GET", f"{path}?page_size=-1", token=ann.token).status == 400

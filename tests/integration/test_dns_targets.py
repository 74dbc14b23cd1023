"""Peers given as dns:/// targets (how deploy/k8s points at headless Services) are resolved and
called: timeline_svc, restarted with its peers as dns:///localhost:<port>, serves a hydrated timeline."""

from __future__ import annotations

from devstack.mesh import Mesh
from tests.helpers import Stubs, eventually


def test_a_service_reaches_its_peers_through_dns_targets(mesh: Mesh, stubs: Stubs) -> None:
    viewer, author = stubs.sign_up("dnsview"), stubs.sign_up("dnspost")
    stubs.follow(viewer, author)
    posted = stubs.post(author, "found through dns:///")
    peers = {
        "USERS_ADDR": f"dns:///localhost:{mesh.ports.users}",
        "TWEETS_ADDR": f"dns:///localhost:{mesh.ports.tweets}",
    }
    mesh.start_service("timeline", extra_env=peers)
    try:
        page = eventually(lambda: stubs.home(viewer).tweets)
        assert page[0].tweet_id == posted.tweet_id
        assert page[0].author.handle == author.user.handle  # hydrated through users_svc
    finally:
        mesh.start_service("timeline")

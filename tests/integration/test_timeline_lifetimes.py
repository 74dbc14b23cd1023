"""A home timeline's lifetime: a read renews it, except while the timeline is being rebuilt (an
unfinished rebuild keeps the short lifetime its beginning gave it, so that one that failed is begun
again by a later read), through the page's first script (timeline_svc.fastpath) and the store's
own read (social.timelines.TimelineStore.read), on one Redis and on a cluster."""

from __future__ import annotations

import asyncio

from devstack.mesh import Mesh
from meshkit.shards import connect
from social.timelines import REBUILD_TTL_SECONDS, home_timelines
from tests.helpers import ON_BOTH_REDIS, Stubs, eventually, redis_client

pytestmark = ON_BOTH_REDIS

# The test mesh's HOME_TIMELINE_TTL_SECONDS (the default: 14 days).
HOME_TTL_SECONDS = 14 * 86_400


def test_a_read_renews_a_built_home_timeline_but_not_one_being_rebuilt(stubs: Stubs, mesh: Mesh) -> None:
    reader = stubs.sign_up("lifetime")
    user = int(reader.user_id)
    stubs.home(reader)  # the first read begins the timeline's rebuild, in the background
    eventually(lambda: not stubs.home(reader).rebuilding)
    r = redis_client(mesh.redis_url)
    key = f"home:{user}"

    async def store_read_and_begin() -> bytes:
        client = connect(mesh.redis_url, cluster=mesh.redis_cluster, timeout=5, max_connections=4)
        try:
            store = home_timelines(client, 800, HOME_TTL_SECONDS)
            await store.read(user)  # a built timeline: renewed
            assert HOME_TTL_SECONDS - 60 < int(await client.ttl(key)) <= HOME_TTL_SECONDS
            begun = await store.begin_rebuild(user)
            await store.read(user)  # being rebuilt: left as the beginning set it
            assert 0 < int(await client.ttl(key)) <= REBUILD_TTL_SECONDS
            return begun
        finally:
            await client.aclose()

    asyncio.run(store_read_and_begin())
    r.expire(key, 30)  # a rebuild that stalled 30 s ago: it must not live on through reads
    for _ in range(3):
        assert stubs.home(reader).rebuilding
        assert 0 < int(r.ttl(key)) <= 30

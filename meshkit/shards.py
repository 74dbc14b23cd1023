"""Redis as one server or as a Redis Cluster (REDIS_CLUSTER=1): the client built in one place
(`connect`), and the few tools code needs whose work touches keys of many cluster slots at once.

A cluster keeps each key on the master that owns its slot (a hash of the key, or of its `{hash
tag}`). A command or a script that declares keys of several slots is refused (CROSSSLOT), so:

- keys one script or transaction must touch together share a hash tag (one slot);
- a read of many independent keys is one read per node (`get_many`);
- a script over many users' keys runs once per node holding some of them (`SpreadScript`): its
  keys are passed after a marker in ARGV and the script touches them undeclared. Redis allows a
  script without flags to touch any key its node serves, one command at a time (each command's
  keys in one slot), which is what every such script here does. On one server it is one call,
  as before.

On one server every helper here is a single call, exactly what the code did before; the cluster
paths cost one round trip per node (three, for the local cluster of devstack).

Pub/sub on a cluster whose masters all run Redis 7.0 or later is sharded (`sharded_pubsub`): a
message goes by SPUBLISH to the node owning its channel's slot only (and its replicas), instead of
to every node over the cluster bus. Before 7.0, and on one server, it is classic PUBLISH/SUBSCRIBE.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ClusterDownError, NoScriptError
from redis.typing import EncodableT, KeyT

# What the helpers take: the client as the services hold it (typed as one server's), or a cluster's.
RedisClient = aioredis.Redis | RedisCluster

# The marker after which a script run on one node of a cluster finds its keys (SPREAD_KEYS).
_SPREAD_MARK = "spread-keys"

# The first lines of a SpreadScript: on a cluster, KEYS come in ARGV after the marker and their count.
SPREAD_KEYS = f"""
local KEYS, ARGV = KEYS, ARGV
if ARGV[1] == '{_SPREAD_MARK}' then
  local n = tonumber(ARGV[2])
  KEYS = {{unpack(ARGV, 3, n + 2)}}
  ARGV = {{unpack(ARGV, n + 3)}}
end
"""


# The first Redis that has sharded pub/sub (SSUBSCRIBE, SPUBLISH).
SHARDED_PUBSUB_SINCE = (7, 0)
# What sharded_pubsub found, per client.
_SHARDED: weakref.WeakKeyDictionary[RedisCluster, bool] = weakref.WeakKeyDictionary()


def is_cluster(redis: object) -> bool:
    """Whether `redis` is a Redis Cluster client."""
    return isinstance(redis, RedisCluster)


def connect(
    url: str,
    *,
    cluster: bool,
    timeout: float,
    max_connections: int,
    parser_class: type | None = None,
) -> aioredis.Redis:
    """A client of the Redis at `url`, or of the cluster `url` names one node of (`cluster`).

    One server: a blocking pool, so that a burst (a thousand streams opening at once) waits for a
    free connection within `timeout` instead of failing. A cluster: redis-py's cluster client (its
    own pool per node), typed as the plain client: it serves the same commands, and code that must
    tell them apart asks `is_cluster`. `parser_class` parses every reply (meshkit.runtime's raises
    the replies that mean an outage as such)."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
        "max_connections": max_connections,
    }
    if not cluster:
        pool = aioredis.BlockingConnectionPool.from_url(
            url, timeout=timeout, **common, **({"parser_class": parser_class} if parser_class else {})
        )
        return aioredis.Redis.from_pool(pool)  # closing the client closes the pool
    client = RedisCluster.from_url(url, **common)
    if parser_class is not None:
        # The cluster client takes no parser argument; its nodes' connections are made from these
        # keyword arguments (those it discovers later from the shared ones).
        client.nodes_manager.connection_kwargs["parser_class"] = parser_class
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_kwargs["parser_class"] = parser_class
    return cast(aioredis.Redis, client)


async def sharded_pubsub(redis: RedisClient) -> bool:
    """Whether pub/sub on `redis` is sharded: a cluster whose masters all run Redis 7.0 or later
    (asked once per client). One server keeps classic pub/sub: it is the one node either way."""
    if not isinstance(redis, RedisCluster):
        return False
    found = _SHARDED.get(redis)
    if found is None:
        infos: dict[str, dict[str, Any]] = await redis.info("server", target_nodes=RedisCluster.PRIMARIES)
        versions = [tuple(int(p) for p in str(i["redis_version"]).split(".")[:2]) for i in infos.values()]
        found = _SHARDED[redis] = bool(versions) and all(v >= SHARDED_PUBSUB_SINCE for v in versions)
    return found


async def publish(redis: RedisClient, channel: str, message: EncodableT) -> None:
    """Publishes `message` on `channel`: SPUBLISH where pub/sub is sharded, else PUBLISH."""
    if await sharded_pubsub(redis):
        await redis.spublish(channel, message)
    else:
        await redis.publish(channel, message)


def _node_of(redis: RedisCluster, key: KeyT) -> ClusterNode:
    node = redis.get_node_from_key(key if isinstance(key, str) else bytes(key).decode())
    if node is None:  # a slot no master serves: the cluster is down, as redis-py says of a command
        raise ClusterDownError(f"no node serves the slot of {key!r}")
    return node


def nodes_of(redis: RedisClient, keys: Sequence[KeyT]) -> list[tuple[ClusterNode | None, list[int]]]:
    """The positions of `keys` grouped by the node holding them: (node, positions) pairs. On one
    server, one group of all of them, with node None."""
    if not isinstance(redis, RedisCluster):
        return [(None, list(range(len(keys))))]
    groups: dict[str, tuple[ClusterNode, list[int]]] = {}
    for n, key in enumerate(keys):
        node = _node_of(redis, key)
        groups.setdefault(node.name, (node, []))[1].append(n)
    return list(groups.values())


def primaries(redis: RedisClient) -> list[ClusterNode | None]:
    """Every master of a cluster; [None] (the one server) otherwise."""
    if not isinstance(redis, RedisCluster):
        return [None]
    return list(redis.get_primaries())


def key_on(redis: RedisClient, base: str, node: ClusterNode | None) -> str:
    """A key starting with `base` that lives on `node` (`base` itself on one server): `base`
    with the first hash tag `{n}` whose slot the node owns."""
    if node is None or not isinstance(redis, RedisCluster):
        return base
    n = 0
    while _node_of(redis, key := f"{base}{{{n}}}").name != node.name:
        n += 1
    return key


# The values of KEYS (false, a nil reply, where absent): a cluster node's MGET, which unlike MGET
# may read keys of several slots (redis-py's mget_nonatomic sends one MGET per slot).
_GET_EACH = """
local values = {}
for i, key in ipairs(KEYS) do values[i] = redis.call('GET', key) end
return values
"""


async def get_many(redis: RedisClient, keys: Sequence[KeyT]) -> list[Any]:
    """The values of `keys` (None where absent), in their order: one MGET; on a cluster, one
    read per node (a script: an MGET there would be one per slot, that is one per key)."""
    if not keys:
        return []
    if not isinstance(redis, RedisCluster):
        return cast(list[Any], await redis.mget(list(keys)))
    values: list[Any] = [None] * len(keys)
    for positions, found in await SpreadScript(redis, _GET_EACH).run(keys):
        for n, value in zip(positions, found, strict=True):
            values[n] = value
    return values


async def exist_each(redis: RedisClient, keys: Sequence[KeyT]) -> list[bool]:
    """Whether each key exists, in one pipeline (on a cluster, one round trip per node)."""
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.exists(key)
        found = await pipe.execute()
    return [bool(n) for n in found]


class SpreadScript:
    """A Lua script over keys that may live in many slots. `run` on one server is one EVALSHA
    with the keys as KEYS; on a cluster, one per node holding some of them (the script's first
    lines, SPREAD_KEYS, turn what follows the marker in ARGV back into KEYS). The caller adds up
    the answers: each comes with the positions of the keys its call was given."""

    def __init__(self, redis: RedisClient, lua: str) -> None:
        self._redis = redis
        self._lua = SPREAD_KEYS + lua
        self._script = redis.register_script(self._lua)

    async def run(self, keys: Sequence[KeyT], args: Sequence[EncodableT] = ()) -> list[tuple[list[int], Any]]:
        """The script over `keys` with the same `args` on each node, the nodes at once:
        (positions, answer) pairs."""
        groups = nodes_of(self._redis, keys)
        answers = await asyncio.gather(
            *(self.run_on(node, [keys[n] for n in positions], args) for node, positions in groups)
        )
        return [(positions, answer) for (_, positions), answer in zip(groups, answers, strict=True)]

    async def run_on(
        self, node: ClusterNode | None, keys: Sequence[KeyT], args: Sequence[EncodableT], client: Any = None
    ) -> Any:
        """The script on `node` (None: the one server, or `client` there, a pipeline) over `keys`,
        which all live there."""
        if node is None:
            if client is not None:
                return await self._script(keys=keys, args=args, client=client)
            return await self._script(keys=keys, args=args)
        command = ("EVALSHA", self._script.sha, 0, _SPREAD_MARK, len(keys), *keys, *args)
        try:
            return await self._redis.execute_command(*command, target_nodes=node)
        except NoScriptError:
            await self._redis.execute_command("SCRIPT LOAD", self._lua, target_nodes=node)
            return await self._redis.execute_command(*command, target_nodes=node)

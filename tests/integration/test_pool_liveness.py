"""The PostgreSQL pool's liveness check (meshkit.runtime.RecentlyReturned) on a real server: a
connection idle past the window is checked and replaced when the server dropped it; one returned
within the window is handed out unchecked, and once it fails it is never trusted again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from devstack.mesh import Mesh
from meshkit.runtime import RecentlyReturned


@contextlib.asynccontextmanager
async def _pool(mesh: Mesh, window_seconds: float) -> AsyncIterator[AsyncConnectionPool]:
    liveness = RecentlyReturned(window_seconds)
    pool = AsyncConnectionPool(
        mesh.database_url,
        min_size=1,
        max_size=1,
        open=False,
        kwargs={"autocommit": True},
        check=liveness.check,
        reset=liveness.returned,
    )
    await pool.open(wait=True, timeout=10)
    try:
        yield pool
    finally:
        await pool.close()


async def _backend_of(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        return conn.info.backend_pid


async def _drop(mesh: Mesh, backend: int) -> None:
    """The server ends that connection, as a restart would."""
    async with await psycopg.AsyncConnection.connect(mesh.database_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s, 5000)", (backend,))


async def _one(pool: AsyncConnectionPool) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT 1")).fetchone()
    return int(row[0]) if row else 0


async def test_a_connection_idle_past_the_window_is_checked_and_replaced(mesh: Mesh) -> None:
    async with _pool(mesh, window_seconds=0) as pool:
        dropped = await _backend_of(pool)
        await _drop(mesh, dropped)
        assert await _one(pool) == 1
        assert await _backend_of(pool) != dropped


async def test_a_connection_returned_within_the_window_is_not_checked_until_it_fails(mesh: Mesh) -> None:
    async with _pool(mesh, window_seconds=60) as pool:
        dropped = await _backend_of(pool)
        await _drop(mesh, dropped)
        # Unchecked: the call that gets it fails (the cost of the window, bounded to one call) ...
        with pytest.raises(psycopg.OperationalError):
            await _one(pool)
        # ... and the broken connection came back without being marked alive: replaced, not reused.
        assert await _one(pool) == 1
        assert await _backend_of(pool) != dropped

"""CPU time spent by the mesh's processes (services, Envoy, PostgreSQL with its backends, Redis), from
/proc: a workload's cost per operation, which a busy shared machine distorts far less than its rate."""

from __future__ import annotations

import os
from pathlib import Path

from devstack.mesh import SERVICES, Mesh

_TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("envoy", "postgres", "redis")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None  # gone meanwhile


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(int(stat[1]), []).append(int(entry.name))
    return children


def process_seconds(pid: int, children: dict[int, list[int]]) -> float:
    """CPU seconds of `pid`, of the children it has reaped, and of its live descendants (a
    PostgreSQL backend's time counts while it runs and, through the postmaster, after it exits)."""
    stat = _stat(pid)
    if stat is None:
        return 0.0
    ticks = sum(int(stat[i]) for i in (11, 12, 13, 14))  # utime, stime, cutime, cstime
    pending = list(children.get(pid, []))
    while pending:
        child = pending.pop()
        if (found := _stat(child)) is not None:
            ticks += int(found[11]) + int(found[12])
        pending.extend(children.get(child, []))
    return ticks / _TICKS


def mesh_seconds(mesh: Mesh) -> dict[str, float]:
    """CPU seconds used so far by each process of the mesh, by name."""
    children = _children()
    return {name: process_seconds(mesh.pid(name), children) for name in (*SERVICES, *SERVERS)}


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds each process used between two readings of mesh_seconds."""
    return {name: after[name] - before[name] for name in before}

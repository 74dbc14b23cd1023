"""The benchmark's output: bench/results/latest.json, a markdown table and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.dataset import SIZES, Size

FIGURES = (
    "posts_per_s",
    "post_p99_ms",
    "home_reads_per_s",
    "home_read_p99_ms",
    "noop_rpc_per_s",
    "direct_grpc_reads_per_s",
    "envoy_http_reads_per_s",
    "mixed_requests_per_s",
    "fanout_deliveries_per_s",
    "timeline_entries_per_s",
    "redis_ceiling_ops_per_s",
    "delivery_p50_ms",
    "delivery_p99_ms",
    "celebrity_post_p99_ms",
    "normal_post_p99_ms",
    "redis_bytes_per_timeline_entry",
    "cpu_ms_per_post",
    "cpu_ms_per_read",
    "delivery_p99_ms_gentle",
    "achieved_posts_per_s_live",
    "delivery_missing",
    "suggestions_p99_ms",
)


# A size with warm_shares (large) adds figures under its name, to be set beside medium's: its setup
# (load_seconds: PostgreSQL's load and every home timeline built; generating the data is apart),
# PostgreSQL's size on disk, Redis's used_memory with each share of users warm, and these rates.
SCALED = ("home_reads_per_s", "posts_per_s", "timeline_entries_per_s", "delivery_p99_ms")
# The medium run's results, which such a size's targets are ratios against (the same machine).
MEDIUM_RESULTS = Path(__file__).parent / "results" / "latest.json"
# The seed's estimate of Redis's memory with every home timeline warm, at a million users: 4-5 GB.
SEED_REDIS_BYTES = 5_000_000_000

FANOUT, CEILING = "timeline_entries_per_s", "redis_ceiling_ops_per_s"
ENVOY, DIRECT = "envoy_http_reads_per_s", "direct_grpc_reads_per_s"


def targets(f: dict[str, float]) -> list[tuple[str, str, bool]]:
    """The issue's targets as (target, measured, reached), ratios against same-run baselines."""

    def ratio(a: str, b: str) -> float:
        return f[a] / f[b] if f[b] else 0.0

    return [
        ("fan-out >= 300,000 timeline entries/s", f"{f[FANOUT]:,.0f}/s", f[FANOUT] >= 300_000),
        ("fan-out >= 0.5 x Redis ceiling", f"{ratio(FANOUT, CEILING):.3f}", ratio(FANOUT, CEILING) >= 0.5),
        ("posts >= 1,000/s", f"{f['posts_per_s']:,.0f}/s", f["posts_per_s"] >= 1000),
        ("post p99 < 50 ms", f"{f['post_p99_ms']:.1f} ms", f["post_p99_ms"] < 50),
        ("<= 1.0 ms of mesh CPU per post", f"{f['cpu_ms_per_post']:.2f} ms", f["cpu_ms_per_post"] <= 1.0),
        ("home reads >= 0.6 x no-op RPC", f"{ratio('home_reads_per_s', 'noop_rpc_per_s'):.3f}",
         ratio("home_reads_per_s", "noop_rpc_per_s") >= 0.6),
        ("<= 0.45 ms of mesh CPU per home read", f"{f['cpu_ms_per_read']:.2f} ms",
         f["cpu_ms_per_read"] <= 0.45),
        ("Envoy HTTP reads >= 0.8 x direct gRPC", f"{ratio(ENVOY, DIRECT):.3f}", ratio(ENVOY, DIRECT) >= 0.8),
        ("post -> stream p99 < 100 ms (at 500/s)", f"{f['delivery_p99_ms']:.1f} ms",
         0 < f["delivery_p99_ms"] < 100),
        ("post -> stream p99 < 100 ms (at 50/s)", f"{f['delivery_p99_ms_gentle']:.1f} ms",
         0 < f["delivery_p99_ms_gentle"] < 100),
        ("live run achieves >= 0.95 x 500 posts/s", f"{f['achieved_posts_per_s_live']:,.0f}/s",
         f["achieved_posts_per_s_live"] >= 0.95 * 500),
        ("no tweet missing from a stream", f"{f['delivery_missing']:.0f}", f["delivery_missing"] == 0),
        ("celebrity post p99 <= 1.2 x normal", f"{ratio('celebrity_post_p99_ms', 'normal_post_p99_ms'):.2f}",
         0 < ratio("celebrity_post_p99_ms", "normal_post_p99_ms") <= 1.2),
        ("<= 16 bytes per timeline entry", f"{f['redis_bytes_per_timeline_entry']:.1f} B",
         0 < f["redis_bytes_per_timeline_entry"] <= 16),
    ]  # fmt: skip


def share_name(share: float) -> str:
    return "all_warm" if share >= 1 else f"{round(share * 100)}pct_warm"


def size_figure_names(size: Size) -> list[str]:
    """The figures `size` adds under its name (none, unless it has warm_shares)."""
    if not size.warm_shares:
        return []
    return [
        f"{size.name}_load_seconds",
        f"{size.name}_pg_bytes",
        *(f"{size.name}_redis_bytes_{share_name(share)}" for share in size.warm_shares),
        *(f"{size.name}_{k}" for k in SCALED),
    ]


def size_figures(size: Size, figures: dict[str, float], details: dict[str, Any]) -> dict[str, float]:
    """The values of size_figure_names(size), from the run's figures and details (those of
    workloads that did not run are left out)."""
    if not size.warm_shares:
        return {}
    found = {
        f"{size.name}_load_seconds": details["load_seconds"] + details["warm_seconds"],
        f"{size.name}_pg_bytes": sum(t["table"] + t["indexes"] for t in details["postgres_bytes"].values()),
    }
    for stage in details["redis_memory"]:
        found[f"{size.name}_redis_bytes_{share_name(stage['share'])}"] = stage["used_memory"]
    return found | {f"{size.name}_{k}": figures[k] for k in SCALED if k in figures}


def size_targets(
    size: Size, figures: dict[str, float], medium: dict[str, float]
) -> list[tuple[str, str, bool]]:
    """The targets of a size with warm_shares: its rates within 0.8 of medium's (`medium`: the
    medium run's figures, on the same machine), and Redis within the seed's estimate all warm."""

    def ratio(key: str) -> float:
        return figures[f"{size.name}_{key}"] / medium[key] if medium.get(key) else 0.0

    rows = [
        (
            f"{size.name} {key} >= 0.8 x medium's ({medium.get(key, 0):,.1f})",
            f"{ratio(key):.3f}",
            ratio(key) >= 0.8,
        )
        for key in ("home_reads_per_s", "posts_per_s", "timeline_entries_per_s")
    ]
    p99 = ratio("delivery_p99_ms")
    rows.append(
        (
            f"{size.name} delivery p99 <= medium's / 0.8 ({medium.get('delivery_p99_ms', 0):,.1f} ms)",
            f"{p99:.3f}",
            0 < p99 <= 1 / 0.8,
        )
    )
    memory = figures.get(f"{size.name}_redis_bytes_all_warm", 0.0)
    rows.append(
        (
            "Redis all warm <= 5 GB (the seed's 4-5 GB)",
            f"{memory / 1e9:.2f} GB",
            0 < memory <= SEED_REDIS_BYTES,
        )
    )
    return rows  # fmt: skip


def write(
    out: Path, size: str, figures: dict[str, float], details: dict[str, Any], plots: bool = True
) -> None:
    keys = [*FIGURES, *size_figure_names(SIZES[size])]
    missing = [k for k in keys if k not in figures]
    if missing:
        raise ValueError(f"figures missing: {missing}")
    out.mkdir(parents=True, exist_ok=True)
    rounded = {k: round(float(figures[k]), 3) for k in keys}
    latest = {"size": size, "figures": rounded}
    (out / "latest.json").write_text(json.dumps(latest, indent=2) + "\n")
    (out / "details.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    lines = [
        f"# tweetmesh benchmark, size {size}",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| `{k}` | {rounded[k]:,} |" for k in keys),
        "",
        "| target | measured | reached |",
        "|---|---:|:-:|",
        *(f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(figures)),
        "",
    ]
    if SIZES[size].warm_shares:
        lines += _at_scale(SIZES[size], figures, details)
    (out / "latest.md").write_text("\n".join(lines))
    if plots:
        _plot(out, figures)


def _at_scale(size: Size, figures: dict[str, float], details: dict[str, Any]) -> list[str]:
    """latest.md's part on a size with warm_shares: storage per user and follow, Redis at each
    share, the setup's phases, and the targets against medium's run (when there is one)."""
    tables = details["postgres_bytes"]

    def per_row(table: str, rows: int) -> float:
        return (tables[table]["table"] + tables[table]["indexes"]) / rows if rows else 0.0

    user_row, follow = per_row("users.users", details["users"]), per_row("users.follows", details["follows"])
    medium = json.loads(MEDIUM_RESULTS.read_text()) if MEDIUM_RESULTS.exists() else {}
    return [
        "| storage | measured |",
        "|---|---:|",
        f"| PostgreSQL bytes per user row (users.users and its indexes) | {user_row:,.0f} |",
        f"| PostgreSQL bytes per follow (users.follows and its indexes) | {follow:,.0f} |",
        *(f"| Redis used_memory, {share_name(m['share']).replace('_', ' ')} ({m['warm_users']:,} users)"
          f" | {m['used_memory'] / 1e9:.2f} GB, {m['bytes_per_warm_user']:,.0f} B per warm user |"
          for m in details["redis_memory"]),
        "",
        "| setup phase | seconds |",
        "|---|---:|",
        *(f"| {name} | {seconds:,.1f} |" for name, seconds in details["phases"].items()),
        "",
        *(
            ["| target (against medium's run) | measured | reached |", "|---|---:|:-:|",
             *(f"| {t} | {m} | {'yes' if ok else 'no'} |"
               for t, m, ok in size_targets(size, figures, medium["figures"])), ""]
            if medium.get("size") == "medium" else ["(no medium results to compare with)", ""]
        ),
    ]  # fmt: skip


def _plot(out: Path, f: dict[str, float]) -> None:
    rates = {
        "no-op RPC": f["noop_rpc_per_s"],
        "home reads": f["home_reads_per_s"],
        "reads, direct gRPC": f["direct_grpc_reads_per_s"],
        "reads, Envoy HTTP": f["envoy_http_reads_per_s"],
        "mixed 60/30/10": f["mixed_requests_per_s"],
        "posts": f["posts_per_s"],
    }
    _bars(out / "throughput.png", rates, "requests per second", "Throughput (same run, 2 shared cores)")
    latencies = {
        "post p99": f["post_p99_ms"],
        "home read p99": f["home_read_p99_ms"],
        "post->stream p50": f["delivery_p50_ms"],
        "post->stream p99": f["delivery_p99_ms"],
        "post->stream p99 at 50/s": f["delivery_p99_ms_gentle"],
        "celebrity post p99": f["celebrity_post_p99_ms"],
        "10-follower post p99": f["normal_post_p99_ms"],
    }
    _bars(out / "latency.png", latencies, "milliseconds", "Latency percentiles")
    fanout = {"fan-out deliveries": f[FANOUT], "Redis APPEND ceiling": f[CEILING]}
    _bars(out / "fanout.png", fanout, "timeline writes per second", "Fan-out against Redis's ceiling")


def _bars(path: Path, values: dict[str, float], unit: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 1 + 0.5 * len(values)))
    ax.barh(list(values), list(values.values()), color="#4477aa")
    ax.set_xlabel(unit)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

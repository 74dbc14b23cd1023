"""The benchmark's output: bench/results/latest.json, a markdown table and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def write(
    out: Path, size: str, figures: dict[str, float], details: dict[str, Any], plots: bool = True
) -> None:
    missing = [k for k in FIGURES if k not in figures]
    if missing:
        raise ValueError(f"figures missing: {missing}")
    out.mkdir(parents=True, exist_ok=True)
    rounded = {k: round(float(figures[k]), 3) for k in FIGURES}
    latest = {"size": size, "figures": rounded}
    (out / "latest.json").write_text(json.dumps(latest, indent=2) + "\n")
    (out / "details.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    lines = [
        f"# tweetmesh benchmark, size {size}",
        "",
        "| figure | value |",
        "|---|---:|",
        *(f"| `{k}` | {rounded[k]:,} |" for k in FIGURES),
        "",
        "| target | measured | reached |",
        "|---|---:|:-:|",
        *(f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(figures)),
        "",
    ]
    (out / "latest.md").write_text("\n".join(lines))
    if plots:
        _plot(out, figures)


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

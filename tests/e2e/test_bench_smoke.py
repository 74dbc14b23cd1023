"""`make bench` end to end at the tiny size on the test mesh: a smoke test of the harness, not of speed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import dataset, report, suite
from bench.loadgen import TOOLS


def test_the_benchmark_runs_every_workload_and_writes_its_results(tmp_path: Path) -> None:
    missing = [f"{name} (Debian {package})" for name, package in TOOLS.items() if shutil.which(name) is None]
    if missing:
        pytest.skip(f"load generators not installed: {', '.join(missing)} (make test installs them as root)")
    # Its own mesh, as `make bench` starts one: the dataset is COPYed in and ANALYZEd, which
    # would change the planner's picture of the shared test database.
    suite.run("tiny", tmp_path)
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert latest["size"] == "tiny"
    tiny = dataset.SIZES["tiny"]
    assert tiny.warm_shares  # tiny takes the large size's path: timelines built share by share
    assert sorted(latest["figures"]) == sorted([*report.FIGURES, *report.size_figure_names(tiny)])
    assert all(isinstance(v, (int, float)) for v in latest["figures"].values())
    # Every workload did work: no figure came out as zero, but the count of missing deliveries.
    assert latest["figures"]["delivery_missing"] == 0
    assert [k for k, v in latest["figures"].items() if v <= 0 and k != "delivery_missing"] == []
    details = json.loads((tmp_path / "details.json").read_text())
    assert details["live"]["arrivals"] == details["live"]["expected_arrivals"]
    assert details["live"]["missing_arrivals"] == 0
    # Calls answered without HTTP 200 (h2load's log) were seen in about four runs of nine since 2
    # December, at times a third of the calls, not explained yet: printed and left for the
    # benchmark's own figures to show, while the reads must still have been served.
    failed, reads = details["reads"]["failed"], details["home_reads"]["reads"]
    print(f"bench smoke: {failed} failed calls among {reads} home reads and their baselines")
    assert latest["figures"]["home_reads_per_s"] > 0 and failed < reads, details["reads"]
    # Redis's memory after each share of users was warm (at tiny, the workloads' own users are
    # all of them: every share is everyone).
    stages = details["redis_memory"]
    assert [s["share"] for s in stages] == list(tiny.warm_shares)
    assert [s["warm_users"] for s in stages] == sorted(s["warm_users"] for s in stages)
    assert stages[-1]["warm_users"] == tiny.users
    used = [s["used_memory"] for s in stages]
    assert details["redis_used_memory_before_timelines"] < used[0] <= used[1] <= used[2]
    assert latest["figures"]["tiny_redis_bytes_all_warm"] == used[2]
    assert details["postgres_bytes"]["users.follows"]["indexes"] > 0
    assert {"generate", "COPY follows", "home timelines: 100% of users"} <= details["phases"].keys()
    for name in ("latest.md", "throughput.png", "latency.png", "fanout.png"):
        assert (tmp_path / name).stat().st_size > 0

"""python -m bench: runs every workload at BENCH_SIZE (tiny, small, medium, large) and writes
latest.json, latest.md, details.json and PNG plots into bench/results/ (medium, the committed
reference run) or bench/results/<size>/."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from bench import dataset, loadgen, suite


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    size = os.environ.get("BENCH_SIZE", "small")
    parser.add_argument("--size", default=size, choices=sorted(dataset.SIZES))
    parser.add_argument(
        "--out", type=Path, help="where the results go (bench/results/ for medium, else bench/results/SIZE/)"
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        for name in loadgen.TOOLS:
            loadgen.tool(name)
    except loadgen.ToolMissing as missing:
        sys.exit(f"bench: {missing}")
    results = Path(__file__).parent / "results"
    out = args.out or (results if args.size == "medium" else results / args.size)
    figures = suite.run(args.size, out, plots=not args.no_plots)
    print(json.dumps({"size": args.size, "figures": figures}, indent=2))


if __name__ == "__main__":
    main()

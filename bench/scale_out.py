"""Scale-out benchmark (`make bench`): the same comparison as 1 process x 2 threads and as 2 ranks
x 1 thread under `accelerate launch`, on this machine. Reports the wall time of each and the
per-method speedups from both summaries. The two set-ups run different thread counts per process,
and a verify forward's cost relative to a one-token step depends on the thread count, so their
speedups need not agree (docs/compare.md has the measured figures).

    python bench/scale_out.py --out bench/results/scale-out
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from decbench.compare.summary import read_summary

COMPARE = ["compare", "greedy", "pld", "recycling", "--suite", "spec-bench-mini", "--limit", "1"]


def run(command: list[str]) -> float:
    print("$", " ".join(command), file=sys.stderr, flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def speedups(folder: Path) -> dict[str, float | None]:
    summary = read_summary(folder)
    out = {}
    for label in summary.labels:
        stats = summary.overall(label).speedup
        out[label] = stats.median if stats else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale-out"))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    base = [*COMPARE, "-n", str(args.max_new_tokens)]
    one, two = args.out / "one-process", args.out / "two-ranks"
    accelerate = str(Path(sys.executable).with_name("accelerate"))
    launcher = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "decbench"]
    walls = {
        "one_process_2_threads_s": run(
            [sys.executable, "-m", "decbench", *base, "--threads", "2", "-o", str(one)]
        ),
        "two_ranks_1_thread_s": run([*launcher, *base, "-o", str(two)]),
    }
    result = {
        "schema": "decbench/bench-scale-out/v1",
        "command": base,
        "wall_time": walls,
        "wall_ratio": walls["one_process_2_threads_s"] / walls["two_ranks_1_thread_s"],
        "speedups": {"one_process": speedups(one), "two_ranks": speedups(two)},
    }
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

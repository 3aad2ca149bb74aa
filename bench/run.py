"""Run the benchmark plan (bench/plan.toml) and record every comparison as JSON.

    python bench/run.py --out bench/results            # what `make bench` runs
    python bench/run.py --only greedy-vs-hf --repeat 3
    python bench/run.py --resume                       # continue an interrupted run

Each comparison is a `decbench compare` run into bench/results/<name>/ (run.json, samples.jsonl,
summary.json). bench/results/summary.json indexes the headline numbers: per profile the median
paired speedup against the comparison's baseline, exact-match rate, tokens/s and MAT.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from decbench.cli.batch_render import crossover_text
from decbench.compare import CompareSummary, Plan, RunStore, make_plan, run_compare
from decbench.compare.batching import Crossover, run_batch_compare
from decbench.compare.plot import plot_batch_curve
from decbench.compare.store import write_atomic
from decbench.environment import environment
from decbench.errors import ConfigError, DecbenchError, unknown
from decbench.profiles import Profile, coerce, load_profile, method_profile
from decbench.suites import get_suite

SCHEMA_BENCH = "decbench/bench/v1"
COMPARISON_KEYS = {
    "name", "about", "profiles", "baseline", "suite", "categories", "limit",
    "max_new_tokens", "repeat", "warmup", "threads", "backend", "temperature", "goal",
    "batch_sizes",
}  # fmt: skip
GOAL_KEYS = {"profile": str, "speedup": float, "exact_match": float}  # and their types


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_plan(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the bench plan: {e}") from e
    defaults = data.get("defaults", {})
    comparisons = []
    for number, entry in enumerate(data.get("comparison", []), start=1):
        for key in entry:
            if key not in COMPARISON_KEYS:
                raise unknown("key", key, COMPARISON_KEYS, where=f"{path}: comparison {number}")
        if "name" not in entry or "profiles" not in entry:
            raise ConfigError(f"{path}: comparison {number} needs 'name' and 'profiles'")
        check_goal(entry.get("goal"), f"{path}: comparison {number}")
        comparisons.append({**defaults, **entry})
    return defaults, comparisons


def check_goal(goal: dict[str, Any] | None, where: str) -> None:
    """A goal names a profile and states a speedup, an exact-match rate or both."""
    if goal is None:
        return
    for key, value in goal.items():
        if key not in GOAL_KEYS:
            raise unknown("goal key", key, GOAL_KEYS, where=where)
        coerce(value, GOAL_KEYS[key], f"{where}: goal.{key}")  # typed as profile tables are
    if "profile" not in goal or not ("speedup" in goal or "exact_match" in goal):
        raise ConfigError(f"{where}: a goal needs 'profile' and 'speedup' or 'exact_match'")


def check_goal_profile(entry: dict[str, Any], plan: Plan) -> None:
    """The goal's profile is one of the comparison's labels (checked before any comparison runs,
    so a typo does not cost the comparisons before it)."""
    goal = entry.get("goal")
    if goal and goal["profile"] not in plan.labels:
        raise unknown(
            "goal profile", goal["profile"], plan.labels, where=f"comparison '{entry['name']}'"
        )


def build_profile(name: str, entry: dict[str, Any], plan_dir: Path) -> Profile:
    overrides = [("generation", "max_new_tokens", entry["max_new_tokens"])]
    if entry.get("threads"):
        overrides.append(("backend", "threads", entry["threads"]))
    if entry.get("backend"):  # e.g. "llama.cpp": every profile of the comparison on that backend
        overrides.append(("backend", "name", entry["backend"]))
    if "temperature" in entry:  # every profile samples at this temperature (seeded per profile)
        overrides.append(("sampling", "temperature", entry["temperature"]))
    if name.startswith("method:"):
        return method_profile(name.removeprefix("method:"), overrides)
    local = plan_dir / name
    return load_profile(str(local) if local.is_file() else name, overrides)


def entry_plan(entry: dict[str, Any], plan_dir: Path) -> Plan:
    """The compare plan of one plan.toml entry: its profiles, suite selection and repeats."""
    profiles = [build_profile(name, entry, plan_dir) for name in entry["profiles"]]
    suite = get_suite(entry.get("suite", "spec-bench-mini"))
    suite = suite.select(entry.get("categories"), entry.get("limit"))
    return make_plan(
        profiles,
        suite,
        baseline=entry.get("baseline"),
        repeat=entry.get("repeat", 1),
        warmup=entry.get("warmup", 1),
        selection={"categories": entry.get("categories", []), "limit": entry.get("limit")},
    )


def run_comparison(entry: dict[str, Any], plan: Plan, out: Path, resume: bool) -> dict:
    """One entry, from its plan (entry_plan, built before anything runs)."""
    folder = out / entry["name"]
    if entry.get("batch_sizes"):
        return run_batch_curve(entry, plan, folder)
    if resume and (folder / "run.json").is_file():
        store = RunStore.resume(folder)
        plan = store.plan
    else:
        if folder.exists():
            shutil.rmtree(folder)
        store = RunStore.create(folder, plan)

    def progress(event) -> None:
        if event.kind == "record":
            r = event.record
            say(
                f"  [{event.done}/{event.total}] {event.label} {event.sample_id}: "
                f"{sum(r.new_tokens)} tokens, {r.tokens_per_s:.1f} tok/s"
            )

    start = time.perf_counter()
    summary, _ = run_compare(plan, store, progress=say, on_event=progress)
    return headline(entry, summary, time.perf_counter() - start, folder)


def run_batch_curve(entry: dict[str, Any], plan: Plan, folder: Path) -> dict:
    """A comparison with `batch_sizes`: `compare --batch-size` (compare/batching.py), written to
    <folder>/summary.json (decbench/batch-compare/v1) with the curve in <folder>/curve.png."""
    start = time.perf_counter()
    summary = run_batch_compare(plan, sorted(set(entry["batch_sizes"])), say)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / "summary.json", summary.to_json())
    try:
        plot_batch_curve(summary, folder / "curve.png")
    except ConfigError as e:  # matplotlib is an optional extra
        say(f"  no curve plot: {e}")
    rows = {}
    for profile in summary.profiles:
        per_size = {str(b): point for b, point in summary.results[profile.label].items()}
        cross = summary.crossover.get(profile.label)
        rows[profile.label] = {
            "method": profile.method,
            "tokens_per_s": {b: p.tokens_per_s for b, p in per_size.items()},
            "speedup_median": {
                b: p.speedup.median if p.speedup else None for b, p in per_size.items()
            },
            "identical_to_batch1": {b: p.identical_to_batch1 for b, p in per_size.items()},
            "crossover": cross.to_json() if cross else None,
        }
    return {
        "name": entry["name"],
        "about": entry.get("about", ""),
        "baseline": summary.baseline,
        "suite": summary.suite.name,
        "prompts": summary.suite.count,
        "max_new_tokens": entry["max_new_tokens"],
        "repeat": summary.repeat,
        "batch_sizes": summary.batch_sizes,
        "wall_s": time.perf_counter() - start,
        "summary": str(folder / "summary.json"),
        "profiles": rows,
    }


def headline(
    entry: dict[str, Any], summary: CompareSummary, seconds: float, folder: Path
) -> dict[str, Any]:
    """The bench index entry (decbench/bench/v1) of one comparison."""
    rows = {}
    for profile in summary.profiles:
        result = summary.results[profile.label]
        m = result.overall
        speedup, match = m.speedup, m.exact_match
        rows[profile.label] = {
            "method": profile.method,
            "speedup_median": speedup.median if speedup else None,
            "speedup_min": speedup.min if speedup else None,
            "speedup_max": speedup.max if speedup else None,
            "exact_match": match.rate if match else None,
            "first_divergence": match.first_divergence.min if match else None,
            "tokens_per_s_median": m.tokens_per_s.median if m.tokens_per_s else None,
            "mat": m.mat,
            "acceptance_rate": m.acceptance_rate,
            # satisfied, mask ms/step and share, pruned
            "constraint": m.constraint.to_json() if m.constraint else None,
            "by_category": {
                category: c.speedup.median if c.speedup else None
                for category, c in result.categories.items()
            },
        }
    result = {
        "name": entry["name"],
        "about": entry.get("about", ""),
        "baseline": summary.baseline,
        "suite": summary.suite.name,
        "prompts": summary.suite.count,
        "max_new_tokens": summary.profiles[0].generation["max_new_tokens"],
        "repeat": summary.repeat,
        "complete": summary.complete,
        "wall_s": seconds,
        "summary": str(folder / "summary.json"),
        "profiles": rows,
    }
    goal = entry.get("goal")
    if goal:  # its profile was checked against the labels before anything ran
        result["goal"] = judge_goal(goal, rows[goal["profile"]])
    return result


def judge_goal(goal: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The goal with what was measured and whether it was met; a goal states a speedup, an
    exact-match rate or both."""
    met = row["speedup_median"] is not None and row["speedup_median"] >= goal.get("speedup", 0)
    if "exact_match" in goal:
        met = met and (row["exact_match"] or 0) >= goal["exact_match"]
    return {
        **goal,
        "measured_speedup": row["speedup_median"],
        "measured_exact_match": row["exact_match"],
        "met": met,
    }


def print_curve(r: dict[str, Any]) -> None:
    sizes = [str(b) for b in r["batch_sizes"]]
    print(f"  speedup vs {r['baseline']} at the same batch size (tok/s in brackets)")
    print(f"  {'profile':<14}" + "".join(f"{'B=' + b:>18}" for b in sizes) + "  identical")
    for label, row in r["profiles"].items():
        cells = []
        for b in sizes:
            speed = row["speedup_median"][b]
            text = "base" if speed is None else f"{speed:.2f}x"
            cells.append(f"{text} ({row['tokens_per_s'][b]:.1f})")
        same = min((v for v in row["identical_to_batch1"].values() if v is not None), default=None)
        exact = "" if same is None else f"{same:.0%}"
        print(f"  {label:<14}" + "".join(f"{c:>18}" for c in cells) + f"  {exact:>9}")
        if row["crossover"]:
            cross = Crossover.from_json(row["crossover"])
            print(f"  {'':<14}{crossover_text(cross, r['baseline'])}")


def print_table(results: list[dict[str, Any]]) -> None:
    for r in results:
        print(f"\n{r['name']}: {r['about']}")
        if "batch_sizes" in r:
            print(f"  {r['prompts']} prompts ({r['suite']}), max {r['max_new_tokens']} new tokens")
            print_curve(r)
            continue
        print(
            f"  {r['prompts']} prompts ({r['suite']}), max {r['max_new_tokens']} new tokens, baseline {r['baseline']}"
        )
        print(f"  {'profile':<14}{'tok/s':>8}{'speedup':>10}{'range':>14}{'exact':>8}{'MAT':>7}")
        for label, row in r["profiles"].items():
            speed = "base" if row["speedup_median"] is None else f"{row['speedup_median']:.2f}x"
            spread = (
                ""
                if row["speedup_min"] is None
                else f"{row['speedup_min']:.2f}-{row['speedup_max']:.2f}"
            )
            exact = "" if row["exact_match"] is None else f"{row['exact_match']:.0%}"
            print(
                f"  {label:<14}{row['tokens_per_s_median']:>8.1f}{speed:>10}{spread:>14}{exact:>8}"
                f"{row['mat'] or 0:>7.2f}"
            )
        if "goal" in r:
            print(f"  goal: {goal_text(r['goal'])}")


def goal_text(goal: dict[str, Any]) -> str:
    """'eagle: speedup >= 1.8x, exact match >= 100%: NOT met' (a goal states either or both)."""
    parts = []
    if "speedup" in goal:
        parts.append(f"speedup >= {goal['speedup']}x")
    if "exact_match" in goal:
        parts.append(f"exact match >= {goal['exact_match']:.0%}")
    return f"{goal['profile']}: {', '.join(parts)}: {'met' if goal['met'] else 'NOT met'}"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plan", type=Path, default=Path(__file__).with_name("plan.toml"))
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results"))
    parser.add_argument("--only", action="append", help="Run only this comparison (repeatable).")
    parser.add_argument("--repeat", type=int, help="Override every comparison's repeat.")
    parser.add_argument("--threads", type=int, help="Override every comparison's torch threads.")
    parser.add_argument("--resume", action="store_true", help="Continue interrupted comparisons.")
    parser.add_argument("--limit", type=int, help="Override every comparison's prompts/category.")
    parser.add_argument("--max-new-tokens", type=int, help="Override every max_new_tokens.")
    parser.add_argument("--batch-sizes", help="Override batch curves' sizes, e.g. 1,2.")
    args = parser.parse_args()
    try:
        _, comparisons = read_plan(args.plan)
        names = [c["name"] for c in comparisons]
        for name in args.only or []:
            if name not in names:
                raise unknown("comparison", name, names, where="--only")
        chosen = [c for c in comparisons if not args.only or c["name"] in args.only]
        plans = []
        for entry in chosen:
            if args.repeat:
                entry["repeat"] = args.repeat
            if args.threads is not None:
                entry["threads"] = args.threads
            if args.limit is not None:
                entry["limit"] = args.limit
            if args.max_new_tokens is not None:
                entry["max_new_tokens"] = args.max_new_tokens
            if args.batch_sizes and entry.get("batch_sizes"):
                entry["batch_sizes"] = [int(b) for b in args.batch_sizes.split(",")]
            plan = entry_plan(entry, args.plan.parent)
            check_goal_profile(entry, plan)
            plans.append(plan)
        results = []
        for entry, plan in zip(chosen, plans, strict=True):
            say(f"bench: {entry['name']} ({', '.join(entry['profiles'])})")
            results.append(run_comparison(entry, plan, args.out, args.resume))
        index = {
            "schema": SCHEMA_BENCH,
            "plan": str(args.plan),
            "environment": environment(),
            "comparisons": results,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out / "summary.json", index)
        print_table(results)
        say(f"\nwrote {args.out / 'summary.json'}")
        return 0
    except DecbenchError as e:
        say(f"error: {e}")
        return e.exit_code
    except KeyboardInterrupt:
        say("interrupted; continue with: python bench/run.py --resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())

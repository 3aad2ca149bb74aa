"""`decbench compare` as a library: plan a comparison, run it (optionally into an output folder
that survives interruption), and summarise the per-sample records.

    plan = make_plan([load_profile("greedy"), load_profile("pld")], get_suite("summarization"))
    summary, records = run_compare(plan, store=RunStore.create(Path("out"), plan))

Speedup is the median over paired runs (same sample, same repeat) of the ratio of tokens per
second, tokens counted from generated ids; see decbench/compare/stats.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from decbench.compare.harness import (
    SCHEMA_SAMPLE,
    Contender,
    Event,
    check_comparable,
    open_contenders,
    planned_keys,
    run_interleaved,
    unique_labels,
)
from decbench.compare.store import RunStore, record_key
from decbench.compare.summary import SCHEMA_COMPARE, CompareSummary, summarize
from decbench.errors import ConfigError, unknown
from decbench.profiles import TABLES, Profile, build
from decbench.suites import Sample, Suite

__all__ = [
    "SCHEMA_COMPARE",
    "SCHEMA_SAMPLE",
    "CompareSummary",
    "Contender",
    "Event",
    "RunStore",
    "check_same_plan",
    "make_plan",
    "plan_profiles",
    "run_compare",
    "summarize",
]


def make_plan(
    profiles: list[Profile],
    suite: Suite,
    baseline: str | None = None,
    repeat: int = 1,
    warmup: int = 1,
    selection: dict[str, Any] | None = None,
    labels: list[str] | None = None,
) -> dict[str, Any]:
    """Everything a run needs, as plain data (what `--output` stores in run.json). `labels`
    names the profiles (default: file stem or method name; compare --sweep names variants)."""
    if not profiles:
        raise ConfigError("compare needs at least one profile (a TOML file or --method NAME)")
    if repeat < 1:
        raise ConfigError(f"--repeat must be >= 1, got {repeat}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {warmup}")
    if not suite.samples:
        raise ConfigError(f"suite '{suite.name}' has no samples left after the selection")
    if labels is not None and len(set(labels)) != len(labels):
        raise ConfigError(f"profile labels must be unique, got {', '.join(labels)}")
    labels = labels or unique_labels(profiles)
    check_comparable(labels, profiles)
    baseline = baseline or labels[0]
    if baseline not in labels:
        raise unknown("baseline", baseline, labels, where="--baseline")
    return {
        "suite": suite.to_dict(samples=True),
        "selection": selection or {},
        "profiles": [
            {"label": label, "profile": profile.to_dict()}
            for label, profile in zip(labels, profiles, strict=True)
        ],
        "baseline": baseline,
        "repeat": repeat,
        "warmup": warmup,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def plan_profiles(plan: dict[str, Any]) -> tuple[list[str], list[Profile]]:
    """The plan's profiles, rebuilt (and re-validated) from their resolved tables."""
    labels, profiles = [], []
    for entry in plan["profiles"]:
        data = entry["profile"]
        raw = {key: data[key] for key in (*TABLES, "method", "description") if key in data}
        labels.append(entry["label"])
        profiles.append(build(raw, data.get("source", entry["label"])))
    return labels, profiles


def plan_samples(plan: dict[str, Any]) -> list[Sample]:
    return [Sample.from_dict(s) for s in plan["suite"]["samples"]]


def run_compare(
    plan: dict[str, Any],
    store: RunStore | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    on_event: Callable[[Event], None] = lambda _e: None,
    baseline: str | None = None,
    contenders: list[Contender] | None = None,
    share: Callable[[list[Sample]], list[Sample]] | None = None,
) -> tuple[CompareSummary, list[dict[str, Any]]]:
    """Run what is left of the plan and return (summary, all records). With a store, each record
    is made durable as it finishes; on Ctrl-C a partial summary is written before re-raising.
    `contenders` may be passed already opened (in plan order) to keep using them afterwards.
    `share` picks the samples this process runs (a rank's stride, compare/shard.py)."""
    labels, profiles = plan_profiles(plan)
    if baseline is not None and baseline not in labels:
        raise unknown("baseline", baseline, labels, where="--baseline")
    samples = plan_samples(plan)
    if share is not None:
        samples = share(samples)
    records: list[dict[str, Any]] = store.records if store else []
    done = {record_key(r) for r in records}
    keep = store.append if store else records.append
    planned = {(label, s.id, r) for r, s, label in planned_keys(labels, samples, plan["repeat"])}
    todo = len(planned - done)
    try:
        if todo > 0:
            contenders = contenders or open_contenders(labels, profiles, progress)
            run_interleaved(
                contenders,
                samples,
                plan["repeat"],
                plan["warmup"],
                done,
                keep,
                on_event,
                baseline=plan["baseline"],
                earlier=list(records),
            )
    except KeyboardInterrupt:
        if store is not None and store.records:
            store.write_summary(summarize(plan, store.records, store.folder, baseline))
        raise
    summary = summarize(plan, records, store.folder if store else None, baseline)
    if store is not None:
        store.write_summary(summary)
    return summary, records


def check_same_plan(stored: dict[str, Any], fresh: dict[str, Any], folder: Path) -> None:
    """Options given with --resume must describe the stored run (same profiles, suite selection
    and repeats); anything else is refused with the reason."""
    labels_a, profiles_a = plan_profiles(stored)
    labels_b, profiles_b = plan_profiles(fresh)
    if labels_a != labels_b or [p.to_dict() | {"source": ""} for p in profiles_a] != [
        p.to_dict() | {"source": ""} for p in profiles_b
    ]:
        raise ConfigError(
            f"--resume {folder}: the profiles given ({', '.join(labels_b)}) differ from the "
            f"stored run's ({', '.join(labels_a)}); drop them to continue as planned"
        )
    if (
        stored["suite"]["checksum"] != fresh["suite"]["checksum"]
        or stored["repeat"] != fresh["repeat"]
    ):
        raise ConfigError(
            f"--resume {folder}: the suite, selection or --repeat differ from the stored run; "
            "drop them to continue as planned"
        )

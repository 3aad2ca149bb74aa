"""`decbench compare` as a library: plan a comparison, run it (optionally into an output folder
that survives interruption), and summarise the per-sample records.

    plan = make_plan([load_profile("greedy"), load_profile("pld")], get_suite("summarization"))
    summary, records = run_compare(plan, store=RunStore.create(Path("out"), plan))

Speedup is the median over paired runs (same sample, same repeat) of the ratio of tokens per
second, tokens counted from generated ids; see decbench/compare/stats.py.
"""

from __future__ import annotations

from collections.abc import Callable

from decbench.compare.harness import (
    SCHEMA_SAMPLE,
    Contender,
    Event,
    SampleRecord,
    open_contenders,
    planned_keys,
    run_interleaved,
)
from decbench.compare.plan import Plan, check_same_plan, make_plan, plan_profiles
from decbench.compare.store import RunStore, record_key
from decbench.compare.summary import SCHEMA_COMPARE, CompareSummary, summarize
from decbench.errors import unknown
from decbench.suites import Sample

__all__ = [
    "SCHEMA_COMPARE",
    "SCHEMA_SAMPLE",
    "CompareSummary",
    "Contender",
    "Event",
    "Plan",
    "RunStore",
    "SampleRecord",
    "check_same_plan",
    "make_plan",
    "plan_profiles",
    "run_compare",
    "summarize",
]


def run_compare(
    plan: Plan,
    store: RunStore | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    on_event: Callable[[Event], None] = lambda _e: None,
    baseline: str | None = None,
    contenders: list[Contender] | None = None,
    share: Callable[[list[Sample]], list[Sample]] | None = None,
) -> tuple[CompareSummary, list[SampleRecord]]:
    """Run what is left of the plan and return (summary, all records). With a store, each record
    is made durable as it finishes; on Ctrl-C a partial summary is written before re-raising.
    `contenders` may be passed already opened (in plan order) to keep using them afterwards.
    `share` picks the samples this process runs (a rank's stride, compare/shard.py)."""
    labels, profiles = plan_profiles(plan)
    if baseline is not None and baseline not in labels:
        raise unknown("baseline", baseline, labels, where="--baseline")
    samples = plan.samples
    if share is not None:
        samples = share(samples)
    records: list[SampleRecord] = store.records if store else []
    done = {record_key(r) for r in records}
    keep = store.append if store else records.append
    planned = {(label, s.id, r) for r, s, label in planned_keys(labels, samples, plan.repeat)}
    todo = len(planned - done)
    try:
        if todo > 0:
            contenders = contenders or open_contenders(labels, profiles, progress)
            run_interleaved(
                contenders,
                samples,
                plan.repeat,
                plan.warmup,
                done,
                keep,
                on_event,
                baseline=plan.baseline,
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

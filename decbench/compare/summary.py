"""The summary of a compare run (decbench/compare/v1): a pure function of the plan and the
per-sample records, so records made by several processes, or kept by an interrupted run,
summarise the same way. The numbers come from compare/stats.py; docs/compare.md lists them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from decbench.compare.harness import SampleRecord, planned_keys
from decbench.compare.plan import Plan, plan_profiles
from decbench.compare.shard import RanksSummary
from decbench.compare.stats import OVERALL, GroupMetrics, ProfileResults, aggregate
from decbench.compare.store import SUMMARY_FILE, record_key
from decbench.decoders.registry import get_decoder
from decbench.environment import environment
from decbench.errors import unknown
from decbench.jsonrecord import OMIT_NONE, JsonRecord, read_json
from decbench.profiles import Profile
from decbench.suites import SuiteInfo

SCHEMA_COMPARE = "decbench/compare/v1"


@dataclass
class ProfileEntry(JsonRecord):
    """Who ran under a label: the method, its settings, the model and where it ran."""

    label: str
    method: str
    source: str  # the profile file, or the method name
    lossless: bool
    reference: bool  # a reference implementation (transformers' own)
    model: str
    model_fingerprint: str | None
    device: str
    dtype: str
    kernels: Any
    params: dict[str, Any]  # the method's options
    sampling: dict[str, Any]
    generation: dict[str, Any]


@dataclass(kw_only=True)
class CompareSummary(JsonRecord):
    schema: str = SCHEMA_COMPARE
    suite: SuiteInfo
    selection: dict[str, Any]  # categories and limit as asked
    baseline: str
    profiles: list[ProfileEntry]
    repeat: int
    warmup: int
    complete: bool  # every planned record is present
    records: int
    expected_records: int
    environment: dict[str, Any]
    results: dict[str, ProfileResults]  # by profile label
    output_dir: str | None
    ranks: RanksSummary | None = field(default=None, metadata=OMIT_NONE)  # sharded runs

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.profiles]

    @property
    def groups(self) -> list[str]:
        """The rows of the results table: each category, then OVERALL when there are several."""
        categories = list(self.suite.categories)
        return [*categories, OVERALL] if len(categories) > 1 else categories

    def overall(self, label: str) -> GroupMetrics:
        return self.results[label].overall


def read_summary(folder: Path) -> CompareSummary:
    """The summary.json of a compare --output folder."""
    path = folder / SUMMARY_FILE
    return CompareSummary.from_json(read_json(path), str(path))


def summarize(
    plan: Plan,
    records: list[SampleRecord],
    output_dir: Path | None = None,
    baseline: str | None = None,
) -> CompareSummary:
    """The decbench/compare/v1 summary: a pure function of the plan and the records."""
    labels, profiles = plan_profiles(plan)
    baseline = baseline or plan.baseline
    if baseline not in labels:
        raise unknown("baseline", baseline, labels, where="--baseline")
    suite = plan.suite.info()
    expected = len(planned_keys(labels, plan.samples, plan.repeat))
    base_profile = profiles[labels.index(baseline)]
    return CompareSummary(
        suite=suite,
        selection=plan.selection,
        baseline=baseline,
        profiles=[
            profile_entry(label, p, records) for label, p in zip(labels, profiles, strict=True)
        ],
        repeat=plan.repeat,
        warmup=plan.warmup,
        complete=len({record_key(r) for r in records}) >= expected,
        records=len(records),
        expected_records=expected,
        environment=environment(
            base_profile.backend.device,
            base_profile.backend.dtype,
            model=base_profile.model.name,
            seed=base_profile.sampling.seed,
        ),
        results=aggregate(records, labels, baseline, suite.categories),
        output_dir=str(output_dir) if output_dir else None,
    )


def profile_entry(label: str, profile: Profile, records: list[SampleRecord]) -> ProfileEntry:
    decoder = get_decoder(profile.method)
    env = next((r.environment for r in records if r.profile == label), {})
    return ProfileEntry(
        label=label,
        method=profile.method,
        source=profile.source,
        lossless=decoder.is_lossless(profile.options),
        reference=decoder.spec.reference,
        model=profile.model.name,
        model_fingerprint=env.get("model_fingerprint"),
        device=profile.backend.device,
        dtype=profile.backend.dtype,
        kernels=env.get("kernels"),
        params=dataclasses.asdict(profile.options),
        sampling=dataclasses.asdict(profile.sampling),
        generation=dataclasses.asdict(profile.generation),
    )

"""The arithmetic of `compare`, on the per-sample records (decbench/sample/v1).

- Tokens are counted from generated ids (`new_tokens`), identically for every method.
- A *pair* is the baseline's and a method's run of the same sample in the same repeat. Its
  speedup is the ratio of their tokens per second (for identical outputs, the ratio of wall
  times). A group's speedup is the median over its pairs, with the spread.
- Exact match compares every turn's generated ids with the baseline's; the first divergence is
  the index of the first differing token over all turns.
- Forward calls per token are pooled: the forwards of the target model (prefill included) summed
  over a group's records, divided by the tokens they generated. Greedy gives exactly 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from decbench.compare.divergence import NEAR_TIE, Divergence
from decbench.compare.harness import SampleRecord
from decbench.errors import ConfigError
from decbench.jsonrecord import EMPTY_IS_NONE, OMIT_NONE, JsonRecord, decode_fields
from decbench.metrics import quality
from decbench.metrics.acceptance import AcceptanceStats
from decbench.metrics.quality import first_divergence

OVERALL = "overall"

Key = tuple[str, int]  # (sample_id, repeat)
DIAGNOSIS_KEYS = ("turn", "position", "token", "baseline_token", "margin", "gap", "near_tie")


# -- what compare reports (decbench/compare/v1 `results`; docs/compare.md) -----------------------
@dataclass
class Spread(JsonRecord):
    """Median, quartiles and range of a list of numbers."""

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int


@dataclass
class DivergedPair(JsonRecord):
    """A method's record whose tokens left the baseline's, at flat `index` over all turns, with
    the record's diagnosis (compare/divergence.py) when it was made against this baseline. In
    JSON the diagnosis' fields sit beside `index` (DIAGNOSIS_KEYS)."""

    sample_id: str
    repeat: int
    index: int
    diagnosis: Divergence | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"sample_id": self.sample_id, "repeat": self.repeat}
        data["index"] = self.index
        if self.diagnosis is not None:
            data.update({k: getattr(self.diagnosis, k) for k in DIAGNOSIS_KEYS})
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "") -> DivergedPair:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        own = {k: v for k, v in data.items() if k not in DIAGNOSIS_KEYS}
        pair = decode_fields(cls, own, where or "diverged pair", "")
        if "near_tie" in data:
            keys = {k: data.get(k) for k in DIAGNOSIS_KEYS}
            pair.diagnosis = Divergence.from_json({**keys, "index": pair.index}, where)
        return pair


@dataclass
class FirstDivergence(JsonRecord):
    min: int | None
    median: float | None
    diverged: list[DivergedPair]
    near_ties: int  # divergences that were near-ties of the target
    not_near_ties: int
    unjudged: int  # sampled runs, or records without a diagnosis
    near_tie_threshold: float


@dataclass
class ExactMatch(JsonRecord):
    """The share of a method's records token-identical to the baseline's (same sample, repeat)."""

    rate: float | None
    matched: int
    pairs: int
    first_divergence: FirstDivergence


@dataclass
class GreedyAgreement(JsonRecord):
    """A lossy method's outputs against greedy's on the same sample and repeat."""

    pairs: int
    identical: float
    match_fraction: float
    first_divergence_median: float | None
    answer_agreement: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class TextQuality(JsonRecord):
    """Means of the per-turn quality metrics (metrics/quality.py), pooled distinct-n and the
    agreement with greedy. A metric no turn had is absent (coherence without a scorer,
    exact_answer without references)."""

    coherence: float | None = field(default=None, metadata=OMIT_NONE)
    distinct_1: float | None = field(default=None, metadata=OMIT_NONE)
    distinct_2: float | None = field(default=None, metadata=OMIT_NONE)
    diversity: float | None = field(default=None, metadata=OMIT_NONE)
    exact_answer: float | None = field(default=None, metadata=OMIT_NONE)
    length: float | None = field(default=None, metadata=OMIT_NONE)
    rep_2: float | None = field(default=None, metadata=OMIT_NONE)
    rep_3: float | None = field(default=None, metadata=OMIT_NONE)
    rep_4: float | None = field(default=None, metadata=OMIT_NONE)
    corpus_distinct_1: float | None = field(default=None, metadata=OMIT_NONE)
    corpus_distinct_2: float | None = field(default=None, metadata=OMIT_NONE)
    agreement_with_greedy: GreedyAgreement | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class ConstraintMetrics(JsonRecord):
    """Pooled over every constrained turn of a group (metrics/constraint.py)."""

    kind: str
    outputs: int
    satisfied: float  # share of outputs that satisfy the constraint
    mask_s: float
    mask_ms_per_step: float | None
    mask_share: float | None  # mask time / generation time
    drafted: int
    pruned: int
    pruned_share: float | None


@dataclass
class GroupMetrics(JsonRecord):
    """Every number `compare` reports for one profile over one group of records."""

    runs: int
    tokens: int
    wall_time_s: float
    tokens_per_s: Spread | None
    mat: float | None  # tokens per target step, the bonus token included
    acceptance_rate: float | None
    steps: int
    drafted: int
    accepted: int
    forward_calls: int | None  # None when a record lacks them (written before they were counted)
    forward_calls_per_token: float | None
    peak_memory_mb: float | None
    peak_memory_delta_mb: float | None
    quality: TextQuality | None = field(default=None, metadata=EMPTY_IS_NONE)
    constraint: ConstraintMetrics | None = field(default=None, metadata=EMPTY_IS_NONE)
    speedup: Spread | None = None  # paired; None for the baseline
    speedup_total: float | None = None
    exact_match: ExactMatch | None = None  # None for the baseline


@dataclass
class ProfileResults(JsonRecord):
    overall: GroupMetrics
    categories: dict[str, GroupMetrics]

    def group(self, name: str) -> GroupMetrics:
        """The metrics of one category, or of every record (OVERALL)."""
        return self.overall if name == OVERALL else self.categories[name]


def spread(values: Sequence[float]) -> Spread | None:
    """Median, quartiles and range of a list of numbers; None when empty."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    return Spread(
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        min=float(array.min()),
        max=float(array.max()),
        n=len(values),
    )


def tokens(record: SampleRecord) -> int:
    return int(sum(record.new_tokens))


def wall_time(record: SampleRecord) -> float:
    return float(sum(record.wall_time))


def tokens_per_s(record: SampleRecord) -> float:
    seconds = wall_time(record)
    return tokens(record) / seconds if seconds > 0 else 0.0


def key(record: SampleRecord) -> Key:
    return (record.sample_id, record.repeat)


def by_key(records: Iterable[SampleRecord]) -> dict[Key, SampleRecord]:
    return {key(r): r for r in records}


def pair_speedups(method: Iterable[SampleRecord], baseline: dict[Key, SampleRecord]) -> list[float]:
    """Per pair: method tokens/s over baseline tokens/s. Unpaired records are skipped."""
    ratios = []
    for record in method:
        base = baseline.get(key(record))
        if base is None:
            continue
        base_tps = tokens_per_s(base)
        if base_tps > 0:
            ratios.append(tokens_per_s(record) / base_tps)
    return ratios


def total_speedup(
    method: Iterable[SampleRecord], baseline: dict[Key, SampleRecord]
) -> float | None:
    """Ratio of aggregate throughputs over the paired runs (sum tokens / sum time)."""
    pairs = [(r, baseline[key(r)]) for r in method if key(r) in baseline]
    if not pairs:
        return None
    method_tps = sum(tokens(r) for r, _ in pairs) / max(sum(wall_time(r) for r, _ in pairs), 1e-12)
    base_tps = sum(tokens(b) for _, b in pairs) / max(sum(wall_time(b) for _, b in pairs), 1e-12)
    return method_tps / base_tps if base_tps > 0 else None


def exact_match(method: Iterable[SampleRecord], baseline: dict[Key, SampleRecord]) -> ExactMatch:
    matched = 0
    diverged: list[DivergedPair] = []
    for record in method:
        base = baseline.get(key(record))
        if base is None:
            continue
        index = first_divergence(record.all_token_ids, base.all_token_ids)
        if index is None:
            matched += 1
        else:
            sample_id, repeat = key(record)
            pair = DivergedPair(sample_id, repeat, index)
            diagnosis = record.divergence
            if diagnosis and diagnosis.against == base.profile:
                pair.diagnosis = dataclasses.replace(diagnosis, against=None)
            diverged.append(pair)
    pairs = matched + len(diverged)
    indices = [d.index for d in diverged]
    return ExactMatch(
        rate=matched / pairs if pairs else None,
        matched=matched,
        pairs=pairs,
        first_divergence=first_divergences(diverged, indices),
    )


def first_divergences(diverged: list[DivergedPair], indices: list[int]) -> FirstDivergence:
    """Where the diverged pairs left the baseline, and how many are near-ties of the target
    (compare/divergence.py), how many are not, and how many could not be judged (sampled runs,
    or records without a diagnosis)."""
    judged = [d.diagnosis for d in diverged if d.diagnosis is not None]
    ties = sum(bool(d.near_tie) for d in judged)
    return FirstDivergence(
        min=min(indices) if indices else None,
        median=float(np.median(indices)) if indices else None,
        diverged=diverged,
        near_ties=ties,
        not_near_ties=len(judged) - ties,
        unjudged=len(diverged) - len(judged),
        near_tie_threshold=NEAR_TIE,
    )


def merged_stats(records: Iterable[SampleRecord]) -> AcceptanceStats:
    """The acceptance statistics of records (their summed `stats`), merged."""
    stats = AcceptanceStats()
    for record in records:
        stats.merge(record.stats)
    return stats


def forwards_per_token(records: Sequence[SampleRecord]) -> tuple[int | None, float | None]:
    """Target-model forwards (prefill included; decbench/measure.py) and their ratio to
    generated tokens, both pooled over the records: sum of forwards / sum of new tokens. None
    when a record does not carry `forward_calls` (written before decbench counted them)."""
    if any(r.forward_calls is None for r in records):
        return None, None
    forwards = sum(sum(r.forward_calls or []) for r in records)
    generated = sum(tokens(r) for r in records)
    return forwards, forwards / generated if generated else None


def text_quality(
    records: Sequence[SampleRecord], greedy: dict[Key, SampleRecord] | None
) -> TextQuality | None:
    """Means over all turns of the per-turn quality metrics (decbench/metrics/quality.py),
    distinct-n with the n-grams of every output pooled, and, for lossy methods when a greedy
    profile ran, agreement with greedy's output on the same sample and repeat. None when no
    record carries quality."""
    records = sorted(records, key=key)  # a pure function of the set of records, in any order
    turns = [t for r in records for t in r.quality or []]
    if not turns:
        return None
    means = quality.aggregate(turns)
    outputs = [ids for r in records for ids in r.token_ids]
    for n in quality.DISTINCT_ORDERS:
        means[f"corpus_distinct_{n}"] = quality.corpus_distinct(outputs, n)
    known = {f.name for f in dataclasses.fields(TextQuality)}
    out = TextQuality(**{name: value for name, value in means.items() if name in known})
    pairs = [(r, greedy[key(r)]) for r in records if greedy and key(r) in greedy]
    if pairs and not records[0].lossless:
        out.agreement_with_greedy = greedy_agreement(pairs)
    return out


def greedy_agreement(pairs: list[tuple[SampleRecord, SampleRecord]]) -> GreedyAgreement:
    """(record, greedy's record) pairs: the share identical, the mean share of matching
    positions, the median first divergence, and the share of equal answers (first lines)."""
    agreements = [quality.agreement(r.all_token_ids, g.all_token_ids) for r, g in pairs]
    divergences = [a["first_divergence"] for a in agreements]
    diverged = [d for d in divergences if d is not None]
    same_answer = [
        all(
            quality.normalize_answer(a) == quality.normalize_answer(b)
            for a, b in zip(r.turns, g.turns, strict=False)
        )
        for r, g in pairs
    ]
    return GreedyAgreement(
        pairs=len(pairs),
        identical=divergences.count(None) / len(pairs),
        match_fraction=sum(a["match_fraction"] for a in agreements) / len(pairs),
        first_divergence_median=float(np.median(diverged)) if diverged else None,
        answer_agreement=sum(same_answer) / len(same_answer) if same_answer else None,
    )


def constraint_metrics(records: Sequence[SampleRecord]) -> ConstraintMetrics | None:
    """Pooled over every constrained turn (metrics/constraint.py): the share of outputs that
    satisfy the constraint, mask time per decoding step and as a share of generation time, and
    the share of draft tokens pruned. None when no record ran under a constraint."""
    turns = [c for r in records for c in r.constraint or [] if c]
    if not turns:
        return None
    mask_s = sum(c["mask_s"] for c in turns)
    steps = sum(sum(r.decoding_steps) for r in records)
    wall = sum(wall_time(r) for r in records)
    drafted = sum(c["drafted"] for c in turns)
    pruned = sum(c["pruned"] for c in turns)
    return ConstraintMetrics(
        kind=turns[0]["kind"],
        outputs=len(turns),
        satisfied=sum(bool(c["satisfied"]) for c in turns) / len(turns),
        mask_s=mask_s,
        mask_ms_per_step=1000 * mask_s / steps if steps else None,
        mask_share=mask_s / wall if wall > 0 else None,
        drafted=drafted,
        pruned=pruned,
        pruned_share=pruned / drafted if drafted else None,
    )


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def group_metrics(
    records: Sequence[SampleRecord],
    baseline: dict[Key, SampleRecord] | None,
    greedy: dict[Key, SampleRecord] | None = None,
) -> GroupMetrics:
    """Every number `compare` reports for one profile over one group of records. `baseline` is
    None for the baseline itself; `greedy` indexes a greedy profile's records, when one ran."""
    stats = merged_stats(records)
    forwards, per_token = forwards_per_token(records)
    metrics = GroupMetrics(
        runs=len(records),
        tokens=sum(tokens(r) for r in records),
        wall_time_s=sum(wall_time(r) for r in records),
        tokens_per_s=spread([tokens_per_s(r) for r in records]),
        mat=stats.mat,
        acceptance_rate=stats.acceptance_rate,
        steps=stats.steps,
        drafted=stats.drafted,
        accepted=stats.accepted,
        forward_calls=forwards,
        forward_calls_per_token=per_token,
        peak_memory_mb=_max(r.memory.peak_mb for r in records),
        peak_memory_delta_mb=_max(r.memory.peak_delta_mb for r in records),
        quality=text_quality(records, greedy),
        constraint=constraint_metrics(records),
    )
    if baseline is not None:
        metrics.speedup = spread(pair_speedups(records, baseline))
        metrics.speedup_total = total_speedup(records, baseline)
        metrics.exact_match = exact_match(records, baseline)
    return metrics


def _method(records: Sequence[SampleRecord]) -> str | None:
    return records[0].method if records else None


def aggregate(
    records: Sequence[SampleRecord],
    labels: Sequence[str],
    baseline: str,
    categories: Sequence[str],
) -> dict[str, ProfileResults]:
    """profile label -> its metrics over all records and per category."""
    by_profile = {label: [r for r in records if r.profile == label] for label in labels}
    base_index = by_key(by_profile[baseline])
    greedy_label = next((la for la in labels if _method(by_profile[la]) == "greedy"), None)
    greedy = by_key(by_profile[greedy_label]) if greedy_label else None
    results = {}
    for label in labels:
        own = by_profile[label]
        reference = None if label == baseline else base_index
        results[label] = ProfileResults(
            overall=group_metrics(own, reference, greedy),
            categories={
                category: group_metrics(
                    [r for r in own if r.category == category], reference, greedy
                )
                for category in categories
            },
        )
    return results

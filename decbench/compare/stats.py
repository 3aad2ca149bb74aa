"""The arithmetic of `compare`, on plain per-sample records (decbench/sample/v1).

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

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from decbench.compare.divergence import NEAR_TIE
from decbench.metrics import quality
from decbench.metrics.acceptance import AcceptanceStats
from decbench.metrics.quality import first_divergence

OVERALL = "overall"

Key = tuple[str, int]  # (sample_id, repeat)
DIAGNOSIS_KEYS = ("turn", "position", "token", "baseline_token", "margin", "gap", "near_tie")


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, quartiles and range of a list of numbers; None when empty."""
    if not values:
        return None
    array = np.asarray(values, dtype=float)
    q1, median, q3 = np.percentile(array, [25, 50, 75])
    return {
        "median": float(median),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(array.min()),
        "max": float(array.max()),
        "n": len(values),
    }


def tokens(record: dict[str, Any]) -> int:
    return int(sum(record["new_tokens"]))


def wall_time(record: dict[str, Any]) -> float:
    return float(sum(record["wall_time"]))


def tokens_per_s(record: dict[str, Any]) -> float:
    seconds = wall_time(record)
    return tokens(record) / seconds if seconds > 0 else 0.0


def flat_ids(record: dict[str, Any]) -> list[int]:
    return [token for turn in record["token_ids"] for token in turn]


def key(record: dict[str, Any]) -> Key:
    return (str(record["sample_id"]), int(record["repeat"]))


def by_key(records: Iterable[dict[str, Any]]) -> dict[Key, dict[str, Any]]:
    return {key(r): r for r in records}


def pair_speedups(
    method: Iterable[dict[str, Any]], baseline: dict[Key, dict[str, Any]]
) -> list[float]:
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
    method: Iterable[dict[str, Any]], baseline: dict[Key, dict[str, Any]]
) -> float | None:
    """Ratio of aggregate throughputs over the paired runs (sum tokens / sum time)."""
    pairs = [(r, baseline[key(r)]) for r in method if key(r) in baseline]
    if not pairs:
        return None
    method_tps = sum(tokens(r) for r, _ in pairs) / max(sum(wall_time(r) for r, _ in pairs), 1e-12)
    base_tps = sum(tokens(b) for _, b in pairs) / max(sum(wall_time(b) for _, b in pairs), 1e-12)
    return method_tps / base_tps if base_tps > 0 else None


def exact_match(
    method: Iterable[dict[str, Any]], baseline: dict[Key, dict[str, Any]]
) -> dict[str, Any]:
    matched = 0
    diverged = []
    for record in method:
        base = baseline.get(key(record))
        if base is None:
            continue
        index = first_divergence(flat_ids(record), flat_ids(base))
        if index is None:
            matched += 1
        else:
            sample_id, repeat = key(record)
            entry = {"sample_id": sample_id, "repeat": repeat, "index": index}
            diagnosis = record.get("divergence")
            if diagnosis and diagnosis.get("against") == base["profile"]:
                entry.update({k: diagnosis[k] for k in DIAGNOSIS_KEYS})
            diverged.append(entry)
    pairs = matched + len(diverged)
    indices = [d["index"] for d in diverged]
    return {
        "rate": matched / pairs if pairs else None,
        "matched": matched,
        "pairs": pairs,
        "first_divergence": {
            "min": min(indices) if indices else None,
            "median": float(np.median(indices)) if indices else None,
            "diverged": diverged,
            **near_ties(diverged),
        },
    }


def near_ties(diverged: list[dict[str, Any]]) -> dict[str, Any]:
    """How many divergences are near-ties of the target (compare/divergence.py), how many are
    not, and how many could not be judged (sampled runs, or records without a diagnosis)."""
    judged = [d for d in diverged if "near_tie" in d]
    ties = sum(bool(d["near_tie"]) for d in judged)
    return {
        "near_ties": ties,
        "not_near_ties": len(judged) - ties,
        "unjudged": len(diverged) - len(judged),
        "near_tie_threshold": NEAR_TIE,
    }


def merged_stats(records: Iterable[dict[str, Any]]) -> AcceptanceStats:
    """The acceptance statistics of records (their summed `stats`), merged."""
    stats = AcceptanceStats()
    for record in records:
        stats.merge(AcceptanceStats.from_totals(record["stats"]))
    return stats


def acceptance(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """MAT (committed tokens per target step, including the bonus token) and acceptance rate,
    from the records' merged step statistics (decbench/metrics/acceptance.py)."""
    stats = merged_stats(records)
    return {
        "mat": stats.mat,
        "acceptance_rate": stats.acceptance_rate,
        "steps": stats.steps,
        "drafted": stats.drafted,
        "accepted": stats.accepted,
    }


def forwards_per_token(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Target-model forwards (prefill included; decbench/measure.py) and their ratio to
    generated tokens, both pooled over the records: sum of forwards / sum of new tokens. None
    when a record does not carry `forward_calls` (written before decbench counted them)."""
    if any("forward_calls" not in r for r in records):
        return {"forward_calls": None, "forward_calls_per_token": None}
    forwards = sum(sum(r["forward_calls"]) for r in records)
    generated = sum(tokens(r) for r in records)
    return {
        "forward_calls": forwards,
        "forward_calls_per_token": forwards / generated if generated else None,
    }


def text_quality(
    records: Sequence[dict[str, Any]], greedy: dict[Key, dict[str, Any]] | None
) -> dict[str, Any]:
    """Means over all turns of the per-turn quality metrics (decbench/metrics/quality.py),
    distinct-n with the n-grams of every output pooled, and, for lossy methods when a greedy
    profile ran, agreement with greedy's output on the same sample and repeat."""
    records = sorted(records, key=key)  # a pure function of the set of records, in any order
    turns = [t for r in records for t in r.get("quality", [])]
    if not turns:
        return {}
    out = quality.aggregate(turns)
    outputs = [ids for r in records for ids in r["token_ids"]]
    for n in quality.DISTINCT_ORDERS:
        out[f"corpus_distinct_{n}"] = quality.corpus_distinct(outputs, n)
    pairs = [(r, greedy[key(r)]) for r in records if greedy and key(r) in greedy]
    if pairs and not records[0].get("lossless", True):
        agreements = [quality.agreement(flat_ids(r), flat_ids(g)) for r, g in pairs]
        divergences = [a["first_divergence"] for a in agreements]
        diverged = [d for d in divergences if d is not None]
        same_answer = [
            all(
                quality.normalize_answer(a) == quality.normalize_answer(b)
                for a, b in zip(r["turns"], g["turns"], strict=False)
            )
            for r, g in pairs
            if "turns" in r and "turns" in g
        ]
        out["agreement_with_greedy"] = {
            "pairs": len(pairs),
            "identical": divergences.count(None) / len(pairs),
            "match_fraction": sum(a["match_fraction"] for a in agreements) / len(pairs),
            "first_divergence_median": float(np.median(diverged)) if diverged else None,
        }
        if same_answer:  # the share whose normalised answers (first lines) are greedy's
            out["agreement_with_greedy"]["answer_agreement"] = sum(same_answer) / len(same_answer)
    return out


def constraint_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pooled over every constrained turn (metrics/constraint.py): the share of outputs that
    satisfy the constraint, mask time per decoding step and as a share of generation time, and
    the share of draft tokens pruned. {} when no record ran under a constraint."""
    turns = [c for r in records for c in r.get("constraint") or [] if c]
    if not turns:
        return {}
    mask_s = sum(c["mask_s"] for c in turns)
    steps = sum(sum(r["decoding_steps"]) for r in records)
    wall = sum(wall_time(r) for r in records)
    drafted = sum(c["drafted"] for c in turns)
    return {
        "kind": turns[0]["kind"],
        "outputs": len(turns),
        "satisfied": sum(bool(c["satisfied"]) for c in turns) / len(turns),
        "mask_s": mask_s,
        "mask_ms_per_step": 1000 * mask_s / steps if steps else None,
        "mask_share": mask_s / wall if wall > 0 else None,
        "drafted": drafted,
        "pruned": sum(c["pruned"] for c in turns),
        "pruned_share": sum(c["pruned"] for c in turns) / drafted if drafted else None,
    }


def _max(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def group_metrics(
    records: Sequence[dict[str, Any]],
    baseline: dict[Key, dict[str, Any]] | None,
    greedy: dict[Key, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every number `compare` reports for one profile over one group of records. `baseline` is
    None for the baseline itself; `greedy` indexes a greedy profile's records, when one ran."""
    metrics: dict[str, Any] = {
        "runs": len(records),
        "tokens": sum(tokens(r) for r in records),
        "wall_time_s": sum(wall_time(r) for r in records),
        "tokens_per_s": spread([tokens_per_s(r) for r in records]),
        **acceptance(records),
        **forwards_per_token(records),
        "peak_memory_mb": _max(r["memory"]["peak_mb"] for r in records),
        "peak_memory_delta_mb": _max(r["memory"]["peak_delta_mb"] for r in records),
        "quality": text_quality(records, greedy),
        "constraint": constraint_metrics(records),
    }
    if baseline is None:
        metrics.update(speedup=None, speedup_total=None, exact_match=None)
    else:
        metrics.update(
            speedup=spread(pair_speedups(records, baseline)),
            speedup_total=total_speedup(records, baseline),
            exact_match=exact_match(records, baseline),
        )
    return metrics


def _method(records: Sequence[dict[str, Any]]) -> str | None:
    return records[0].get("method") if records else None


def aggregate(
    records: Sequence[dict[str, Any]],
    labels: Sequence[str],
    baseline: str,
    categories: Sequence[str],
) -> dict[str, dict[str, Any]]:
    """profile label -> {"overall": metrics, "categories": {category: metrics}}."""
    by_profile = {label: [r for r in records if r["profile"] == label] for label in labels}
    base_index = by_key(by_profile[baseline])
    greedy_label = next((la for la in labels if _method(by_profile[la]) == "greedy"), None)
    greedy = by_key(by_profile[greedy_label]) if greedy_label else None
    results = {}
    for label in labels:
        own = by_profile[label]
        reference = None if label == baseline else base_index
        results[label] = {
            OVERALL: group_metrics(own, reference, greedy),
            "categories": {
                category: group_metrics(
                    [r for r in own if r["category"] == category], reference, greedy
                )
                for category in categories
            },
        }
    return results

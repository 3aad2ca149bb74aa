"""Constraint statistics of one generation: mask time, drafts pruned, whether the output
satisfies the constraint. STATIC (Su et al. 2025) reports its mask time as a share of inference
time (0.25%); `mask_share` is ours, measured the same way (mask seconds / generation seconds)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class ConstraintStats:
    masks: int = 0  # mask rows computed (one per sampled position, one per verified row)
    mask_calls: int = 0  # times the decoder asked for masks (once per step, more for trees)
    drafted: int = 0  # draft tokens the proposer offered, before pruning
    pruned: int = 0  # of those, cut because the constraint does not allow them

    @classmethod
    def new(cls) -> ConstraintStats:
        return cls()

    def observe_masks(self, rows: int) -> None:
        self.masks += rows
        self.mask_calls += 1

    def observe_draft(self, offered: int, kept: int) -> None:
        self.drafted += offered
        self.pruned += offered - kept


def summarize(
    stats: ConstraintStats,
    kind: str,
    source: str,
    satisfied: bool,
    mask_s: float,
    total_s: float,
    steps: int,
) -> dict[str, Any]:
    """The per-generation numbers that go into results and JSON (and compare's table)."""
    data = asdict(stats)
    data.update(
        kind=kind,
        source=source,
        satisfied=satisfied,
        mask_s=mask_s,
        mask_ms_per_step=1000 * mask_s / steps if steps else 0.0,
        mask_share=mask_s / total_s if total_s > 0 else 0.0,
        pruned_share=stats.pruned / stats.drafted if stats.drafted else None,
    )
    return data


def search_summary(result: Any, kind: str, source: str, steps: int) -> dict:
    """result.constraint for a method whose own search honours the constraint: the fields
    compare's constraint table pools (metrics/constraint.py), with the search's bookkeeping
    seconds as its mask time and no drafts."""
    stats = result.stats["constraint"]
    return summarize(
        ConstraintStats(),
        kind,
        source,
        bool(stats["satisfied"]),
        stats["bookkeeping_s"],
        result.timings.total_s,
        steps,
    )

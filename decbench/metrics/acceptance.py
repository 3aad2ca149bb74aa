"""Acceptance statistics from the step trace: the one place where MAT, acceptance rates,
per-position acceptance and the accept-length histogram are computed (MAT is defined in
decbench/results.py).

An `AcceptanceStats` observes steps one by one (a decoder's GenerationState does, as it commits)
and merges with others (a compare record sums its turns; a compare group or a profile report
sums its records). Dicts exist only at the JSON boundary: `summary()` for a generation's
`stats`, `totals()` / `from_totals()` for the summable counts a compare record stores.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from decbench.jsonrecord import JsonRecord
from decbench.results import StepTrace

# The summable counts a decbench/sample/v1 record stores under "stats" (and reads back).
TOTALS = (
    "steps",
    "emitted",
    "drafted",
    "accepted",
    "drafted_steps",
    "rejected_steps",
    "verified_tokens",
    "position_offered",
    "position_accepted",
)


def _add_lists(own: list[int], other: list[int]) -> None:
    own.extend([0] * (len(other) - len(own)))
    for i, value in enumerate(other):
        own[i] += value


@dataclass
class PositionRate(JsonRecord):
    """Of the drafts that reached draft position `position` (1-based), how many were accepted."""

    position: int
    offered: int
    accepted: int
    rate: float | None  # None when no draft reached the position


@dataclass
class AcceptanceStats:
    steps: int = 0  # target forward passes that committed tokens
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    drafted_steps: int = 0  # steps that had a non-empty draft
    # steps where a draft token was rejected: the failed trials of Leviathan's geometric model
    rejected_steps: int = 0
    # tokens the target verified per step, summed: the pending token + draft (or tree nodes)
    verified_tokens: int = 0
    position_offered: list[int] = field(default_factory=list)  # [k_max] drafts at position i
    position_accepted: list[int] = field(default_factory=list)  # [k_max] accepted at position i
    length_histogram: dict[int, int] = field(default_factory=dict)  # tokens per step -> steps
    phase_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def new(cls) -> AcceptanceStats:
        return cls()

    @classmethod
    def from_steps(cls, steps: Iterable[StepTrace]) -> AcceptanceStats:
        stats = cls()
        for step in steps:
            stats.observe_step(step)
        return stats

    @classmethod
    def from_totals(cls, data: dict[str, Any]) -> AcceptanceStats:
        """Back from a record's `stats` (see TOTALS); absent counts are 0."""
        stats = cls()
        for name in TOTALS:
            value = data.get(name)
            if value is not None:
                setattr(stats, name, list(value) if isinstance(value, list) else int(value))
        return stats

    def observe_step(self, step: StepTrace) -> None:
        k = len(step.drafted)
        self.steps += 1
        self.drafted += k
        self.accepted += step.accepted
        self.emitted += step.emitted
        self.drafted_steps += bool(k)
        self.rejected_steps += bool(k) and step.accepted < k
        self.verified_tokens += 1 + (len(step.tree.tokens) if step.tree else k)
        _add_lists(self.position_offered, [1] * k)
        _add_lists(self.position_accepted, [int(i < step.accepted) for i in range(k)])
        self.length_histogram[step.emitted] = self.length_histogram.get(step.emitted, 0) + 1
        for name, seconds in step.times.items():
            self.phase_s[name] = self.phase_s.get(name, 0.0) + seconds

    def merge(self, other: AcceptanceStats) -> AcceptanceStats:
        """Add `other`'s counts into this one; returns self."""
        for name in TOTALS:
            value = getattr(other, name)
            if isinstance(value, list):
                _add_lists(getattr(self, name), value)
            else:
                setattr(self, name, getattr(self, name) + value)
        for length, count in other.length_histogram.items():
            self.length_histogram[length] = self.length_histogram.get(length, 0) + count
        for name, seconds in other.phase_s.items():
            self.phase_s[name] = self.phase_s.get(name, 0.0) + seconds
        return self

    # -- derived numbers (computed nowhere else) -------------------------------------------------
    @property
    def mat(self) -> float | None:
        """Committed tokens per target step, the bonus token included; None without steps."""
        return self.emitted / self.steps if self.steps else None

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    @property
    def position_rates(self) -> list[float | None]:
        """Acceptance rate of draft position i (1-based position i + 1)."""
        return [
            a / o if o else None
            for a, o in zip(self.position_accepted, self.position_offered, strict=True)
        ]

    def position_table(self) -> list[PositionRate]:
        """`profile`'s per-position rows."""
        return [
            PositionRate(i + 1, o, a, rate)
            for i, (o, a, rate) in enumerate(
                zip(self.position_offered, self.position_accepted, self.position_rates, strict=True)
            )
        ]

    # -- the JSON boundary -----------------------------------------------------------------------
    def totals(self) -> dict[str, Any]:
        """The summable counts a compare record stores (TOTALS)."""
        return {
            name: list(v) if isinstance(v := getattr(self, name), list) else v for name in TOTALS
        }

    def summary(self) -> dict[str, Any]:
        """A generation's `stats`: every count, plus MAT, rates and the histogram."""
        return {
            "steps": self.steps,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "emitted": self.emitted,
            "drafted_steps": self.drafted_steps,
            "position_offered": list(self.position_offered),
            "position_accepted": list(self.position_accepted),
            "length_histogram": {str(k): v for k, v in sorted(self.length_histogram.items())},
            "phase_s": dict(self.phase_s),
            "mat": self.mat or 0.0,
            "acceptance_rate": self.acceptance_rate,
            "position_acceptance": self.position_rates,
        }

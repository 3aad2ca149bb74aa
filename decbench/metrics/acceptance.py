"""Acceptance statistics from the step trace. MAT is defined in decbench/results.py."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from decbench.results import StepTrace


@dataclass
class AcceptanceStats:
    steps: int = 0  # target forward passes that committed tokens
    drafted: int = 0
    accepted: int = 0
    emitted: int = 0
    drafted_steps: int = 0  # steps that had a non-empty draft
    position_offered: list[int] = field(default_factory=list)  # [k_max] drafts at position i
    position_accepted: list[int] = field(default_factory=list)  # [k_max] accepted at position i
    length_histogram: dict[int, int] = field(default_factory=dict)  # tokens per step -> steps
    phase_s: dict[str, float] = field(default_factory=dict)

    @classmethod
    def new(cls) -> AcceptanceStats:
        return cls()

    def observe_step(self, step: StepTrace) -> None:
        self.steps += 1
        self.drafted += len(step.drafted)
        self.accepted += step.accepted
        self.emitted += step.emitted
        self.drafted_steps += bool(step.drafted)
        k = len(step.drafted)
        grow = k - len(self.position_offered)
        if grow > 0:
            self.position_offered += [0] * grow
            self.position_accepted += [0] * grow
        for i in range(k):
            self.position_offered[i] += 1
            self.position_accepted[i] += i < step.accepted
        self.length_histogram[step.emitted] = self.length_histogram.get(step.emitted, 0) + 1
        for name, seconds in step.times.items():
            self.phase_s[name] = self.phase_s.get(name, 0.0) + seconds


def summarize(stats: AcceptanceStats) -> dict[str, Any]:
    """The per-generation numbers that go into results and JSON."""
    data = asdict(stats)
    data["mat"] = stats.emitted / stats.steps if stats.steps else 0.0
    data["acceptance_rate"] = stats.accepted / stats.drafted if stats.drafted else None
    data["position_acceptance"] = [
        a / o if o else None
        for a, o in zip(stats.position_accepted, stats.position_offered, strict=True)
    ]
    data["length_histogram"] = {str(k): v for k, v in sorted(stats.length_histogram.items())}
    return data


def from_steps(steps: list[StepTrace]) -> dict[str, Any]:
    stats = AcceptanceStats.new()
    for step in steps:
        stats.observe_step(step)
    return summarize(stats)

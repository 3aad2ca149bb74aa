"""Tree size from the hardware: how many draft-tree nodes to verify, chosen per step by expected
tokens per second.

Verifying N nodes costs one target forward over N + 1 new tokens, T(N + 1): flat on a GPU for
dozens of tokens, steep on a CPU past a handful (README "Decode kernels"). Verifying them
commits 1 + sum of the kept nodes' acceptance probabilities on average (the bonus token plus
each node that is accepted; a node is accepted only with its whole path). EAGLE-2 (Li et al.
2024) observes that the draft's cumulative confidence c_i (the product of its probabilities
along the node's path) tracks that acceptance probability; here it is calibrated by the
acceptance observed so far in this generation, a_i = r c_i with
r = (accepted + PRIOR) / (sum of c_i over verified nodes + PRIOR). The choice is

    N* = argmax_N (1 + r sum_{i <= N} c_(i)) / (draft seconds per step + T(N + 1)),

c_(i) sorted descending. T comes from a verify-cost curve measured once per runner at a few
sizes (as `decbench profile` measures it: one forward over n new tokens on a prefilled prompt,
median of REPEATS) and interpolated linearly between them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.speculative.proposer import Draft
from decbench.measure import forward_seconds

PRIOR = 2.0  # pseudo-count: r starts at 1 (trust the draft's confidence) and learns from there
REPEATS = 3
MAX_NODES = 64  # the largest tree "auto" considers


class VerifyCosts:
    """T(n), the target's verify time for n new tokens, measured once per runner."""

    def __init__(self, target: ModelRunner) -> None:
        self.target = target
        self.curve: list[dict[str, float]] = []  # [{tokens, median_ms}], as `profile` reports

    @torch.inference_mode()
    def ensure(self, prompt_ids: list[int], largest: int) -> None:
        """Measure at 1, 2, 4, ... up to `largest` tokens (and `largest` itself), unless done.
        Resets the runner's cache: call before the generation's prefill."""
        sizes = sorted({*(2**i for i in range(int(math.log2(max(largest, 1))) + 1)), largest})
        if self.curve and self.curve[-1]["tokens"] >= largest:
            return
        seconds = forward_seconds(self.target, prompt_ids, sizes, REPEATS, warm=1)
        self.curve = [
            {"tokens": n, "median_ms": float(np.median(s)) * 1000} for n, s in seconds.items()
        ]

    def seconds(self, tokens: int) -> float:
        xs = [row["tokens"] for row in self.curve]
        ys = [row["median_ms"] / 1000 for row in self.curve]
        return float(np.interp(tokens, xs, ys))


@dataclass
class TreeSizer:
    """A fixed `nodes`, or "auto": the per-step choice above, with what it was based on."""

    setting: int | str
    costs: VerifyCosts | None
    prompt_ids: list[int]
    accepted: float = 0.0  # tokens accepted over the verified trees
    confidence: float = 0.0  # sum of c_i over the verified trees' nodes
    draft_s: float = 0.0  # seconds spent drafting, over `steps`
    steps: int = 0
    chosen: list[int] = field(default_factory=list)  # [steps] N of each step
    _kept: float = 0.0  # sum of c_i of the last proposed tree
    _started: float = 0.0

    def start(self, largest: int) -> None:
        """Before the generation: measure the verify cost (auto only), then start the clock."""
        if self.costs is not None:
            self.costs.ensure(self.prompt_ids, largest + 1)

    def begin_draft(self) -> None:
        self._started = time.perf_counter()

    def nodes(self, scores: list[float]) -> int:
        """N for this step, given every candidate's log cumulative draft probability."""
        self.draft_s += time.perf_counter() - self._started
        self.steps += 1
        confidence = sorted((math.exp(s) for s in scores), reverse=True)
        if self.costs is None:
            n = min(int(self.setting), len(confidence))
        else:
            n = self.best_size(confidence)
        self._kept = sum(confidence[:n])
        self.chosen.append(n)
        return n

    def best_size(self, confidence: list[float]) -> int:
        assert self.costs is not None
        ratio = self.ratio()
        draft_s = self.draft_s / max(self.steps, 1)
        best, best_rate, expected = 1, -1.0, 1.0
        for n, c in enumerate(confidence[:MAX_NODES], start=1):
            expected += ratio * c
            rate = expected / (draft_s + self.costs.seconds(n + 1))
            if rate > best_rate:
                best, best_rate = n, rate
        return best

    def ratio(self) -> float:
        return (self.accepted + PRIOR) / (self.confidence + PRIOR)

    def observe(self, draft: Draft, path: list[int]) -> None:
        """After a tree verify: how many of the proposed nodes' confidence came true."""
        self.accepted += len(path)
        self.confidence += self._kept
        self._kept = 0.0

    def report(self) -> dict:
        """The choice and its inputs, for the result's stats (`--json`)."""
        out: dict = {"nodes": self.setting, "mean_nodes": float(np.mean(self.chosen or [0]))}
        if self.costs is not None:
            out |= {
                "verify_cost_ms": self.costs.curve,
                "calibration": self.ratio(),
                "draft_ms_per_step": 1000 * self.draft_s / max(self.steps, 1),
                "nodes_histogram": {str(n): self.chosen.count(n) for n in sorted(set(self.chosen))},
            }
        return out

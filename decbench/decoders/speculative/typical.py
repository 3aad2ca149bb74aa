"""Typical acceptance (Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with
Multiple Decoding Heads", 2024, section 2.3.1): a LOSSY tree acceptance rule for sampling.

A candidate token x at a node is accepted when the target finds it plausible enough:
p(x) > min(epsilon, delta * exp(-H(p))), with p the (temperature-warped) target distribution at
the node and H its entropy. Among the tree's paths the longest accepted one wins (the first in
node order on ties); the token after it is drawn from p at its last node. Unlike rejection
sampling it does not preserve the target's distribution: it favours plausible drafts over the
target's own randomness, trading fidelity for longer accepted runs at high temperature. At
temperature 0 the engine uses exact match instead, so greedy output is unchanged.
"""

from __future__ import annotations

import math

import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.proposer import Draft
from decbench.sampler import draw


def typical_threshold(p: torch.Tensor, epsilon: float, delta: float) -> float:
    """min(epsilon, delta * exp(-H(p))) for one distribution p: [vocab]."""
    entropy = -(p * p.clamp_min(1e-30).log()).sum().item()
    return min(epsilon, delta * math.exp(-entropy))


def typical_rule(epsilon: float, delta: float) -> tree.TreeRule:
    """The tree rule for the engine: longest path whose every node passes the threshold."""

    def accept(
        draft: Draft, target_probs: tree.TargetProbs, generator: torch.Generator | None
    ) -> tree.TreeVerdict:
        kids = tree.children(tree.tree_parents(draft))
        memo: dict[int, torch.Tensor] = {}

        def probs(row: int) -> torch.Tensor:
            if row not in memo:
                memo[row] = target_probs(row)
            return memo[row]

        def longest(here: int) -> list[int]:
            """The longest accepted path below `here` (tree.ROOT or a node)."""
            p = probs(here + 1)
            bar = typical_threshold(p, epsilon, delta)
            best: list[int] = []
            for child in kids[here + 1]:
                if p[draft.tokens[child]].item() > bar:
                    below = [child, *longest(child)]
                    if len(below) > len(best):
                        best = below
            return best

        path = longest(tree.ROOT)
        last = path[-1] if path else tree.ROOT
        p = probs(last + 1)
        bonus = int(draw(p, generator))
        return tree.TreeVerdict(path, bonus, False)

    return accept

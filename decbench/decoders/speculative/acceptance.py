"""Acceptance rules: pure functions from (draft, target) to what survives.

- `greedy_match`: accept draft tokens while they equal the target's argmax; the bonus token is
  the argmax at the first mismatch (or after the last draft). Exact under greedy.
- `rejection_sampling` (Leviathan et al., "Fast Inference from Transformers via Speculative
  Decoding", 2023; Chen et al., "Accelerating LLM Decoding with Speculative Sampling", 2023):
  accept draft token x with probability min(1, p(x)/q(x)), else draw the recovered token from
  the normalised residual max(0, p - q). With q = None the draft is treated as one-hot (q(x) = 1),
  which stays lossless for proposers that have no draft distribution (prompt lookup, n-grams).

Notation: p = target probabilities, q = draft probabilities (as in Leviathan et al.).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from decbench.sampler import draw


@dataclass
class Verdict:
    accepted: int  # number of leading draft tokens accepted
    bonus: int  # token appended after them
    recovered: bool  # bonus came from the residual after a rejection


def greedy_match(draft_tokens: list[int], target_argmax: list[int]) -> Verdict:
    """target_argmax: [k+1] the target's choice after the context and after each draft prefix."""
    accepted = 0
    for token, best in zip(draft_tokens, target_argmax, strict=False):
        if token != best:
            break
        accepted += 1
    return Verdict(accepted, target_argmax[accepted], accepted < len(draft_tokens))


def rejection_sampling(
    draft_tokens: list[int],  # [k]
    draft_probs: torch.Tensor | None,  # [k, vocab] q, or None for a one-hot draft
    target_probs: torch.Tensor,  # [k+1, vocab] p
    generator: torch.Generator | None,
) -> Verdict:
    for i, token in enumerate(draft_tokens):
        p = target_probs[i]
        q_token = 1.0 if draft_probs is None else draft_probs[i, token].item()
        ratio = p[token].item() / q_token if q_token > 0 else 0.0
        if torch.rand((), generator=generator).item() < min(1.0, ratio):
            continue
        residual = residual_distribution(p, token, None if draft_probs is None else draft_probs[i])
        recovered = draw(residual, generator).item()
        return Verdict(i, int(recovered), True)
    k = len(draft_tokens)
    bonus = draw(target_probs[k], generator).item()
    return Verdict(k, int(bonus), False)


def residual_distribution(p: torch.Tensor, token: int, q: torch.Tensor | None) -> torch.Tensor:
    """norm(max(0, p - q)); with a one-hot q at `token` that is p with `token` removed."""
    if q is None:
        residual = p.clone()
        residual[token] = 0.0
    else:
        residual = (p - q).clamp_min(0.0)
    total = residual.sum()
    if total <= 0:  # p == q exactly: any rejection is measure-zero; fall back to p
        return p
    return residual / total


SamplingRule = Callable[
    [list[int], torch.Tensor | None, torch.Tensor, torch.Generator | None], Verdict
]

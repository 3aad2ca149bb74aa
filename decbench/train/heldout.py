"""Held-out acceptance of a trained draft, simulated exactly on the target's own greedy
continuations: teacher forcing gives the draft the very contexts decoding would while its
guesses keep matching, so acceptance and MAT need no decoding run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class HeldOut:
    acceptance_rate: float  # accepted / drafted
    mat: float  # mean tokens per target step, bonus included
    sequences: int
    head_top1: list[float] = field(default_factory=list)  # medusa: [heads] top-1 accuracy
    head_top2: list[float] = field(default_factory=list)  # medusa: [heads] top-2 accuracy


@dataclass
class Walk:
    """One held-out sequence: [(accepted, drafted)] per step and, for heads, top-1/2 hits."""

    steps: list[tuple[int, int]]
    hits: torch.Tensor | None = None  # [2, heads] positions where head k's top-1 / top-2 hit
    counts: torch.Tensor | None = None  # [heads] positions scored


def summarize(walks: list[Walk]) -> HeldOut:
    steps = [s for w in walks for s in w.steps]
    accepted = sum(a for a, _ in steps)
    drafted = sum(k for _, k in steps)
    tokens = accepted + len(steps)  # each step also emits the bonus
    top1: list[float] = []
    top2: list[float] = []
    scored = [w for w in walks if w.hits is not None and w.counts is not None]
    if scored:
        hits = torch.stack([w.hits for w in scored]).sum(0)
        counts = torch.stack([w.counts for w in scored]).sum(0)
        top1, top2 = (hits / counts.clamp(min=1)).tolist()
    return HeldOut(accepted / max(drafted, 1), tokens / max(len(steps), 1), len(walks), top1, top2)


def walk_chains(
    truth: list[int],  # prompt + the target's greedy continuation
    start: int,  # the first pending position (the prompt's length)
    depth: int,  # tokens drafted per step (fewer near the end)
    guesses: Callable[[int, int], list[int]],  # (pending c, k) -> guesses for c+1, c+2, ...
    accepted: Callable[[int, int], None] = lambda _c, _a: None,  # told (c, a) after each step
) -> list[tuple[int, int]]:
    """[(accepted, drafted)] of each step of greedy chain drafting along `truth`."""
    steps, c = [], start
    while c < len(truth) - 1:
        k = min(depth, len(truth) - 1 - c)
        guess = guesses(c, k)
        a = 0
        while a < k and guess[a] == truth[c + a + 1]:
            a += 1
        steps.append((a, k))
        accepted(c, a)
        c += a + 1
    return steps


def head_hits(
    head_logits: torch.Tensor,  # [n, heads, v'] at every position of one sequence
    truth: list[int],  # [n] the sequence
    first: int,  # the first position drafts are read from
    token_ids: Callable[[torch.Tensor], torch.Tensor],  # heads' output index -> token id
) -> tuple[torch.Tensor, torch.Tensor]:
    """([2, heads] positions where head k's top-1 / top-2 holds token t+k+2, [heads] positions)."""
    n, heads, vocab = head_logits.shape
    top2 = token_ids(head_logits.topk(min(2, vocab)).indices).cpu()  # [n, heads, 2]
    ids = torch.tensor(truth)
    hits, counts = torch.zeros(2, heads), torch.zeros(heads)
    for k in range(heads):
        at = torch.arange(first, max(first, n - k - 2))
        got, want = top2[at, k], ids[at + k + 2]  # [m, 2], [m]
        hits[0, k] = (got[:, 0] == want).sum()
        hits[1, k] = (got == want[:, None]).any(-1).sum()
        counts[k] = len(at)
    return hits, counts

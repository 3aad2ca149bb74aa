"""DINGO's dynamic programme: the most probable token string of a block that a regex allows.

Paper: Suresh, Ugare, Singh, Misailovic, "DINGO: Constrained Inference for Diffusion LLMs",
2025.

A denoiser forward gives every position of a block its own distribution over tokens, and the
positions are independent given the canvas. Among the strings t_1..t_d of the block that keep
the regex's token DFA (decbench/diffusion/token_dfa.py) on a path from the block's start state
to an allowed end state, the programme returns the one maximising sum_i log p_i(t_i):

    W[0, q] = 0 if q = start else -inf
    W[i + 1, q'] = max over DFA edges (q, t, q') of W[i, q] + log p_(i+1)(t)

with a back-pointer per (position, state); the answer ends in the best allowed end state. Each
position is one pass over the DFA's edge list (a scatter-max into the states), O(d · edges).
Positions already placed enter as point masses on their token. The result is the exact
constrained argmax (tested against brute-force enumeration), which is what makes the
constrained decoding faithful to the model: nothing outside the constraint is ever preferred,
and nothing inside it is lost to a greedy token-by-token mask.
"""

from __future__ import annotations

import torch

from decbench.diffusion.token_dfa import TokenDFA

NEG = float("-inf")


def block_argmax(
    dfa: TokenDFA,
    logprobs: torch.Tensor,  # [d, vocab] per-position log-probabilities (placed: point masses)
    start: int,  # DFA state before the block
    end_ok: torch.Tensor,  # [states] bool: states the block may end in
) -> tuple[list[int], float] | None:
    """The highest-scoring allowed token string of the block and its summed log-probability, or
    None when no allowed string exists."""
    src, tok, dst = dfa.src, dfa.tok, dfa.dst
    edges = len(src)
    states = dfa.states
    score = torch.full((states,), NEG, dtype=torch.float64)
    score[start] = 0.0
    back = []  # per position: [states] winning edge index (edges = none)
    index = torch.arange(edges)
    for row in logprobs.double():
        cand = score[src] + row[tok]  # [edges]
        best = torch.full((states,), NEG, dtype=torch.float64).scatter_reduce(
            0, dst, cand, "amax", include_self=True
        )
        won = (cand == best[dst]) & (cand > NEG)
        first = torch.full((states,), edges, dtype=torch.long).scatter_reduce(
            0, dst, torch.where(won, index, edges), "amin", include_self=True
        )
        back.append(first)
        score = best
    final = torch.where(end_ok, score, torch.tensor(NEG, dtype=torch.float64))
    total, state = final.max(dim=0)
    if total.item() == NEG:
        return None
    tokens = []
    state = int(state)
    for first in reversed(back):
        edge = int(first[state])
        tokens.append(int(tok[edge]))
        state = int(src[edge])
    return tokens[::-1], float(total)


def point_masses(logprobs: torch.Tensor, placed: dict[int, int]) -> torch.Tensor:
    """logprobs [d, vocab] with rows of placed positions (index -> token) replaced by point
    masses on their token."""
    out = logprobs.clone()
    for i, token in placed.items():
        out[i] = NEG
        out[i, token] = 0.0
    return out

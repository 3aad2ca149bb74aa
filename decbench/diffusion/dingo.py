"""DINGO's dynamic programme: the most probable token string of a block that a regex allows.

Paper: Suresh, Banerjee, Ugare, Misailovic, Singh, "DINGO: Constrained Inference for Diffusion
LLMs", 2025.

A denoiser forward gives every position of a block its own distribution over tokens, and the
positions are independent given the canvas. A diffusion step then decides which positions to
unmask; the others stay masked (the paper's ⊥), and a masked position can later become any one
token. Among the block strings that keep the regex's token DFA (decbench/diffusion/token_dfa.py)
on a path from the block's start state to an allowed end state, the programme returns the one
maximising sum_i log p_i(t_i), where the rows it is given say what each position may be:

- a position unmasked in this step: its distribution from the denoiser;
- a position placed earlier: a point mass on its token;
- a position that stays masked: log-probability 0 for every token, i.e. ⊥ moves the DFA to any
  state one token away at no cost (the token the programme picks there is not placed).

`block_scores` turns these into per-class tables; `block_argmax` runs the programme:

    W[0, q] = 0 if q = start else -inf
    W[i + 1, q'] = max over DFA edges (q, t, q') of W[i, q] + log p_(i+1)(t)

with a back-pointer per (position, state); the answer ends in the best allowed end state. Tokens
whose transitions agree from every state form a class, and only a class's most probable token
can be on a best path: only the positions unmasked in this step take a pass over the
vocabulary (their class maxima), and every position one pass over the class-level edges (a
scatter-max into the states). The result is the exact
constrained argmax (tested against brute-force enumeration): the unmasked tokens are the most
probable ones under the model's distribution among those the regex allows with the rest of the
block still completable, which is the paper's guarantee.
"""

from __future__ import annotations

import torch

from decbench.diffusion.token_dfa import TokenDFA

NEG = float("-inf")


def class_maxima(dfa: TokenDFA, logprobs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logprobs [n, vocab] -> per row and token class, the best log-probability and the
    (lowest) token that has it: ([n, classes + 1], [n, classes + 1])."""
    n, vocab = logprobs.shape
    index = dfa.token_class.expand(n, vocab)
    width = dfa.classes + 1  # the last class holds the tokens never allowed
    best = torch.full((n, width), NEG, dtype=logprobs.dtype)
    best = best.scatter_reduce(1, index, logprobs, "amax", include_self=True)
    won = (logprobs == best.gather(1, index)) & (logprobs > NEG)
    ids = torch.where(won, torch.arange(vocab).expand(n, vocab), vocab)
    token = torch.full((n, width), vocab, dtype=torch.long)
    token = token.scatter_reduce(1, index, ids, "amin", include_self=True)
    return best, token


def block_scores(
    dfa: TokenDFA,
    logits: torch.Tensor,  # [d, vocab] the denoiser's logits for the block (any device)
    placed: dict[int, int],  # position -> token placed earlier
    masked: list[int],  # positions that stay masked after this step (⊥)
) -> tuple[torch.Tensor, torch.Tensor]:
    """What each position may be, per token class: ([d, classes + 1] best log-probability,
    [d, classes + 1] its token). A placed position is a point mass on its token's class; one
    that stays masked is any one token at no cost (each class's lowest token stands for it); the
    other positions, the ones unmasked in this step, take the class maxima of their
    distributions (the only full pass over the vocabulary)."""
    d, width = logits.shape[0], dfa.classes + 1
    best = torch.full((d, width), NEG, dtype=torch.float64)
    token = dfa.representative.expand(d, width).clone()
    best[masked, :-1] = 0.0
    for i, t in placed.items():
        best[i, dfa.token_class[t]] = 0.0
        token[i, dfa.token_class[t]] = t
    free = [i for i in range(d) if i not in placed and i not in masked]
    if free:
        # only these rows leave the device; the programme runs on host tensors
        logprobs = torch.log_softmax(logits[free].cpu().double(), dim=-1)
        best[free], token[free] = class_maxima(dfa, logprobs)
    return best, token


def block_argmax(
    dfa: TokenDFA,
    scores: tuple[torch.Tensor, torch.Tensor],  # block_scores(...)
    start: int,  # DFA state before the block
    end_ok: torch.Tensor,  # [states] bool: states the block may end in
) -> tuple[list[int], float] | None:
    """The highest-scoring allowed token string of the block and its summed log-probability, or
    None when no allowed string exists. Tokens with the same transitions from every state are
    interchangeable for the DFA, so each position only needs each class's best token: the
    programme runs over the class-level edges."""
    class_best, class_token = scores
    src, cls, dst = dfa.src, dfa.cls, dfa.dst
    edges = len(src)
    states = dfa.states
    score = torch.full((states,), NEG, dtype=torch.float64)
    score[start] = 0.0
    back = []  # per position: [states] winning edge index (edges = none)
    index = torch.arange(edges)
    for row in class_best:
        cand = score[src] + row[cls]  # [edges]
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
    for position in range(len(back) - 1, -1, -1):
        edge = int(back[position][state])
        tokens.append(int(class_token[position, cls[edge]]))
        state = int(src[edge])
    return tokens[::-1], float(total)

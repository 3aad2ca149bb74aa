"""Contrastive search (Su et al., "A Contrastive Framework for Neural Text Generation", 2022).

At each step the target's top-k tokens are candidates. Candidate v scores

    (1 − α) · p(v | x_<t)  −  α · max_j cos(h_v, h_j)

where h_v is the target's last-layer hidden state *at* v (v fed as the next token) and h_j runs
over the hidden states of every earlier position, prompt included (the degeneration penalty).
The best candidate is committed; its logits are the next step's distribution. α = 0 is greedy.

Batching the k candidates: one forward runs them as k siblings of a tree, all at position
`cache_len`, under a tree mask in which each candidate sees the cache and only itself. That
gives each candidate's hidden state and its next-token logits in one pass; the cache is then
compacted to the chosen sibling. We chose the tree over a batch dimension because the cache
stays at batch 1: a batch of k would need k copies of the whole KV cache every step (or a
repeat-then-select per step), while the tree adds k cache rows and keeps one with a single
`compact`. Each step therefore costs one target forward over k tokens.

Lossy by design: the output differs from greedy whenever the penalty changes the ranking. It is
deterministic and does not sample (temperature > 0 is refused).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from decbench.backends.capabilities import HIDDEN_STATES
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.state import GenerationState
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import penalize


@dataclass
class ContrastiveOptions:
    k: int = option(4, ge=1)  # candidates per step (top-k of the target)
    alpha: float = option(0.6, ge=0, le=1)  # weight of the degeneration penalty; 0 = greedy


def score_candidates(
    probs: torch.Tensor,  # [k] model confidence of each candidate
    candidate_hidden: torch.Tensor,  # [k, hidden] unit-norm hidden state at each candidate
    context_hidden: torch.Tensor,  # [t, hidden] unit-norm hidden states of the context
    alpha: float,
) -> torch.Tensor:
    """(1 − α)·p − α·max cosine similarity to the context. Returns [k] scores."""
    penalty = (candidate_hidden @ context_hidden.T).max(dim=-1).values  # [k]
    return (1.0 - alpha) * probs - alpha * penalty


class ContrastiveLoop:
    """The state of one contrastive generation: context hidden states and current logits."""

    def __init__(self, target: ModelRunner, options: ContrastiveOptions, state: GenerationState):
        self.target = target
        self.options = options
        self.state = state
        self.context_hidden: torch.Tensor | None = None  # [t, hidden] unit-norm
        self.logits: torch.Tensor | None = None  # [vocab] next-token logits

    def prefill(self, prompt_ids: list[int]) -> None:
        out = self.target.prefill(torch.tensor([prompt_ids]), all_logits=False, hidden=True)
        self.context_hidden = F.normalize(out.hidden[0].float(), dim=-1)
        self.logits = out.logits[0, -1]

    def candidates(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k tokens and their probabilities (after the repetition penalty, as greedy)."""
        sampling = self.state.request.sampling
        logits = penalize(self.logits[None], [self.state.tokens], sampling.repetition_penalty)[0]
        k = min(self.options.k, logits.shape[-1])
        probs, tokens = logits.softmax(-1).topk(k)  # [k], [k]
        return tokens, probs

    def expand(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over the k candidates as siblings at position cache_len. Returns their
        unit-norm hidden states [k, hidden] and next-token logits [k, vocab]."""
        k = tokens.shape[0]
        start = self.target.cache_len
        positions = torch.full((1, k), start, dtype=torch.long)
        mask = torch.eye(k, dtype=torch.bool)[None]  # each candidate sees the cache and itself
        out = self.target.forward(tokens[None], positions=positions, tree_mask=mask, hidden=True)
        return F.normalize(out.hidden[0].float(), dim=-1), out.logits[0]

    def select(
        self,
        tokens: torch.Tensor,  # [k] candidate tokens
        probs: torch.Tensor,  # [k] their probabilities
        hidden: torch.Tensor,  # [k, hidden] unit-norm hidden state at each candidate
        next_logits: torch.Tensor,  # [k, vocab] next-token logits after each candidate
    ) -> int:
        """Score, keep the winner's cache row, hidden state and logits; return its index."""
        scores = score_candidates(probs, hidden, self.context_hidden, self.options.alpha)
        best = int(scores.argmax())
        start = self.target.cache_len - tokens.shape[0]
        self.target.compact(start, torch.tensor([best]))
        self.context_hidden = torch.cat([self.context_hidden, hidden[best : best + 1]])
        self.logits = next_logits[best]
        return best


def decode_contrastive(
    method: str, options: ContrastiveOptions, target: ModelRunner, request: Request
) -> GenerationResult:
    """prefill → (candidates → expand: one forward over k → select → commit)*."""
    state = GenerationState(method, options, target, request)
    timer = target.timer
    if state.max_new == 0:
        return state.result()
    loop = ContrastiveLoop(target, options, state)
    with timer.phase("prefill"):
        loop.prefill(request.prompt_ids)
    top1_steps = 0
    while not state.done:
        with timer.phase("candidates"):
            tokens, probs = loop.candidates()
        with timer.phase("decode"):
            hidden, next_logits = loop.expand(tokens)
        with timer.phase("select"):
            chosen = loop.select(tokens, probs, hidden, next_logits)
        top1_steps += chosen == 0
        token = int(tokens[chosen])
        state.record([], None, 0, token, False, state.commit([token]))
    result = state.result()
    result.stats["greedy_ratio"] = top1_steps / max(1, len(state.steps))  # steps that took top-1
    return result


@register_decoder
class ContrastiveSearch(Decoder):
    spec = MethodSpec(
        requires=frozenset({HIDDEN_STATES}),
        name="contrastive",
        summary="top-k candidates scored by confidence minus similarity to the context",
        paper="Su et al., A Contrastive Framework for Neural Text Generation (2022)",
        lossless=False,
        lossless_note=(
            "changes the output by design (a degeneration penalty re-ranks the top-k); "
            "alpha = 0 is token-identical to greedy"
        ),
        samples=False,
    )
    Options = ContrastiveOptions

    def generate(self, request: Request) -> GenerationResult:
        return decode_contrastive(self.spec.name, self.options, self.target, request)

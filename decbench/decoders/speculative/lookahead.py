"""Lookahead decoding (Fu et al., "Break the Sequential Dependency of LLM Inference Using
Lookahead Decoding", 2024).

Every step runs ONE target forward over three parts under one attention mask:
- the pending token;
- the *verification branch*: up to G n-grams from the pool that start with the pending token,
  merged into a tree (tree.py) and verified as candidates;
- the *lookahead branch*: a 2D Jacobi window of W columns and N-1 levels. Token (l, i) sits at
  position pending + 1 + i + l and sees the pending token, level 0 up to column i and its own
  column below it, i.e. one guessed sequence. The target's argmax at the top level is the next
  Jacobi iterate; each column then reads as an N-gram (level 0, ..., level N-2, new token),
  which goes into the pool keyed by its first token. The window then drops level 0 and takes
  the new tokens as its top level.

The window starts as W tokens drawn from the prompt and fills one level per step. With
`prompt_pool` the pool also holds the n-grams of the prompt and of the generated text (the
reference implementation's POOL_FROM_PROMPT); their nodes are marked "context", Jacobi ones
"jacobi". The window never affects what is committed, only what is proposed.

The defaults are small for a CPU, where every token added to the forward costs compute; GPUs,
where the forward is memory-bound, take far larger windows and pools.

Lossless: exact longest-path match under greedy (token-identical to greedy); under sampling,
multi-candidate rejection sampling over siblings with one-hot drafts (tree.py).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass

import torch

from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext, SideBranch
from decbench.decoders.speculative.tree import TreeBuilder
from decbench.options import option

JACOBI = "jacobi"
CONTEXT = "context"


@dataclass
class LookaheadOptions:
    window: int = option(3, ge=1)  # W: Jacobi window columns
    ngram: int = option(3, ge=2)  # N: n-gram size; the window keeps N-1 levels
    guesses: int = option(3, ge=1)  # G: pool n-grams verified per step (and kept per key)
    prompt_pool: bool = True  # also pool the n-grams of the prompt and the generated text
    seed: int = 0  # the window's initial tokens are drawn from the prompt with this seed


class NgramPool:
    """For each key token, its most recent continuations ((N-1)-tuples) with their source;
    at most `size` per key, least recently added evicted first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.table: dict[int, OrderedDict[tuple[int, ...], str]] = {}

    def __len__(self) -> int:
        return sum(len(entries) for entries in self.table.values())

    def add(self, key: int, continuation: tuple[int, ...], source: str) -> None:
        entries = self.table.setdefault(key, OrderedDict())
        if continuation in entries:
            entries.move_to_end(continuation)
            return
        entries[continuation] = source
        if len(entries) > self.size:
            entries.popitem(last=False)

    def candidates(self, key: int) -> list[tuple[tuple[int, ...], str]]:
        """Continuations of `key`, most recent first."""
        return list(reversed(self.table.get(key, {}).items()))


class JacobiWindow:
    """The lookahead branch: `levels[l][i]` is token (l, i) of the 2D window."""

    def __init__(self, first_level: list[int], depth: int) -> None:
        self.levels: list[list[int]] = [first_level]
        self.depth = depth  # N-1 levels when full
        self._masks: dict[int, torch.Tensor] = {}

    @property
    def full(self) -> bool:
        return len(self.levels) == self.depth

    def side_branch(self) -> SideBranch:
        width, height = len(self.levels[0]), len(self.levels)
        tokens = [token for level in self.levels for token in level]
        offsets = [1 + i + level for level in range(height) for i in range(width)]
        return SideBranch(tokens, offsets, self.mask(height, width))

    def mask(self, height: int, width: int) -> torch.Tensor:
        """[h*w, h*w] (l, i) sees (0, j <= i) and (l' <= l, i): one sequence per token."""
        if height not in self._masks:
            level = torch.arange(height).repeat_interleave(width)  # [h*w]
            column = torch.arange(width).repeat(height)  # [h*w]
            first = (level[None, :] == 0) & (column[None, :] <= column[:, None])
            own = (column[None, :] == column[:, None]) & (level[None, :] <= level[:, None])
            self._masks[height] = first | own
        return self._masks[height]

    def advance(self, top_logits: torch.Tensor) -> list[tuple[int, ...]]:
        """One Jacobi iteration from the top level's logits ([W, vocab]); returns the N-grams
        completed by it (one per column) once the window is full."""
        new_level = top_logits.argmax(-1).tolist()
        grams = []
        if self.full:
            grams = [tuple(column) for column in zip(*self.levels, new_level, strict=True)]
            self.levels.pop(0)
        self.levels.append(new_level)
        return grams


class LookaheadProposer:
    def __init__(self, options: LookaheadOptions, prompt: list[int]) -> None:
        self.options = options
        self.pool = NgramPool(options.guesses)
        rng = random.Random(options.seed)
        first_level = [rng.choice(prompt) for _ in range(options.window)]
        self.window = JacobiWindow(first_level, options.ngram - 1)
        self.pooled_upto = 0  # context n-grams ending before this index are pooled

    def propose(self, ctx: ProposerContext) -> Draft:
        if self.options.prompt_pool:
            self.pool_context(ctx.tokens)
        builder = TreeBuilder()
        for continuation, source in self.pool.candidates(ctx.tokens[-1]):
            builder.add_path(list(continuation[: ctx.max_tokens]), source)
        return builder.draft(side=self.window.side_branch())

    def pool_context(self, tokens: list[int]) -> None:
        n = self.options.ngram
        for end in range(max(self.pooled_upto, n), len(tokens) + 1):
            gram = tokens[end - n : end]
            self.pool.add(gram[0], tuple(gram[1:]), CONTEXT)
        self.pooled_upto = len(tokens) + 1

    def observe(self, feedback: Feedback) -> None:
        """Advance the Jacobi window with the top level's logits and pool its N-grams."""
        draft = feedback.draft
        if feedback.logits is None or draft is None or draft.side is None:
            return
        width = self.options.window
        top_end = 1 + len(draft.tokens) + len(draft.side.tokens)
        for gram in self.window.advance(feedback.logits[top_end - width : top_end]):
            self.pool.add(gram[0], gram[1:], JACOBI)


@register_decoder
class Lookahead(PlannedDecoder):
    spec = MethodSpec(
        name="lookahead",
        summary="lookahead decoding: a Jacobi window fills an n-gram pool, verified in the "
        "same forward",
        paper="Fu et al., Break the Sequential Dependency of LLM Inference Using Lookahead "
        "Decoding (2024)",
        lossless=True,
        lossless_note="longest-path exact match under greedy; multi-candidate rejection "
        "sampling over siblings (one-hot drafts) under sampling",
        supports_tree=True,
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = LookaheadOptions

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        proposer = LookaheadProposer(self.options, request.prompt_ids)

        def report() -> dict:
            return {
                "pool_ngrams": len(proposer.pool),
                "pool_keys": len(proposer.pool.table),
                "window_tokens": self.options.window * (self.options.ngram - 1),
            }

        return RowPlan(proposer, report=report)

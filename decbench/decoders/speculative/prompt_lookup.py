"""Prompt lookup decoding (Saxena, "Prompt Lookup Decoding", 2023; Yang et al., "Inference with
Reference: Lossless Acceleration of Large Language Models", 2023).

Drafts by copying: find the most recent earlier occurrence of the last n tokens (n from
`max_ngram` down to `min_ngram`) in prompt + generated text and propose what followed it.
An incremental index maps every n-gram to its latest end position, so a step costs O(n + k)
dictionary work however long the prompt is. Lossless: exact under greedy; under sampling the
draft is one-hot and verified by rejection sampling with q(x) = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.errors import ConfigError
from decbench.options import option


@dataclass
class PromptLookupOptions:
    k: int = option(10, ge=1)  # draft tokens per step (at most)
    max_ngram: int = option(3, ge=1)  # longest suffix to match
    min_ngram: int = option(1, ge=1)  # shortest suffix to match

    def validate(self) -> None:
        if self.min_ngram > self.max_ngram:
            raise ConfigError(
                f"method.min_ngram/max_ngram need 1 <= min_ngram <= max_ngram, "
                f"got {self.min_ngram}/{self.max_ngram}"
            )


class NgramIndex:
    """Latest end position of every n-gram (min_n..max_n) in a growing token list. An n-gram is
    indexed only once a token follows it, so a lookup never returns the current suffix itself."""

    def __init__(self, min_n: int, max_n: int) -> None:
        self.sizes = range(min_n, max_n + 1)
        self.latest: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in self.sizes}
        self.indexed = 0  # n-grams ending before this position are indexed

    def update(self, tokens: list[int]) -> None:
        for end in range(self.indexed, len(tokens) - 1):
            for n in self.sizes:
                if end + 1 >= n:
                    self.latest[n][tuple(tokens[end + 1 - n : end + 1])] = end
        self.indexed = max(self.indexed, len(tokens) - 1)

    def continuation(self, tokens: list[int], k: int) -> list[int]:
        """Tokens that followed the latest match of the longest matching suffix."""
        for n in reversed(self.sizes):
            if n > len(tokens):
                continue
            end = self.latest[n].get(tuple(tokens[-n:]))
            if end is not None:
                return tokens[end + 1 : end + 1 + k]
        return []


class PromptLookupProposer:
    def __init__(self, options: PromptLookupOptions) -> None:
        self.options = options
        self.index = NgramIndex(options.min_ngram, options.max_ngram)

    def propose(self, ctx: ProposerContext) -> Draft:
        self.index.update(ctx.tokens)
        return Draft(self.index.continuation(ctx.tokens, min(self.options.k, ctx.max_tokens)))

    def observe(self, feedback: Feedback) -> None:
        """Copying needs no feedback; the index catches up on the next propose."""


@register_decoder
class PromptLookup(PlannedDecoder):
    spec = MethodSpec(
        name="pld",
        summary="prompt lookup: draft by copying the continuation of a matching n-gram",
        paper="Saxena, Prompt Lookup Decoding (2023); Yang et al., Inference with Reference (2023)",
        lossless=True,
        lossless_note="exact match under greedy; one-hot rejection sampling under sampling",
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = PromptLookupOptions

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        return RowPlan(PromptLookupProposer(self.options))

"""The proposer protocol: `propose(ctx) -> Draft` and `observe(feedback)`. An empty draft means
one plain decoding step. New needs become fields of ProposerContext, never keyword flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from decbench.settings import SamplingSettings


@dataclass
class Draft:
    tokens: list[int]  # [k] candidate continuation, in order
    draft_probs: torch.Tensor | None = (
        None  # [k, vocab] q for each position, if the proposer has it
    )

    def probs_of_tokens(self) -> list[float] | None:
        """q(x_i) of each drafted token, for the trace."""
        if self.draft_probs is None:
            return None
        index = torch.tensor(self.tokens, dtype=torch.long)[:, None]
        return self.draft_probs.gather(1, index).squeeze(1).tolist()


@dataclass
class ProposerContext:
    tokens: list[int]  # [n] prompt + committed tokens (read-only)
    prompt_len: int
    max_tokens: int  # propose at most this many (budget left before max_new_tokens)
    sampling: SamplingSettings
    generator: torch.Generator | None  # the engine's RNG, for proposers that sample


@dataclass
class Feedback:
    drafted: int  # tokens offered this step
    accepted: int  # of those, how many the target accepted
    tokens: list[int]  # [n] prompt + committed after the step


class Proposer(Protocol):
    def propose(self, ctx: ProposerContext) -> Draft: ...

    def observe(self, feedback: Feedback) -> None: ...

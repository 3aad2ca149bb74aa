"""The proposer protocol: `propose(ctx) -> Draft` and `observe(feedback)`. An empty draft means
one plain decoding step. New needs become fields of ProposerContext, never keyword flags.

A draft is a chain (`parents is None`) or a tree: node i hangs under node `parents[i]`, and -1
is the pending token (the last committed one, which the verify forward runs first). Tree nodes
come in topological order (a parent before its children) and siblings carry distinct tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from decbench.settings import SamplingSettings


@dataclass
class SideBranch:
    """Tokens the target runs in the same verify forward without ever committing them (the
    Jacobi window of lookahead decoding). They see the whole cache and the pending token, each
    other as `mask` allows, and never the tree; tree nodes never see them."""

    tokens: list[int]  # [m]
    offsets: list[int]  # [m] position minus the pending token's position (>= 1)
    mask: torch.Tensor  # [m, m] bool: side token i may see side token j (the diagonal included)


@dataclass
class Draft:
    tokens: list[int]  # [k] candidate continuation (chain), or [n] tree nodes in topological order
    draft_probs: torch.Tensor | None = (
        None  # [k, vocab] q for each position, if the proposer has it (chains only)
    )
    parents: list[int] | None = None  # [n] parent node of each tree node, -1 = the pending token
    sources: list[str] | None = None  # [n] which draft source proposed each node ("pool", ...)
    side: SideBranch | None = None  # evaluated alongside, never committed

    @property
    def is_tree(self) -> bool:
        """Verified under a tree mask: a tree, or a chain that brings a side branch."""
        return self.parents is not None or self.side is not None

    def probs_of_tokens(self) -> list[float] | None:
        """q(x_i) of each drafted token, for the trace."""
        if self.draft_probs is None:
            return None
        index = torch.tensor(self.tokens, dtype=torch.long, device=self.draft_probs.device)[:, None]
        return self.draft_probs.gather(1, index).squeeze(1).tolist()


@dataclass
class ProposerContext:
    tokens: list[int]  # [n] prompt + committed tokens (read-only)
    prompt_len: int
    max_tokens: int  # propose at most this many (budget left before max_new_tokens); trees: depth
    sampling: SamplingSettings
    generator: torch.Generator | None  # the engine's RNG, for proposers that sample


@dataclass
class Feedback:
    drafted: int  # tokens offered this step (trees: length of the best branch)
    accepted: int  # of those, how many the target accepted
    tokens: list[int]  # [n] prompt + committed after the step
    draft: Draft | None = None  # the draft as verified (after the engine's budget cut)
    logits: torch.Tensor | None = None  # [1 + n (+ m), vocab] the verify forward's target logits:
    # the pending token, each draft token or tree node, then each side-branch token
    path: list[int] | None = None  # [accepted] tree nodes of the accepted path (trees only)
    pending: int | None = None  # the token the verify forward ran first (row 0 of `logits`)
    hidden: torch.Tensor | None = None  # [rows, hidden] the target's last hidden states, rows as
    # in `logits`, for proposers that ask for them (`wants_hidden`); after the prefill: [n_prompt,
    # hidden], the prompt seen as a verified chain (pending = prompt[0], accepted = n_prompt - 1)


def last_row(feedback: Feedback) -> int:
    """The row of `logits`/`hidden` after the last accepted token: where the bonus came from."""
    if feedback.path is not None:
        return 1 + feedback.path[-1] if feedback.path else 0
    return feedback.accepted


class Proposer(Protocol):
    """A proposer may set `wants_hidden = True` to receive the target's hidden states."""

    def propose(self, ctx: ProposerContext) -> Draft: ...

    def observe(self, feedback: Feedback) -> None: ...

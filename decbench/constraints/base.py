"""The constraint layer's interface: what every decoder consults while it decodes.

A `Constraint` is compiled once per run (a JSON schema, a grammar, an allow-list) for one
tokenizer and vocabulary. `start()` gives a `ConstraintState` for one generation: it answers
which tokens may come next (a boolean mask over the vocabulary, EOS included where the output is
complete), advances by committed tokens, and rolls back, because speculative decoding verifies
drafts that it may reject. Decoders never ask a constraint anything else.

    state = constraint.start()
    state.mask()                      # [vocab] bool: tokens allowed next
    state.advance(token)              # commit one token (ConstraintViolation if not allowed)
    state.allowed_prefix(draft)       # how many leading draft tokens are allowed
    state.masks_along(draft)          # [k+1, vocab] masks after each draft prefix (state unchanged)
    state.fork()                      # an independent copy (trees, beams)
    state.is_complete / state.must_stop

The masks are applied where logits become tokens (decbench/sampler.py), so the constrained
target is the masked, renormalised target: greedy takes its argmax, sampling draws from it with
the usual warpers applied after the mask.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from decbench.errors import RunError


class ConstraintViolation(RunError):
    """A decoder committed a token the constraint does not allow (a decoder bug, never input)."""


class ConstraintState(ABC):
    """The incremental state of one constrained generation. Cheap to fork and roll back."""

    @abstractmethod
    def mask(self) -> torch.Tensor:
        """[vocab] bool: the tokens allowed next. EOS is allowed exactly when `is_complete`."""

    @abstractmethod
    def advance(self, token: int) -> None:
        """Commit one token; raise ConstraintViolation when it is not allowed."""

    @abstractmethod
    def rollback(self, n: int) -> None:
        """Undo the last `n` advances."""

    @abstractmethod
    def fork(self) -> ConstraintState:
        """An independent copy: advancing one never changes the other."""

    @property
    @abstractmethod
    def is_complete(self) -> bool:
        """The tokens so far form a whole accepted output: stopping here satisfies the constraint."""

    @property
    @abstractmethod
    def must_stop(self) -> bool:
        """Complete, and no token but EOS may follow: the generation ends here."""

    def allowed_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading `tokens` the constraint allows from this state (state unchanged)."""
        taken = 0
        for token in tokens:
            if not self.allows(token):
                break
            self.advance(token)
            taken += 1
        self.rollback(taken)
        return taken

    def allows(self, token: int) -> bool:
        """Whether `token` may come next."""
        return bool(self.mask()[token])

    def masks_along(self, tokens: Sequence[int]) -> torch.Tensor:
        """[len(tokens)+1, vocab] the mask here and after each prefix of `tokens`, which must all
        be allowed (state unchanged). The rows a speculative verify forward needs."""
        rows = [self.mask()]
        for token in tokens:
            self.advance(token)
            rows.append(self.mask())
        self.rollback(len(tokens))
        return torch.stack(rows)

    def advance_all(self, tokens: Sequence[int]) -> None:
        for token in tokens:
            self.advance(token)


class Constraint(ABC):
    """A compiled constraint for one tokenizer and vocabulary size."""

    kind: str  # "allow", "json-schema", "grammar"
    source: str  # what the user gave: a file name or the pattern, for errors and records

    @abstractmethod
    def start(self) -> ConstraintState:
        """The state before the first generated token."""

    @abstractmethod
    def satisfied(self, token_ids: Sequence[int], text: str) -> bool:
        """Whether a finished output (generated ids, EOS excluded, and its decoded text)
        satisfies the constraint, checked independently of the masks where possible (a JSON
        schema is validated with `jsonschema`)."""

    def describe(self) -> str:
        return f"{self.kind}: {self.source}"

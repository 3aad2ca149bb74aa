"""The registry of draft kinds `decbench distill --kind` trains. A kind is one class that builds
its module from the target, computes its loss on a batch of the target's sequences, walks a
held-out sequence for the acceptance estimate and saves itself; the trainer runs any of them
the same way and never branches on the kind. A new kind is one module plus `@register_kind`."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from decbench.errors import ConfigError, unknown
from decbench.train.config import DistillConfig, default, flag
from decbench.train.data import Sequence
from decbench.train.heldout import HeldOut, Walk, summarize

# Options that only some kinds read; a kind refuses the others when they are set.
KIND_OPTIONS = ("layers", "heads", "k", "unroll", "init")

_KINDS: dict[str, type[DraftKind]] = {}
_BUILTINS = ("decbench.train.student", "decbench.train.medusa", "decbench.train.eagle")


class DraftKind(ABC):
    """One draft being trained. `trained` is the module the optimizer updates."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()  # which of KIND_OPTIONS this kind reads
    uses_states: ClassVar[bool] = False  # reads the target's cached last hidden states
    grad_clip: ClassVar[float | None] = None  # gradient norm limit, if the kind needs one
    marker: ClassVar[str]  # the file whose presence marks a finished folder

    trained: nn.Module

    def __init__(
        self,
        config: DistillConfig,
        target,  # the loaded runner (model, tokenizer)
        sequences: list[Sequence],
        states: list[torch.Tensor] | None,  # [n_i, hidden] per sequence when uses_states
        subset: torch.Tensor | None,  # token ids of a reduced head, or None
    ) -> None:
        self.config = config
        self.target = target.model
        self.sequences, self.states = sequences, states
        self.pad = target.tokenizer.pad_token_id or 0
        self.subset = subset

    @classmethod
    def check(cls, config: DistillConfig) -> None:
        """Refuse the options of other kinds instead of ignoring them."""
        foreign = [
            flag(name)
            for name in KIND_OPTIONS
            if name not in cls.options and getattr(config, name) != default(name)
        ]
        if foreign:
            raise ConfigError(f"--kind {cls.name} does not take {', '.join(foreign)}")

    @abstractmethod
    def loss(self, picks: list[int], generator: torch.Generator) -> tuple[torch.Tensor, float]:
        """(mean loss, fraction of positions where the draft's argmax is the target's)."""

    @abstractmethod
    def walk(self, sequence: Sequence, state: torch.Tensor | None) -> Walk:
        """Greedy chain drafting simulated along one held-out continuation."""

    @abstractmethod
    def save(self, folder: Path, record: dict, tokenizer) -> None:
        """Write the draft into `folder` (a temporary folder the trainer renames into place)."""

    @torch.no_grad()
    def heldout(
        self, sequences: list[Sequence], states: list[torch.Tensor] | None = None
    ) -> HeldOut:
        self.trained.eval()
        walks = [
            self.walk(s, None if states is None else states[i]) for i, s in enumerate(sequences)
        ]
        self.trained.train()
        return summarize(walks)

    def state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.trained.state_dict().items()}


def register_kind(cls: type[DraftKind]) -> type[DraftKind]:
    if cls.name in _KINDS and _KINDS[cls.name] is not cls:
        raise ValueError(f"draft kind '{cls.name}' registered twice")
    _KINDS[cls.name] = cls
    return cls


def kind_names() -> tuple[str, ...]:
    _load()
    return tuple(_KINDS)


def get_kind(name: str) -> type[DraftKind]:
    _load()
    if name not in _KINDS:
        raise unknown("--kind", name, tuple(_KINDS))
    return _KINDS[name]


def _load() -> None:
    for module in _BUILTINS:
        importlib.import_module(module)

"""Counting the forwards of a method's main model while it decodes.

`compare` reports forward calls per generated token for every method. The count is taken here,
in one way for all of them, rather than from each decoder's own counters: a forward pre-hook on
the target's module (the denoiser, for dllm-* methods) counts every call of that module during
`generate`, whether it comes from decbench's ModelRunner, the diffusion runner or transformers'
`generate`. So the prefill counts, a batched forward (beams, FreeDave's drafts, contrastive
candidates) counts once, and a draft model's forwards do not count, not even a `self:layers=N`
draft, which shares the target's hook tables but is a different module object.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn


@dataclass
class ForwardCount:
    calls: int = 0  # forwards of the counted module so far


@contextlib.contextmanager
def counting_forwards(model: nn.Module) -> Iterator[ForwardCount]:
    """Count the forwards of `model` (itself, not modules sharing its hooks) inside the block.
    The hook is removed on exit; while it is on, each forward pays one Python call."""
    count = ForwardCount()

    def hook(module: nn.Module, args: tuple) -> None:
        if module is model:
            count.calls += 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()

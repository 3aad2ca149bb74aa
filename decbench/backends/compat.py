"""transformers version differences the runners meet. transformers 5.25 renamed the KV-cache
argument and output field from `past_key_values` to `cache` (the old name warns, and goes in
5.40); decbench supports both spellings so that any 5.x in the pinned range works."""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

OLD, NEW = "past_key_values", "cache"


def cache_kwarg(model: nn.Module) -> str:
    """The name the model's forward takes its KV cache under."""
    return NEW if NEW in inspect.signature(model.forward).parameters else OLD


def cache_of(output: Any) -> Any:
    """The KV cache a forward returned (whichever field holds it)."""
    value = output.get(NEW) if hasattr(output, "get") else None
    return value if value is not None else getattr(output, OLD, None)


def cache_in(kwargs: dict[str, Any]) -> Any:
    """The KV cache passed to a forward, as seen by a forward pre-hook."""
    value = kwargs.get(NEW)
    return value if value is not None else kwargs.get(OLD)

"""Drafts derived from the target itself, sharing its weights (no copies)."""

from __future__ import annotations

import copy

from torch import nn

from decbench.backends.runner import ModelRunner
from decbench.errors import ConfigError


def truncated_runner(target: ModelRunner, n_layers: int) -> ModelRunner:
    """The target's first `n_layers` decoder layers, its final norm and its LM head, as a
    separate model with its own KV cache. Parameters are shared with the target."""
    model = target.model
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            f"cannot derive a layer-truncated draft from {type(model).__name__}: "
            "it has no model.layers list"
        )
    total = len(layers)
    if not 1 <= n_layers < total:
        raise ConfigError(f"self:layers={n_layers} must be between 1 and {total - 1}")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = n_layers
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[:n_layers]
    new_inner = copy.copy(inner)
    new_inner._modules = dict(inner._modules)
    new_inner.layers = nn.ModuleList(list(layers)[:n_layers])
    new_inner.config = config
    draft = copy.copy(model)
    draft._modules = dict(model._modules)
    draft.model = new_inner
    draft.config = config
    return ModelRunner(draft, target.tokenizer, name=f"{target.name}[:{n_layers}]")

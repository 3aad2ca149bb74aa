"""Our small dLLM architecture: the default model's Llama, run bidirectionally.

It is a stock `LlamaForCausalLM` (optionally only its first N layers), initialised from the
autoregressive weights. What makes it a denoiser is data, not code: its config carries a
`decbench_dllm` table (mask token, shift) and DiffusionRunner always passes a 4D all-attend
mask, so no position is hidden from any other. The LM head keeps predicting the token *after*
each position (`shift`), as in AR-to-diffusion adaptation (Dream, DiffuLLaMA), so the AR
weights start out useful.
"""

from __future__ import annotations

import copy

from transformers import PreTrainedModel

from decbench.diffusion.runner import CONFIG_KEY
from decbench.errors import ConfigError

DEFAULT_MASK_TOKEN = "<empty_output>"  # an unused special token of SmolLM2's vocabulary


def mask_token_id(tokenizer, token: str = DEFAULT_MASK_TOKEN) -> int:
    """The id of the token used as [MASK]; it must be a single existing vocabulary entry."""
    ids = tokenizer.convert_tokens_to_ids([token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise ConfigError(f"mask token '{token}' is not in the tokenizer's vocabulary")
    return int(ids[0])


def dllm_from_ar(
    ar_model: PreTrainedModel, mask_id: int, layers: int = 0, source: str = ""
) -> PreTrainedModel:
    """A denoiser initialised from an autoregressive model: a deep copy that keeps the first
    `layers` decoder layers (0 = all) and is marked as a decbench dLLM."""
    total = ar_model.config.num_hidden_layers
    if not 0 <= layers <= total:
        raise ConfigError(f"layers must be in [0, {total}] (0 = all), got {layers}")
    model = copy.deepcopy(ar_model)
    if layers:
        model.model.layers = model.model.layers[:layers]
        model.config.num_hidden_layers = layers
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[:layers]
    setattr(
        model.config,
        CONFIG_KEY,
        {"mask_token_id": mask_id, "shift": True, "source": source, "layers": layers or total},
    )
    return model

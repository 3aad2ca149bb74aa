"""FFN-SkipLLM (Jaiswal et al., "FFN-SkipLLM: A Hidden Gem for Autoregressive Decoding with
Adaptive Feed Forward Skipping", EMNLP 2024).

Input-adaptive skipping of feed-forward (FFN) blocks only: attention runs in every layer, so
the KV cache stays whole (the paper's point against layer skipping and early exit). Within a
token's forward, the residual stream h entering each FFN block is compared with what leaves it,
h + FFN(norm(h)), by cosine similarity. The paper observes that this similarity rises through
the middle layers as the token's representation saturates; once it exceeds `threshold` in a
layer of the skippable region, the FFN blocks of the following layers in that region are
skipped (they add nothing to the residual), up to `max_skip_fraction` of all layers per token.
The first `keep_first` and last `keep_last` layers (the paper's cold regions) always run their
FFN, the prompt runs in full, and so do the first `warmup_tokens` generated tokens (the
paper's warm-up, which keeps the early KV entries, attention sinks included, exact).

The FFN modules are swapped for gates, and a hook reads each block's input, only inside
`skipping(...)`, which restores the model in a `finally`. It needs Llama-style decoder layers
(`model.layers[i].mlp` and the norm in front of it). result.stats has the FFN blocks skipped
per token (`ffn_skipped`, one entry per target forward after the prefill) and their mean.

LOSSY: skipped blocks change the logits; with `threshold` >= 1 nothing is skipped and the output
is token-identical to greedy. It honours the [sampling] settings.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from decbench.backends.capabilities import TORCH_MODEL
from decbench.backends.runner import ModelRunner
from decbench.decoders.autoregressive import decode_autoregressive
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.errors import ConfigError
from decbench.options import option
from decbench.results import GenerationResult

FFN_NORMS = ("pre_feedforward_layernorm", "post_attention_layernorm")  # the norm before the FFN


@dataclass
class FFNSkipOptions:
    threshold: float = 0.985  # cosine(h, h + FFN) above which the following FFN blocks are skipped
    # generated tokens decoded by the full model before any skipping
    warmup_tokens: int = option(4, ge=0)
    keep_first: int = option(4, ge=0)  # first layers whose FFN always runs (cold region)
    keep_last: int = option(3, ge=0)  # last layers whose FFN always runs (cold region)
    # most FFN blocks skipped per token, as a share of all layers
    max_skip_fraction: float = option(0.25, ge=0, le=1)


class SkipPolicy:
    """Per forward: run each FFN, or skip it once an earlier block's similarity saturated."""

    def __init__(self, options: FFNSkipOptions, n_layers: int) -> None:
        self.options = options
        self.region = range(options.keep_first, n_layers - options.keep_last)
        self.limit = math.floor(options.max_skip_fraction * n_layers)
        self.forwards = 0  # forwards started (0 is the prefill)
        self.active = False  # this forward may skip
        self.saturated = False  # a block of this forward crossed the threshold
        self.skipped: list[int] = []  # [forwards after the prefill] FFN blocks skipped
        self.residual: torch.Tensor | None = None  # [batch, n, hidden] input of the current FFN

    def begin_forward(self) -> None:
        """Called as each target forward starts: only generated tokens past the warm-up skip."""
        index = self.forwards
        self.forwards += 1
        self.active = index >= max(1, self.options.warmup_tokens)
        self.saturated = False
        if index >= 1:
            self.skipped.append(0)

    def run(self, layer: int, ffn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        in_region = self.active and layer in self.region
        if in_region and self.saturated and self.skipped[-1] < self.limit:
            self.skipped[-1] += 1
            return torch.zeros_like(x)  # the residual stream passes through unchanged
        out = ffn(x)
        if in_region and not self.saturated and self.residual is not None:
            h = self.residual.float()
            similarity = torch.cosine_similarity(h, h + out.float(), dim=-1).min().item()
            self.saturated = similarity > self.options.threshold
        return out


class FFNGate(nn.Module):
    """Stands in for layer `layer`'s FFN while skipping is on; the policy runs or skips it."""

    def __init__(self, ffn: nn.Module, layer: int, policy: SkipPolicy) -> None:
        super().__init__()
        self.ffn = ffn
        self.layer = layer
        self.policy = policy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.policy.run(self.layer, self.ffn, x)


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList) or not all(hasattr(x, "mlp") for x in layers):
        raise ConfigError(
            f"ffn-skip needs Llama-style decoder layers (model.layers[i].mlp); "
            f"{type(model).__name__} has none"
        )
    return list(layers)


def ffn_norm(layer: nn.Module) -> nn.Module:
    for name in FFN_NORMS:
        if isinstance(getattr(layer, name, None), nn.Module):
            return getattr(layer, name)
    raise ConfigError(f"ffn-skip: a decoder layer has none of {', '.join(FFN_NORMS)}")


@contextlib.contextmanager
def skipping(model: nn.Module, policy: SkipPolicy) -> Iterator[SkipPolicy]:
    """Gate every FFN of `model` through `policy`; put the original modules back on exit."""
    layers = decoder_layers(model)
    norms = [ffn_norm(layer) for layer in layers]  # checked before anything changes
    originals = [layer.mlp for layer in layers]
    handles = [model.register_forward_pre_hook(lambda *_: policy.begin_forward())]

    def catch(_module, args) -> None:
        policy.residual = args[0]

    try:
        for i, (layer, norm) in enumerate(zip(layers, norms, strict=True)):
            handles.append(norm.register_forward_pre_hook(catch))
            layer.mlp = FFNGate(originals[i], i, policy)
        yield policy
    finally:
        for layer, original in zip(layers, originals, strict=True):
            layer.mlp = original
        for handle in handles:
            handle.remove()
        policy.residual = None


@register_decoder
class FFNSkip(Decoder):
    spec = MethodSpec(
        name="ffn-skip",
        summary="skip the FFN blocks after the residual stream saturates (cosine similarity)",
        paper=(
            "Jaiswal et al., FFN-SkipLLM: A Hidden Gem for Autoregressive Decoding with "
            "Adaptive Feed Forward Skipping (2024)"
        ),
        lossless=False,
        lossless_note=(
            "lossy: skipped FFN blocks change the logits; result.stats reports the FFN blocks "
            "skipped per token; threshold >= 1 skips nothing"
        ),
        requires=frozenset({TORCH_MODEL}),
    )
    Options = FFNSkipOptions

    def __init__(self, target: ModelRunner, options: FFNSkipOptions, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.n_layers = len(decoder_layers(target.model))

    def generate(self, request: Request) -> GenerationResult:
        policy = SkipPolicy(self.options, self.n_layers)
        with skipping(self.target.model, policy):
            result = decode_autoregressive(self.spec.name, self.options, self.target, request)
        per_token = policy.skipped
        result.stats.update(
            ffn_blocks=self.n_layers,
            ffn_skipped=per_token,
            ffn_skipped_per_token=sum(per_token) / max(1, len(per_token)),
            ffn_skip_share=sum(per_token) / max(1, len(per_token) * self.n_layers),
        )
        return result

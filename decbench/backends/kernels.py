"""Decode-time CPU kernels: the same arithmetic as stock transformers, arranged for 1-8 new tokens.

Decoding and verification run a handful of new tokens per forward, and on CPU two library paths
chosen for exactly that shape cost more than the arithmetic needs (measured with SmolLM2-135M,
fp32, 2 threads, MKL):

- `nn.Linear` on 1-8 rows: `x @ W.T` goes to a matrix-vector or skinny-GEMM path that reads the
  weights at ~16 GB/s; the same product computed as `(W @ x.T).T` reads them at ~35 GB/s (a
  single row is given a duplicate so it takes that path too). One decode step went from 42 ms to
  25 ms and a 4-token verify from 66 ms to 31 ms.
- Grouped-query attention over several new tokens with a mask: transformers' `sdpa` copies
  every key/value head `num_key_value_groups` times (`repeat_kv`) per layer and forward. Here
  the query heads that share a key/value head are stacked along the query axis instead, which
  needs no copy of the cache (another 3-4 ms of a 4-token verify).

Both are exact rearrangements; logits differ from stock only by float summation order
(~1e-5). On another CPU (Intel Xeon, AVX-512) the same arrangement was 1.75x *slower* than
stock, so `backend.kernels = "auto"` (the default) decides by a timed check of both sets on the
model itself (backends/kernel_check.py); "decbench" and "stock" force one set. They apply to
the model object, so transformers' own `generate` (the `hf-*` methods) runs on them too and
comparisons stay like for like.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from decbench.errors import ConfigError

MODES = ("auto", "decbench", "stock")
SMALL_ROWS = 8  # measured faster than the stock path for 1-8 rows; prefill keeps the stock path
PAD = {1: 2, 3: 4}
ATTENTION = "decbench_sdpa"


class DecodeLinear(nn.Linear):
    """nn.Linear whose no-grad forward on <= SMALL_ROWS rows computes (W @ x.T).T."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        if not 1 <= rows <= SMALL_ROWS or (torch.is_grad_enabled() and self._needs_grad(x)):
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        if rows in PAD:  # 1 and 3 rows take slower library paths than 2 and 4
            flat = torch.cat([flat, flat[: PAD[rows] - rows]])
        out = torch.mm(self.weight, flat.t()).t()[:rows]
        if self.bias is not None:
            out = out + self.bias
        return out.contiguous().view(*x.shape[:-1], self.out_features)

    def _needs_grad(self, x: torch.Tensor) -> bool:
        return x.requires_grad or self.weight.requires_grad


def packed_gqa_attention(
    module: nn.Module,
    query: torch.Tensor,  # [b, heads, n, d]
    key: torch.Tensor,  # [b, kv_heads, n_kv, d]
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,  # [b, 1, n, n_kv] shared by all heads
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' sdpa attention, except that several masked query tokens under GQA are
    packed as [b, kv_heads, groups * n, d] instead of repeating the keys and values."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, n, dim = query.shape
    plain = (
        groups == 1
        or n == 1
        or attention_mask is None
        or attention_mask.dim() != 4
        or attention_mask.shape[1] != 1
        or dropout > 0
        or kwargs.get("position_bias") is not None
        or kwargs.get("softcap") is not None
    )
    if plain:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    packed = query.reshape(batch, heads // groups, groups * n, dim)  # row r*n+i: group r, token i
    mask = attention_mask.repeat(1, 1, groups, 1)
    out = F.scaled_dot_product_attention(packed, key, value, attn_mask=mask, scale=scaling)
    return out.view(batch, heads, n, dim).transpose(1, 2).contiguous(), None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, packed_gqa_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"backend.kernels: '{mode}' is not one of {', '.join(MODES)}")


def install(model: nn.Module) -> nn.Module:
    """Switch the model's plain nn.Linear modules and its sdpa attention to the decode kernels.
    Weights are untouched; `restore` undoes it."""
    for module in model.modules():
        if type(module) is nn.Linear:
            module.__class__ = DecodeLinear
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == "sdpa" and hasattr(
        model, "set_attn_implementation"
    ):
        _register_attention()
        model.set_attn_implementation(ATTENTION)
    return model


def in_use(model: nn.Module) -> str:
    """ "decbench" or "stock": what a loaded model runs on (recorded with every result)."""
    return "decbench" if any(type(m) is DecodeLinear for m in model.modules()) else "stock"


def restore(model: nn.Module) -> bool:
    """Back to stock modules (before quantizing: quantizers match the exact nn.Linear type).
    True when the model had decode kernels."""
    had = False
    for module in model.modules():
        if type(module) is DecodeLinear:
            module.__class__ = nn.Linear
            had = True
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) == ATTENTION:
        model.set_attn_implementation("sdpa")
        had = True
    return had

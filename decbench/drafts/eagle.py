"""EAGLE draft head (Li et al., "EAGLE: Speculative Sampling Requires Rethinking Feature
Uncertainty", ICML 2024): one decoder layer that drafts at the level of the target's features.

The target's last hidden state f_i (after the final norm, so its logits are f_i @ lm_head.T)
predicts token x_{i+1}. The draft reads the pair (f_i, embedding of x_{i+1}), fused by one
linear layer, runs one Llama-style decoder layer over the sequence of such pairs, and outputs
f'_{i+1}, a guess of the target's next feature; the target's own LM head turns it into a guess
of x_{i+2}. Drafting further feeds (f'_{i+1}, x'_{i+2}) back in. Knowing the token that was
actually chosen is what makes this far more accurate than Medusa's heads, which guess every
position from one feature.

Training (decbench.train.eagle, `decbench distill --kind eagle`) reads the cached features of
the target's own greedy continuations; this module holds what decoding loads.

Layer: no norm before attention (the fused input is fresh), RoPE, grouped-query attention, an
RMSNorm before a SwiGLU MLP, no final norm (the output is compared with normed features). The
shapes follow the target's config; the weights start random. The token embedding and the LM
head are the target's, frozen and never stored; a `subset` of token ids restricts the LM head
rows the draft scores, as for Medusa (verification stays lossless either way).

Stored as `eagle.safetensors` with the marker `decbench-eagle.json` (shape and target).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from decbench.drafts import stored

MARKER = "decbench-eagle.json"
WEIGHTS = "eagle.safetensors"
SCHEMA = "decbench/eagle/v1"


@dataclass
class EagleShape:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    rope_theta: float = 10000.0
    eps: float = 1e-5

    @classmethod
    def of(cls, config) -> EagleShape:
        """The target's layer shape, from its transformers config."""
        hidden = config.hidden_size
        heads = config.num_attention_heads
        rope = getattr(config, "rope_parameters", None) or {}
        theta = getattr(config, "rope_theta", None) or rope.get("rope_theta", 10000.0)
        return cls(
            hidden=hidden,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or hidden // heads,
            intermediate=getattr(config, "intermediate_size", None) or 4 * hidden,
            rope_theta=float(theta),
            eps=float(getattr(config, "rms_norm_eps", 1e-5)),
        )


KV = tuple[torch.Tensor, torch.Tensor]  # ([b, kv_heads, n, head_dim]) keys, values


class EagleDraft(nn.Module):
    def __init__(self, shape: EagleShape, subset: torch.Tensor | None = None) -> None:
        super().__init__()
        self.shape = shape
        h, d = shape.hidden, shape.head_dim
        self.fc = nn.Linear(2 * h, h)  # [embedding ; feature] -> the layer's input
        self.q_proj = nn.Linear(h, shape.heads * d, bias=False)
        self.k_proj = nn.Linear(h, shape.kv_heads * d, bias=False)
        self.v_proj = nn.Linear(h, shape.kv_heads * d, bias=False)
        self.o_proj = nn.Linear(shape.heads * d, h, bias=False)
        self.norm = nn.RMSNorm(h, eps=shape.eps)
        self.gate_proj = nn.Linear(h, shape.intermediate, bias=False)
        self.up_proj = nn.Linear(h, shape.intermediate, bias=False)
        self.down_proj = nn.Linear(shape.intermediate, h, bias=False)
        self.register_buffer("subset", None if subset is None else subset.long())  # [v'] ids
        self._inv_freq: torch.Tensor | None = None  # RoPE frequencies, kept out of .to(dtype)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """[n] positions -> (cos, sin) [n, head_dim], in the Llama (rotate-half) layout."""
        inv = self._inv_freq
        if inv is None or inv.device != positions.device:  # once, not in every draft step
            d = self.shape.head_dim
            steps = torch.arange(0, d, 2, device=positions.device, dtype=torch.float32)
            inv = self._inv_freq = 1.0 / self.shape.rope_theta ** (steps / d)  # float32 always
        angles = positions.float()[:, None] * inv[None]  # [n, d/2]
        angles = torch.cat([angles, angles], -1)
        return angles.cos().to(dtype), angles.sin().to(dtype)

    def forward(
        self,
        embeds: torch.Tensor,  # [b, n, hidden] embeddings of the tokens x_{i+1}
        features: torch.Tensor,  # [b, n, hidden] features f_i
        positions: torch.Tensor,  # [n] positions i
        past: KV | None = None,  # keys and values of earlier positions
        mask: torch.Tensor | None = None,  # [n, past + n] bool, who sees whom (training unroll)
    ) -> tuple[torch.Tensor, KV]:
        """([b, n, hidden] predicted features f'_{i+1}, keys and values past + new). By default
        new rows see all of `past` and, causally, each other."""
        b, n, _ = embeds.shape
        d, heads, kv_heads = self.shape.head_dim, self.shape.heads, self.shape.kv_heads
        x = self.fc(torch.cat([embeds, features], -1))
        q = self.q_proj(x).view(b, n, heads, d).transpose(1, 2)
        k = self.k_proj(x).view(b, n, kv_heads, d).transpose(1, 2)
        v = self.v_proj(x).view(b, n, kv_heads, d).transpose(1, 2)
        cos, sin = self.rope(positions, q.dtype)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        if mask is None and past is not None and n > 1:  # the past, then causal among new rows
            seen = past[0].shape[2]
            mask = torch.ones(n, seen + n, dtype=torch.bool, device=x.device).tril(seen)
        attended = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and past is None and n > 1,
            enable_gqa=heads != kv_heads,
        )
        x = x + self.o_proj(attended.transpose(1, 2).reshape(b, n, heads * d))
        y = self.norm(x)
        x = x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))
        return x, (k, v)

    def rows(self, head_weight: torch.Tensor) -> torch.Tensor:
        """The LM head rows the draft scores: [v', hidden]."""
        return head_weight if self.subset is None else head_weight[self.subset].contiguous()

    def token_ids(self, index: torch.Tensor) -> torch.Tensor:
        """Map positions in the draft's output (subset order) to token ids."""
        return index if self.subset is None else self.subset[index]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


class EagleChain:
    """Incremental drafting for one sequence. The draft's cache holds only rows whose feature is
    the target's own (`extend`); `chain` drafts from the last of them on a copy, so a rejected
    draft leaves nothing to roll back."""

    def __init__(self, draft: EagleDraft, embed: torch.Tensor, rows: torch.Tensor) -> None:
        self.draft, self.embed, self.rows = draft, embed, rows
        self.past: KV | None = None
        self.length = 0  # rows in the cache, all from real features
        self.last: torch.Tensor | None = None  # [hidden] predicted feature after the last row

    @torch.inference_mode()
    def extend(self, features: torch.Tensor, next_tokens: list[int]) -> None:
        """Rows (f_i, x_{i+1}) for the next positions: features [r, hidden], tokens [r]."""
        if not next_tokens:
            return
        r = len(next_tokens)
        ids = torch.tensor(next_tokens, device=self.embed.device)
        positions = torch.arange(self.length, self.length + r, device=self.embed.device)
        feats = features.to(self.embed.dtype)[None]
        out, self.past = self.draft(self.embed[ids][None], feats, positions, self.past)
        self.length += r
        self.last = out[0, -1]

    @torch.inference_mode()
    def chain(self, k: int) -> list[int]:
        """k greedy draft tokens after the last real row; the cache keeps only the real rows."""
        tokens: list[int] = []
        feature, past = self.last, self.past
        for step in range(k):
            token = int(self.draft.token_ids((feature @ self.rows.t()).argmax()))
            tokens.append(token)
            if step + 1 < k:
                position = torch.tensor([self.length + step], device=self.embed.device)
                embeds = self.embed[token][None, None]
                out, past = self.draft(embeds, feature[None, None], position, past)
                feature = out[0, -1]
        return tokens


def save_eagle(draft: EagleDraft, folder: Path, record: dict, dtype=torch.bfloat16) -> None:
    subset = None if draft.subset is None else len(draft.subset)
    fields = {"schema": SCHEMA, **record, "shape": asdict(draft.shape), "vocab_subset": subset}
    stored.save_module(draft, folder, WEIGHTS, MARKER, fields, dtype)


def load_eagle(folder: Path, dtype: torch.dtype = torch.float32) -> tuple[EagleDraft, dict]:
    state, subset, record = stored.read_module(folder, WEIGHTS, MARKER, "method.draft", "eagle")
    draft = EagleDraft(EagleShape(**record["shape"]), subset)
    draft.load_state_dict(state, strict=False)
    return draft.to(dtype).eval().requires_grad_(False), record

"""Medusa heads (Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with Multiple
Decoding Heads", 2024): K extra heads on the target's last hidden state. Head k (0-based)
predicts the token k+2 positions ahead (the target's own LM head predicts the next one). Each
head is one residual block, h + SiLU(W h + b), followed by the target's LM head, as in the paper;
W starts at zero, so an untrained head predicts what the LM head does.

Reduced vocabulary: with a `subset` of token ids the heads score only those rows of the LM head
(on a small model the head's vocabulary projection costs more than the residual blocks). The
heads then never propose a token outside the subset; verification stays lossless either way.

Stored as `medusa.safetensors` (the residual blocks, and the subset when there is one) with the
marker `decbench-medusa.json` naming the target.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from decbench.drafts import stored

MARKER = "decbench-medusa.json"
WEIGHTS = "medusa.safetensors"
SCHEMA = "decbench/medusa/v1"


class MedusaHeads(nn.Module):
    def __init__(self, hidden: int, n_heads: int, subset: torch.Tensor | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_heads))
        for block in self.blocks:
            nn.init.zeros_(block.weight)
            nn.init.zeros_(block.bias)
        self.register_buffer("subset", None if subset is None else subset.long())  # [v'] ids

    def features(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., hidden] -> [..., heads, hidden]: each head's residual block."""
        return torch.stack([hidden + nn.functional.silu(b(hidden)) for b in self.blocks], dim=-2)

    def forward(self, hidden: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """[..., hidden] -> [..., heads, v'] logits over the subset (or the whole vocabulary);
        `rows` = rows(LM head weight), taken once by the caller."""
        return self.features(hidden) @ rows.t()

    def rows(self, head_weight: torch.Tensor) -> torch.Tensor:
        """The LM head rows the heads score: [v', hidden]."""
        return head_weight if self.subset is None else head_weight[self.subset].contiguous()

    def token_ids(self, index: torch.Tensor) -> torch.Tensor:
        """Map positions in the heads' output (subset order) to token ids."""
        return index if self.subset is None else self.subset[index]


def save_heads(heads: MedusaHeads, folder: Path, record: dict, dtype=torch.bfloat16) -> None:
    subset = None if heads.subset is None else len(heads.subset)
    fields = {"schema": SCHEMA, **record, "heads": len(heads.blocks), "vocab_subset": subset}
    stored.save_module(heads, folder, WEIGHTS, MARKER, fields, dtype)


def load_heads(folder: Path, dtype: torch.dtype = torch.float32) -> tuple[MedusaHeads, dict]:
    state, subset, record = stored.read_module(folder, WEIGHTS, MARKER, "method.heads", "medusa")
    heads = MedusaHeads(state["blocks.0.weight"].shape[0], record["heads"], subset)
    heads.load_state_dict(state, strict=False)
    return heads.to(dtype).eval().requires_grad_(False), record

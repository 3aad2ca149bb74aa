"""Medusa heads (Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with Multiple
Decoding Heads", 2024): K extra heads on the target's last hidden state. Head k (0-based)
predicts the token k+2 positions ahead (the target's own LM head predicts the next one). Each
head is one residual block, h + SiLU(W h + b), followed by the target's LM head, as in the paper;
W starts at zero, so an untrained head predicts what the LM head does.

Stored as `medusa.safetensors` (the residual blocks only) with the marker `decbench-medusa.json`
naming the target.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

MARKER = "decbench-medusa.json"
WEIGHTS = "medusa.safetensors"
SCHEMA = "decbench/medusa/v1"


class MedusaHeads(nn.Module):
    def __init__(self, hidden: int, n_heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(n_heads))
        for block in self.blocks:
            nn.init.zeros_(block.weight)
            nn.init.zeros_(block.bias)

    def forward(self, hidden: torch.Tensor, lm_head: nn.Module) -> torch.Tensor:
        """[b, n, hidden] -> [b, n, heads, vocab] logits."""
        return torch.stack(
            [lm_head(hidden + nn.functional.silu(b(hidden))) for b in self.blocks], dim=2
        )


def save_heads(heads: MedusaHeads, folder: Path, record: dict, dtype=torch.bfloat16) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().to(dtype).contiguous() for k, v in heads.state_dict().items()}
    save_file(state, str(Path(folder) / WEIGHTS))
    marker = {"schema": SCHEMA, **record, "heads": len(heads.blocks), "dtype": str(dtype)}
    (Path(folder) / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def load_heads(folder: Path, dtype: torch.dtype = torch.float32) -> tuple[MedusaHeads, dict]:
    from safetensors.torch import load_file

    from decbench.errors import ConfigError

    folder = Path(folder).expanduser()
    if not (folder / MARKER).is_file():
        raise ConfigError(
            f"method.heads: '{folder}' has no {MARKER} (make one with decbench distill --kind medusa)"
        )
    record = json.loads((folder / MARKER).read_text())
    state = load_file(str(folder / WEIGHTS))
    hidden = state["blocks.0.weight"].shape[0]
    heads = MedusaHeads(hidden, record["heads"])
    heads.load_state_dict({k: v.float() for k, v in state.items()})
    return heads.to(dtype).eval().requires_grad_(False), record

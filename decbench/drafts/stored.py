"""Storing small drafts that borrow the target's embeddings and LM head (Medusa heads, the
EAGLE layer): their own weights in one safetensors file (bfloat16 by default; integer buffers
such as the vocabulary subset as they are) beside a JSON marker naming the schema and the target,
and the checks that a stored draft fits the target it is about to serve."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from decbench.errors import ConfigError


def save_module(
    module: nn.Module, folder: Path, weights: str, marker: str, fields: dict, dtype: torch.dtype
) -> None:
    """`weights` gets the state dict; `marker` gets `fields` plus the dtype."""
    from safetensors.torch import save_file

    state = {
        k: v.detach().to(dtype).contiguous() if v.is_floating_point() else v.contiguous()
        for k, v in module.state_dict().items()
    }
    save_file(state, str(Path(folder) / weights))
    (Path(folder) / marker).write_text(json.dumps({**fields, "dtype": str(dtype)}, indent=2) + "\n")


def read_module(
    folder: Path, weights: str, marker: str, option: str, kind: str
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, dict]:
    """(float32 state without the subset, the subset or None, the marker's record)."""
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    if not (folder / marker).is_file():
        raise ConfigError(
            f"{option}: '{folder}' has no {marker} (make one with decbench distill --kind {kind})"
        )
    record = json.loads((folder / marker).read_text())
    state = load_file(str(folder / weights))
    subset = state.pop("subset", None)
    return {k: v.float() for k, v in state.items()}, subset, record


def check_fits(
    option: str,
    name: str,
    hidden: int,
    subset: torch.Tensor | None,
    record: dict,
    target_name: str,
    head_weight: torch.Tensor,  # [vocab, hidden] the target's LM head
) -> None:
    """ConfigError unless a draft trained for `hidden` (scoring `subset`) fits the target."""
    if hidden != head_weight.shape[1]:
        raise ConfigError(
            f"{option}: '{name}' was trained for a hidden size of {hidden} (target "
            f"{record.get('target')}), but '{target_name}' has {head_weight.shape[1]}"
        )
    if subset is not None and int(subset.max()) >= head_weight.shape[0]:
        raise ConfigError(f"{option}: '{name}' scores tokens outside the vocab")

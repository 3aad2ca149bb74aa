"""The settings of one `decbench distill` run: the one place their defaults live (the CLI reads
them from here)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

SCHEDULES = ("constant", "cosine")


@dataclass
class DistillConfig:
    target: str
    kind: str  # a registered draft kind (decbench.train.kinds): student | medusa | eagle
    out: Path
    layers: int = 2  # student: decoder layers kept (evenly spaced)
    vocab_subset: int = 0  # head over the N most frequent tokens; 0 = full vocabulary
    heads: int = 3  # medusa: number of heads
    steps: int = 200
    batch: int = 4
    seq_len: int = 192  # tokens per training sequence, the last ones (medusa: from the prompt)
    lr: float = 5e-4
    lr_schedule: str = "constant"  # constant | cosine (warm-up, then cosine decay to 0)
    seed: int = 0
    prompts: str | None = None  # file or suite name; None = decbench.train.prompts
    n_prompts: int = 128
    heldout: int = 8
    max_new_tokens: int = 96
    checkpoint_every: int = 25
    k: int = 4  # draft length for the held-out estimate
    unroll: int = 1  # eagle: training passes, pass s trains the chain's s-th token
    init: str | None = None  # eagle: start from this trained draft (its weights and subset)
    threads: int = 0
    device: str = "cpu"


def default(name: str) -> Any:
    """The default of DistillConfig field `name`."""
    field = next(f for f in fields(DistillConfig) if f.name == name)
    if field.default is MISSING:
        raise KeyError(f"DistillConfig.{name} has no default")
    return field.default


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")

"""What every draft kind's loss is made of: right-padded batches of the target's sequences and
the forward KL to the target's distributions (soft cross-entropy)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from decbench.train.data import Sequence


class Batch(NamedTuple):
    ids: torch.Tensor  # [b, n] right-padded
    mask: torch.Tensor  # [b, n] bool, the real tokens
    starts: list[int]  # where each row's window begins in its sequence


def make_batch(rows: list[Sequence], seq_len: int, pad: int) -> Batch:
    """Each row's last `seq_len` tokens, right-padded. Keeping the tail keeps the continuation
    (what decoding drafts) and as much of the prompt before it as fits; cutting the end would
    leave a prompt of `seq_len` tokens or more nothing of its continuation."""
    starts = [max(0, len(r.ids) - seq_len) for r in rows]
    cut = [r.ids[start:] for r, start in zip(rows, starts, strict=True)]
    width = max(len(r) for r in cut)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in cut])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in cut]).bool()
    return Batch(ids, mask, starts)


def soft_cross_entropy(draft_logits, target_logits, subset=None) -> torch.Tensor:
    """Σ_v p(v) · -log q(v) per position ([..., vocab] -> [...]); over `subset` when given."""
    if subset is not None:
        draft_logits, target_logits = draft_logits[..., subset], target_logits[..., subset]
    p = target_logits.softmax(-1)
    return -(p * draft_logits.log_softmax(-1)).sum(-1)

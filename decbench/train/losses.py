"""What every draft kind's loss is made of: right-padded batches of the target's sequences and
the forward KL to the target's distributions (soft cross-entropy)."""

from __future__ import annotations

import torch

from decbench.train.data import Sequence


def make_batch(rows: list[Sequence], seq_len: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([b, n] ids, [b, n] bool mask of real tokens), right-padded."""
    cut = [r.ids[:seq_len] for r in rows]
    width = max(len(r) for r in cut)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in cut])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in cut]).bool()
    return ids, mask


def soft_cross_entropy(draft_logits, target_logits, subset=None) -> torch.Tensor:
    """Σ_v p(v) · -log q(v) per position ([..., vocab] -> [...]); over `subset` when given."""
    if subset is not None:
        draft_logits, target_logits = draft_logits[..., subset], target_logits[..., subset]
    p = target_logits.softmax(-1)
    return -(p * draft_logits.log_softmax(-1)).sum(-1)

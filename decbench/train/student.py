"""`--kind student`: a few of the target's layers trained to match the target's next-token
distributions with forward KL on its own generations (DistillSpec, Zhou et al., 2024). The
module and its storage are decbench.drafts.student."""

from __future__ import annotations

from pathlib import Path

import torch

from decbench.drafts import student
from decbench.train.data import Sequence
from decbench.train.heldout import Walk, walk_chains
from decbench.train.kinds import DraftKind, register_kind
from decbench.train.losses import make_batch, soft_cross_entropy


@register_kind
class StudentKind(DraftKind):
    name = "student"
    options = ("layers", "k")
    marker = student.MARKER

    def __init__(self, config, target, sequences, states, subset) -> None:
        super().__init__(config, target, sequences, states, subset)
        self.layers = student.pick_layers(len(self.target.model.layers), config.layers)
        self.draft = student.build_student(self.target, self.layers, subset)
        self.trained = student.trainable(self.draft)

    def loss(self, picks: list[int], generator: torch.Generator) -> tuple[torch.Tensor, float]:
        rows = [self.sequences[i] for i in picks]
        batch = make_batch(rows, self.config.seq_len, self.pad)
        ids, mask = batch.ids.to(self.target.device), batch.mask.to(self.target.device)
        with torch.no_grad():
            target_logits = self.target(input_ids=ids, attention_mask=mask).logits.float()
        draft_logits = self.draft(input_ids=ids, attention_mask=mask).logits.float()
        losses = soft_cross_entropy(draft_logits, target_logits, self.subset)  # [b, n]
        hits = draft_logits.argmax(-1) == target_logits.argmax(-1)
        loss = (losses * mask).sum() / mask.sum()
        return loss, (hits & mask).sum().item() / max(mask.sum().item(), 1)

    def walk(self, sequence: Sequence, state: torch.Tensor | None) -> Walk:
        truth = sequence.ids
        ids = torch.tensor([truth], device=self.target.device)
        preds = self.draft(input_ids=ids).logits[0].argmax(-1).tolist()
        # the draft's guess for position c + i + 1 is its prediction at c + i
        steps = walk_chains(truth, sequence.prompt_len, self.config.k, lambda c, k: preds[c:])
        return Walk(steps)

    def save(self, folder: Path, record: dict, tokenizer) -> None:
        student.save_student(self.draft, folder, {**record, "layers": self.layers})
        tokenizer.save_pretrained(folder)
        if getattr(self.target, "generation_config", None) is not None:
            self.target.generation_config.save_pretrained(folder)

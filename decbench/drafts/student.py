"""A distilled student: a few of the target's decoder layers, trained to match the target's
next-token distributions (DistillSpec, Zhou et al., "DistillSpec: Improving Speculative Decoding
via Knowledge Distillation", 2024: forward KL on the target's own generations).

Storage: the student folder holds only what differs from the target: its layers and final norm
(`student.safetensors`), the vocabulary subset of its head, config.json, the tokenizer, and the
marker `decbench-student.json` naming the target. The token embeddings (and the LM head rows)
are the target's, read from the target's folder at load time, so a student stays a few MB.

Reduced vocabulary: with `vocab_subset = N` the head scores only the N most frequent tokens of
the training data (the LM head dominates a small draft's cost). Every other token gets a logit
of finfo.min, so the draft's distribution q is a proper distribution over the whole vocabulary
with q = 0 outside the subset. Speculative decoding stays lossless: under greedy the target's
argmax decides every token, and under sampling rejection sampling with such a q still yields the
target's distribution (the residual max(0, p - q) covers the tokens the draft cannot propose).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from decbench.errors import ModelError

MARKER = "decbench-student.json"
WEIGHTS = "student.safetensors"
SCHEMA = "decbench/student/v1"


class SubsetHead(nn.Module):
    """LM head over a vocabulary subset, scattered back to full-vocabulary logits."""

    def __init__(self, weight: torch.Tensor, index: torch.Tensor, vocab: int) -> None:
        super().__init__()
        self.rows = nn.Parameter(weight[index].clone(), requires_grad=False)  # [n_subset, hidden]
        self.register_buffer("index", index.long())  # [n_subset] token ids
        self.vocab = vocab

    @property
    def weight(self) -> torch.Tensor:
        """Full-vocabulary shape for code that reads `get_output_embeddings().weight.shape`."""
        return torch.empty(self.vocab, self.rows.shape[1], device="meta")

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # [b, n, h] -> [b, n, vocab]
        scores = hidden @ self.rows.t()  # [b, n, n_subset]
        full = scores.new_full((*scores.shape[:-1], self.vocab), torch.finfo(scores.dtype).min)
        return full.index_copy_(-1, self.index, scores)


def pick_layers(total: int, n: int) -> list[int]:
    """Evenly spaced layers, always the first and the last: [0, ..., total-1]."""
    if not 1 <= n < total:
        raise ModelError(f"student layers must be between 1 and {total - 1}, got {n}")
    if n == 1:
        return [0]
    return [round(i * (total - 1) / (n - 1)) for i in range(n)]


def build_student(target: nn.Module, layers: list[int], subset: torch.Tensor | None) -> nn.Module:
    """A deep copy of the chosen layers and the final norm; embeddings shared with the target
    (not trained, not stored); head = tied target head or its subset rows."""
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in layers]
    student = copy.copy(target)
    student._modules = dict(target._modules)
    inner = copy.copy(target.model)
    inner._modules = dict(target.model._modules)
    inner.layers = nn.ModuleList(copy.deepcopy(target.model.layers[i]) for i in layers)
    for i, layer in enumerate(inner.layers):
        layer.self_attn.layer_idx = i
    inner.norm = copy.deepcopy(target.model.norm)
    inner.config = config
    student.model = inner
    student.config = config
    if subset is not None:
        head = target.get_output_embeddings()
        student.lm_head = SubsetHead(head.weight.detach(), subset, head.weight.shape[0])
        config.tie_word_embeddings = False  # the subset head holds its own rows
    for p in student.parameters():
        p.requires_grad_(False)
    for p in trainable(student).parameters():
        p.requires_grad_(True)
    return student


def trainable(student: nn.Module) -> nn.Module:
    return nn.ModuleDict({"layers": student.model.layers, "norm": student.model.norm})


def student_state(student: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to(dtype).contiguous() for k, v in trainable(student).state_dict().items()
    }


def save_student(student: nn.Module, folder: Path, record: dict, dtype=torch.bfloat16) -> None:
    """Into an existing (temporary) folder; the caller renames it into place."""
    from safetensors.torch import save_file

    folder = Path(folder)
    head = student.get_output_embeddings()
    subset = head.index.tolist() if isinstance(head, SubsetHead) else None
    save_file(student_state(student, dtype), str(folder / WEIGHTS))
    student.config.save_pretrained(folder)
    marker = {"schema": SCHEMA, **record, "vocab_subset": subset, "dtype": str(dtype)}
    (folder / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def load_student(folder: Path, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Load the target named in the marker, then build the student on its embeddings."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from decbench.models import resolve

    folder = Path(folder)
    record = json.loads((folder / MARKER).read_text())
    target_folder = resolve(record["target"])
    target = AutoModelForCausalLM.from_pretrained(target_folder, dtype=dtype).eval()
    subset = record.get("vocab_subset")
    index = torch.tensor(subset) if subset else None
    student = build_student(target, record["layers"], index)
    state = {k: v.to(dtype) for k, v in load_file(str(folder / WEIGHTS)).items()}
    trainable(student).load_state_dict(state)
    return student.eval().requires_grad_(False)

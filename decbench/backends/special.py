"""Model folders that decbench writes itself and that stock `from_pretrained` cannot load:
quantized models (`decbench quantize`) and distilled students (`decbench distill`). Each kind is
recognised by its marker file; `special_loader(folder)` returns the loader to use, or None for an
ordinary transformers folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from decbench.backends.runner import ModelRunner

Loader = Callable[[str, Path, torch.device, torch.dtype], ModelRunner]


def load_quantized_runner(name: str, folder: Path, device: torch.device, dtype) -> ModelRunner:
    """Quantized weights keep their own precision; `dtype` does not apply."""
    from transformers import AutoTokenizer

    from decbench.quant.load import load_quantized

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return ModelRunner(load_quantized(folder, device), tokenizer, name=name, folder=folder)


def load_student_runner(name: str, folder: Path, device: torch.device, dtype) -> ModelRunner:
    from transformers import AutoTokenizer

    from decbench.drafts.student import load_student

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = load_student(folder, dtype).to(device)
    return ModelRunner(model, tokenizer, name=name, folder=folder)


MARKERS: dict[str, Loader] = {
    "decbench-quant.json": load_quantized_runner,
    "decbench-student.json": load_student_runner,
}


def special_loader(folder: Path) -> Loader | None:
    for marker, loader in MARKERS.items():
        if (Path(folder) / marker).is_file():
            return loader
    return None

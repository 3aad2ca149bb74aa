"""`quantize_model`: quantize, write, reload, and report what it cost against the original:
weight size on disk, greedy tokens/s (median of repeats, both models timed alternately),
perplexity on a built-in text and greedy agreement (first divergence index)."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from decbench.backends.loader import load_runner
from decbench.backends.runner import ModelRunner
from decbench.decoders.autoregressive import decode_autoregressive
from decbench.decoders.base import NoOptions, Request
from decbench.measure import measure_call
from decbench.quant.load import save_quantized
from decbench.quant.schemes import get_scheme, quantize_in_memory
from decbench.settings import BackendSettings, GenerationSettings, ModelSettings, SamplingSettings

PROMPT = "Explain in a few sentences how a hash table handles collisions."
PPL_TOPICS = ("if", "while", "for", "try", "with")  # pydoc's language reference sections


@dataclass
class QuantReport:
    schema: str
    scheme: str
    base: str
    out: str
    size_mb: float  # weight files on disk
    base_size_mb: float
    tokens_per_s: float  # median over repeats, greedy
    base_tokens_per_s: float
    perplexity: float  # on the built-in text
    base_perplexity: float
    ppl_tokens: int
    agreement_tokens: int  # greedy tokens compared
    first_divergence: int | None  # index of the first differing greedy token; None = identical

    def to_dict(self) -> dict:
        return asdict(self)


def builtin_text() -> str:
    """Python's own language reference (pydoc_data ships with every CPython): English prose
    with code, the same on every machine."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[t] for t in PPL_TOPICS)


@torch.inference_mode()
def perplexity(runner: ModelRunner, ids: list[int], window: int = 256) -> float:
    """exp(mean NLL) over non-overlapping windows of `window` tokens."""
    total, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[start : start + window + 1]])
        if chunk.shape[1] < 2:
            break
        runner.reset()
        logits = runner.forward(chunk[:, :-1]).logits[0]
        nll = torch.nn.functional.cross_entropy(
            logits, chunk[0, 1:].to(logits.device), reduction="sum"
        )
        total += nll.item()
        count += chunk.shape[1] - 1
    return float(torch.tensor(total / count).exp())


def greedy_run(runner: ModelRunner, prompt_ids: list[int], n: int) -> tuple[list[int], float]:
    request = Request(PROMPT, prompt_ids, GenerationSettings(max_new_tokens=n), SamplingSettings())
    measured = measure_call(
        runner, lambda: decode_autoregressive("greedy", NoOptions(), runner, request)
    )
    return measured.result.token_ids, measured.wall_s


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def folder_size_mb(folder: Path) -> float:
    files = [p for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".bin")]
    return sum(p.stat().st_size for p in files) / 1e6


def quantize_model(
    name: str,
    scheme_name: str,
    out: Path,
    backend: BackendSettings,
    tokens: int = 48,
    repeats: int = 3,
    progress: Callable[[str], None] = lambda _m: None,
) -> QuantReport:
    scheme = get_scheme(scheme_name)
    progress(f"loading {name}")
    base = load_runner(ModelSettings(name=name), backend, progress)
    progress(f"quantizing with {scheme.name} ({scheme.library})")
    model = quantize_in_memory(copy.deepcopy(base.model), scheme)
    save_quantized(model, base.tokenizer, scheme, out, name)
    progress(f"wrote {out}; reloading it to measure")
    quant = load_runner(ModelSettings(name=str(out)), backend, progress)
    text_ids = base.tokenizer(builtin_text())["input_ids"][:1024]
    progress(f"perplexity on {len(text_ids)} tokens of pydoc's language reference")
    base_ppl, quant_ppl = perplexity(base, text_ids), perplexity(quant, text_ids)
    prompt_ids = base.tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, tokenize=True
    )
    prompt_ids = list(getattr(prompt_ids, "input_ids", prompt_ids))
    progress(f"greedy speed and agreement, {tokens} tokens x {repeats} (alternating)")
    greedy_run(base, prompt_ids, 4), greedy_run(quant, prompt_ids, 4)  # warm up
    base_times, quant_times = [], []
    for _ in range(repeats):
        base_ids, t = greedy_run(base, prompt_ids, tokens)
        base_times.append(t)
        quant_ids, t = greedy_run(quant, prompt_ids, tokens)
        quant_times.append(t)
    return QuantReport(
        schema="decbench/quantize/v1",
        scheme=scheme.name,
        base=name,
        out=str(out),
        size_mb=round(folder_size_mb(out), 2),
        base_size_mb=round(folder_size_mb(base.folder), 2) if base.folder else 0.0,
        tokens_per_s=round(len(quant_ids) / statistics.median(quant_times), 2),
        base_tokens_per_s=round(len(base_ids) / statistics.median(base_times), 2),
        perplexity=round(quant_ppl, 3),
        base_perplexity=round(base_ppl, 3),
        ppl_tokens=len(text_ids),
        agreement_tokens=min(len(base_ids), len(quant_ids)),
        first_divergence=first_divergence(base_ids, quant_ids),
    )

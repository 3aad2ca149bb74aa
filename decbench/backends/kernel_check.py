"""Which decode kernels a loaded model runs on, chosen by measurement (`backend.kernels = "auto"`).

decbench's decode kernels (backends/kernels.py) were faster than transformers' stock modules on
the CPU they were written on (AMD EPYC, MKL: a step 42 -> 25 ms) and 1.75x slower on another
(Intel Xeon with AVX-512). No fixed default can be right on every machine, so at load a short
timed check runs both sets on the model's own shapes: a one-token decode step and a four-token
verify over a cache of `CONTEXT` tokens, the two sets interleaved round by round, median of
`ROUNDS`. The decode kernels are kept only when their median is at least `MARGIN` faster and
they win more than two thirds of the paired rounds; otherwise (in doubt, say on a busy machine)
stock. The choice and both timings are cached per machine, model, dtype,
threads and library versions (`kernel-choice.json` in the cache folder; delete it to measure
again) and recorded in the environment of every result.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from decbench.backends import kernels
from decbench.backends.runner import ModelRunner
from decbench.environment import cpu_model
from decbench.models import cache_root, fingerprint

CONTEXT = 96  # cached tokens under the timed forwards
SHAPES = (1, 4)  # new tokens per timed forward: a decode step and a short verify
ROUNDS = 7
MARGIN = 0.05  # the decode kernels must be at least 5% faster to be chosen
VERSION = 1  # bump when kernels.py changes what it computes, to re-measure cached choices


@dataclass(frozen=True)
class KernelChoice:
    """What a runner's model runs on, why, and what the check measured (ms per round: one decode
    step plus one 4-token verify)."""

    kernels: str  # "decbench" | "stock": what runs
    mode: str  # what backend.kernels asked for: auto | decbench | stock
    source: str  # "asked" (a fixed mode), "measured" now, or "cached" from an earlier check
    decbench_ms: float | None = None
    stock_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(runner: ModelRunner, mode: str, dtype: torch.dtype) -> KernelChoice:
    """Apply `mode` to the runner's model (installing the decode kernels or not) and return the
    choice. "auto" measures, or reuses a cached measurement of this machine and model."""
    kernels.check_mode(mode)
    if mode != "auto":
        choice = KernelChoice(mode, mode, "asked")
    else:
        key = cache_key(runner, dtype)
        cached = read_cache().get(key)
        if cached is not None:
            choice = KernelChoice(**{**cached, "source": "cached"})
        else:
            choice = measure(runner)
            write_cache(key, choice)
    if choice.kernels == "decbench":
        kernels.install(runner.model)
    else:
        kernels.restore(runner.model)
    return choice


def measure(runner: ModelRunner) -> KernelChoice:
    """Time both kernel sets on the runner's model, interleaved, and pick the faster (stock
    unless the decode kernels win by MARGIN). The model is left on stock modules."""
    model = runner.model
    vocab = runner.vocab_size
    prompt = (torch.arange(CONTEXT) * 7919 % max(vocab - 1, 1) + 1).view(1, -1)
    rounds: dict[str, list[float]] = {"stock": [], "decbench": []}
    try:
        runner.prefill(prompt)
        for r in range(ROUNDS + 1):  # round 0 warms both sets up and is not counted
            for name in ("stock", "decbench"):
                if name == "decbench":
                    kernels.install(model)
                else:
                    kernels.restore(model)
                seconds = _round(runner, prompt)
                if r:
                    rounds[name].append(seconds)
    finally:
        kernels.restore(model)
        runner.reset()
    stock = statistics.median(rounds["stock"]) * 1e3
    fast = statistics.median(rounds["decbench"]) * 1e3
    wins = sum(f < s for f, s in zip(rounds["decbench"], rounds["stock"], strict=True))
    clear = fast <= (1 - MARGIN) * stock and wins > 2 * ROUNDS // 3
    winner = "decbench" if clear else "stock"
    return KernelChoice(winner, "auto", "measured", round(fast, 3), round(stock, 3))


def _round(runner: ModelRunner, prompt: torch.Tensor) -> float:
    """One decode step and one 4-token verify over the cached prompt, each cropped away."""
    base = runner.cache_len
    runner.synchronize()
    start = time.perf_counter()
    for n in SHAPES:
        runner.forward(prompt[:, :n])
        runner.crop(base)
    runner.synchronize()
    return time.perf_counter() - start


# -- the per-machine cache ---------------------------------------------------------------------
def cache_file() -> Path:
    return cache_root() / "kernel-choice.json"


def cache_key(runner: ModelRunner, dtype: torch.dtype) -> str:
    import transformers

    model = fingerprint(runner.folder) if runner.folder else runner.name
    parts = [
        f"v{VERSION}",
        cpu_model(),
        str(runner.device),
        str(dtype).removeprefix("torch."),
        f"threads={torch.get_num_threads()}",
        f"torch={torch.__version__}",
        f"transformers={transformers.__version__}",
        model,
    ]
    return " | ".join(parts)


def read_cache() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no cache yet, or a damaged one: measure again
    return data if isinstance(data, dict) else {}


def write_cache(key: str, choice: KernelChoice) -> None:
    """Add one entry (atomic: temp file + rename; a concurrent writer may drop an entry, which
    only costs a new measurement)."""
    data = read_cache()
    data[key] = {k: v for k, v in choice.to_dict().items() if k != "source"}
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache folder: the choice still applies to this run

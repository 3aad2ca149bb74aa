"""The one place a generation is timed. `generate`, `compare`, `profile` and `bench/run.py` all
measure through `measure` (compare's harness and profile call it per turn; bench/run.py runs
compare), so a tokens-per-second figure means the same thing wherever it is printed.

What a measurement owns:
- tokenisation, timed on its own and reported as the `tokenize` phase, outside the wall time;
- synchronisation: the device is synchronised before the clock starts and before it stops, so
  queued CUDA work is neither missed nor charged to the next run;
- the wall time of the decoder's `generate` alone;
- the target model's forwards during `generate`, counted in one way for every method: a forward
  pre-hook on the target's module (the denoiser, for dllm-* methods) counts every call of that
  module, whether it comes from decbench's ModelRunner, the diffusion runner or transformers'
  `generate`. So the prefill counts, a batched forward (beams, FreeDave's drafts, contrastive
  candidates) counts once, and a draft model's forwards do not count, not even a
  `self:layers=N` draft, which shares the target's hook tables but is a different module;
- warm-up: one short untimed run, so that lazy initialisation is not timed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.results import GenerationResult

if TYPE_CHECKING:
    from decbench.run import Session

T = TypeVar("T")

WARMUP_TOKENS = 16  # a warm-up run decodes at most this many tokens


@dataclass
class ForwardCount:
    calls: int = 0  # forwards of the counted module so far


@contextlib.contextmanager
def counting_forwards(model: nn.Module) -> Iterator[ForwardCount]:
    """Count the forwards of `model` (itself, not modules sharing its hooks) inside the block.
    The hook is removed on exit; while it is on, each forward pays one Python call."""
    count = ForwardCount()

    def hook(module: nn.Module, args: tuple) -> None:
        if module is model:
            count.calls += 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()


@dataclass
class Measurement:
    result: GenerationResult  # its timings.phases carry `tokenize`
    wall_s: float  # the decoder's generate, device synchronised on both sides
    forward_calls: int  # target-model forwards during generate, prefill included


def timed_ids(encode: Callable[[], list[int]]) -> tuple[list[int], float]:
    """Prompt ids and the seconds their tokenisation took (reported, never in the wall time)."""
    start = time.perf_counter()
    ids = encode()
    return ids, time.perf_counter() - start


def measure(session: Session, request: Request) -> Measurement:
    """Decode `request` with the session's decoder, timed and counted as described above."""
    measured = measure_call(session.target, lambda: session.decoder.generate(request))
    measured.result.timings.phases["tokenize"] = request.tokenize_s
    return measured


def warm_up(session: Session, request: Request) -> None:
    """One untimed run of at most WARMUP_TOKENS new tokens of `request`."""
    limit = min(WARMUP_TOKENS, request.generation.max_new_tokens)
    generation = dataclasses.replace(request.generation, max_new_tokens=limit)
    session.decoder.generate(dataclasses.replace(request, generation=generation, on_tokens=None))


def timed(target: ModelRunner, call: Callable[[], T]) -> tuple[T, float, int]:
    """`call()` on `target`: its value, its wall time (device synchronised on both sides) and
    the target's forwards during it."""
    with counting_forwards(target.model) as forwards:
        target.synchronize()
        t0 = time.perf_counter()
        value = call()
        target.synchronize()
        wall = time.perf_counter() - t0
    return value, wall, forwards.calls


def measure_call(target: ModelRunner, call: Callable[[], GenerationResult]) -> Measurement:
    """`call()` (one decode on `target`), timed and counted as `measure` does."""
    return Measurement(*timed(target, call))


@dataclass
class BatchMeasurement:
    results: list[GenerationResult]  # in request order
    wall_s: float  # the whole batch, device synchronised on both sides
    forward_calls: int  # batched target forwards (one per step for all live rows)


def measure_batch(session: Session, requests: list[Request]) -> BatchMeasurement:
    """Decode `requests` as one ragged batch (decbench/decoders/batch.py; one request: a plain
    generate), timed and counted as `measure` does."""
    decoder = session.decoder
    if len(requests) == 1:
        return BatchMeasurement(*timed(session.target, lambda: [decoder.generate(requests[0])]))
    return BatchMeasurement(*timed(session.target, lambda: decoder.generate_batch(requests)))


@torch.inference_mode()
def forward_seconds(
    target: ModelRunner, prompt_ids: list[int], sizes: list[int], repeats: int, warm: int = 0
) -> dict[int, list[float]]:
    """Seconds of one target forward over n new tokens (all logits, as a verify step runs it) on
    top of the prefilled prompt, for each n in `sizes`, `repeats` times with the sizes
    interleaved, after `warm` untimed rounds. The cache is cropped back after every forward;
    the runner is left prefilled with the prompt. `profile`'s verify-cost curve and the tree
    sizer (decoders/speculative/tree_size.py) both measure with this."""
    target.prefill(torch.tensor([prompt_ids]))
    base = target.cache_len
    largest = max(sizes)
    pool = (prompt_ids * (largest // max(len(prompt_ids), 1) + 1))[:largest]
    seconds: dict[int, list[float]] = {n: [] for n in sizes}
    for round_ in range(warm + repeats):
        for n in sizes:
            ids = torch.tensor([pool[:n]])
            target.synchronize()
            t0 = time.perf_counter()
            target.forward(ids)
            target.synchronize()
            if round_ >= warm:
                seconds[n].append(time.perf_counter() - t0)
            target.crop(base)
    return seconds

"""What the reference decoders share: one call to transformers' own `model.generate`, timed,
with forward hooks that log every target (and assistant) forward so the same step trace as
decbench's decoders can be rebuilt from the calls.

These decoders are the only place in decbench that calls `generate`; they exist to measure
decbench's decoders against transformers' implementations on identical prompts and stop rules.

Rebuilding the trace relies on transformers' cache invariant, the same one decbench's engine
keeps: before each step the cache holds every committed token except the last, so a forward
that starts at cache position s was issued with s + 1 committed tokens, and its input tokens
past that point are the draft. The prefill is the first target forward (under assisted
generation it already carries the first draft).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from transformers import GenerationConfig

from decbench.backends.compat import cache_in
from decbench.backends.runner import ModelRunner
from decbench.backends.timing import synchronize
from decbench.decoders.base import Request
from decbench.decoders.state import STOP_WINDOW
from decbench.errors import RunError
from decbench.metrics.acceptance import AcceptanceStats
from decbench.results import GenerationResult, StepTrace, Timings

TARGET = "target"
DRAFT = "draft"


@dataclass
class ForwardCall:
    role: str  # TARGET or DRAFT
    start: int  # cache length before the call: position of its first input token
    tokens: list[int]  # [n] input ids of the call
    seconds: float = 0.0
    end: float = 0.0  # perf_counter() when it finished


@dataclass
class ForwardRecorder:
    """Logs every forward of the given modules. Hooks are removed on exit. A draft derived from
    the target (`self:layers=N`) shares the target's hook tables, so each hook checks that the
    module called is its own."""

    models: dict[str, nn.Module]  # role -> module
    device: torch.device
    calls: list[ForwardCall] = field(default_factory=list)
    _open: dict[int, tuple[ForwardCall, float]] = field(default_factory=dict)

    @contextlib.contextmanager
    def recording(self) -> Iterator[ForwardRecorder]:
        handles = []
        for role, module in self.models.items():
            handles.append(
                module.register_forward_pre_hook(self._before(role, module), with_kwargs=True)
            )
            handles.append(module.register_forward_hook(self._after(module), with_kwargs=True))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _before(self, role: str, own: nn.Module) -> Callable[..., None]:
        def hook(module, args, kwargs):
            if module is not own:
                return
            ids = kwargs.get("input_ids", args[0] if args else None)
            cache = cache_in(kwargs)
            start = int(cache.get_seq_length()) if cache is not None else 0
            tokens = ids[0].tolist() if ids is not None else []
            synchronize(self.device)
            self._open[id(own)] = (ForwardCall(role, start, tokens), time.perf_counter())

        return hook

    def _after(self, own: nn.Module) -> Callable[..., None]:
        def hook(module, args, kwargs, output):
            if module is not own or id(own) not in self._open:
                return
            call, began = self._open.pop(id(own))
            synchronize(self.device)
            call.end = time.perf_counter()
            call.seconds = call.end - began
            self.calls.append(call)

        return hook


def rebuild_steps(
    calls: list[ForwardCall], prompt_len: int, generated: list[int], decode_phase: str
) -> list[StepTrace]:
    """One StepTrace per target forward, from the logged calls and the final output.

    The forward at cache position s (after the prefill) was issued with s + 1 - prompt_len
    tokens committed; what it committed is the difference to the next one's. Drafted tokens are
    the input past the committed ones; accepted = their common prefix with the output (the last
    committed token of a step counts as the target's token, also when a stop cut the step).
    """
    targets = [c for c in calls if c.role == TARGET]
    before = [0] + [c.start + 1 - prompt_len for c in targets[1:]]
    after = [*before[1:], len(generated)]
    steps: list[StepTrace] = []
    draft_s = 0.0
    index = 0
    for call in calls:
        if call.role != TARGET:
            draft_s += call.seconds
            continue
        emitted = after[index] - before[index]
        if emitted < 1:
            raise RunError(
                f"cannot rebuild the step trace of transformers' generate: target forward "
                f"{index} committed {emitted} tokens (did its cache handling change?)"
            )
        committed = prompt_len + before[index]
        drafted = call.tokens[committed - call.start :]
        window = generated[before[index] : after[index]]
        accepted = min(_common_prefix(drafted, window), emitted - 1)
        times = {("prefill" if index == 0 else decode_phase): call.seconds}
        if draft_s:
            times["draft"] = draft_s
        steps.append(
            StepTrace(
                drafted=drafted,
                draft_probs=None,
                accepted=accepted,
                bonus=window[-1],
                recovered=accepted < len(drafted),
                emitted=emitted,
                times=times,
            )
        )
        draft_s = 0.0
        index += 1
    if sum(s.emitted for s in steps) != len(generated):
        raise RunError("cannot rebuild the step trace of transformers' generate: counts differ")
    return steps


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def generation_config(
    target: ModelRunner, request: Request, max_new: int, **extra: Any
) -> GenerationConfig:
    """A complete GenerationConfig from decbench's settings (nothing inherited from the model's
    own generation_config, so the stop rules are exactly decbench's)."""
    s = request.sampling
    eos = target.eos_token_ids
    pad = getattr(target.model.generation_config, "pad_token_id", None)
    values = {
        "max_new_tokens": max_new,
        "do_sample": not s.greedy,
        "eos_token_id": eos or None,
        "pad_token_id": pad if pad is not None else (eos[0] if eos else 0),
        "repetition_penalty": s.repetition_penalty,
        "stop_strings": list(request.generation.stop) or None,
    }
    if not s.greedy:
        values.update(
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p or None,
            typical_p=s.typical_p,
        )
    return GenerationConfig(**values, **extra)


def run_reference(
    method: str,
    params: object,
    target: ModelRunner,
    request: Request,
    decode_phase: str = "decode",
    assistant: ModelRunner | None = None,
    **extra: Any,
) -> GenerationResult:
    """Run transformers' `generate` once and return a GenerationResult like any decoder's."""
    prompt_len = len(request.prompt_ids)
    max_new = max(0, min(request.generation.max_new_tokens, target.max_context - prompt_len))
    config = generation_config(target, request, max_new, **extra)
    models = {TARGET: target.model}
    if assistant is not None:
        models[DRAFT] = assistant.model
    recorder = ForwardRecorder(models, target.device)
    ids = torch.tensor([request.prompt_ids], device=target.device)
    kwargs = {"assistant_model": assistant.model} if assistant is not None else {}
    if config.stop_strings:
        kwargs["tokenizer"] = target.tokenizer
    if not request.sampling.greedy:
        torch.manual_seed(request.sampling.seed)  # generate draws from torch's global RNG
    generated: list[int] = []
    target.synchronize()
    t0 = time.perf_counter()
    if max_new > 0:
        with _quiet(), recorder.recording(), torch.inference_mode():
            out = target.model.generate(
                ids, attention_mask=torch.ones_like(ids), generation_config=config, **kwargs
            )
        generated = out[0, prompt_len:].tolist()
    target.synchronize()
    total = time.perf_counter() - t0
    steps = rebuild_steps(recorder.calls, prompt_len, generated, decode_phase) if generated else []
    return _result(method, params, target, request, generated, steps, total, t0, recorder, max_new)


def _result(
    method: str,
    params: object,
    target: ModelRunner,
    request: Request,
    generated: list[int],
    steps: list[StepTrace],
    total: float,
    t0: float,
    recorder: ForwardRecorder,
    max_new: int,
) -> GenerationResult:
    phases: dict[str, float] = {}
    for step in steps:
        for name, seconds in step.times.items():
            phases[name] = phases.get(name, 0.0) + seconds
    first_end = next((c.end for c in recorder.calls if c.role == TARGET), time.perf_counter())
    tokenizer = target.tokenizer
    text = tokenizer.decode(generated, skip_special_tokens=True) if tokenizer else ""
    timings = Timings(
        total_s=total,
        ttft_s=first_end - t0,
        prefill_s=phases.get("prefill", 0.0),
        tokenize_s=request.tokenize_s,
        phases=phases,
        tokens_per_s=len(generated) / total if total > 0 else 0.0,
    )
    return GenerationResult(
        method=method,
        params=asdict(params),
        model=target.name,
        prompt=request.prompt,
        prompt_tokens=len(request.prompt_ids),
        token_ids=generated,
        text=text,
        finish_reason=_finish_reason(target, request, generated, max_new),
        timings=timings,
        stats=AcceptanceStats.from_steps(steps).summary(),
        steps=steps,
        sampling=asdict(request.sampling),
        generation=asdict(request.generation),
    )


def _finish_reason(
    target: ModelRunner, request: Request, generated: list[int], max_new: int
) -> str:
    """The same order of stop rules as decbench's GenerationState: EOS, stop string, length."""
    if generated and generated[-1] in target.eos_token_ids:
        return "eos"
    stops = request.generation.stop
    if stops and target.tokenizer is not None:
        tail = target.tokenizer.decode(generated[-STOP_WINDOW:])
        if any(stop in tail for stop in stops):
            return "stop"
    return "length"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """transformers logs warnings from generate (on stderr, which decbench owns)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)

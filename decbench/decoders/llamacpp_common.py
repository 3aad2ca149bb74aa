"""What the llama.cpp reference decoders share: llama-cpp-python's own high-level
`Llama.generate` on the target's GGUF, timed, with every `eval` logged so that the same step
trace as decbench's decoders is rebuilt from the calls (hf_common.rebuild_steps: llama-cpp-python
keeps the same cache invariant as transformers, every committed token but the last is cached).

The `Llama` gets the runner's GGUF, threads, context and batch size, so the two differ only in
the decoding loop. Tokens are counted from the generated ids, and decbench's GenerationState
applies the stop rules (llama.cpp's end-of-generation tokens, max_new_tokens, stop strings), so
the references stop exactly where decbench's decoders do. Each eval runs through the runner's
`model` module, so compare counts its forwards as it counts decbench's.
"""

from __future__ import annotations

import time
from typing import Any

from decbench.backends.llamacpp import LlamaCppRunner, llama_cpp_module
from decbench.decoders.base import Request
from decbench.decoders.hf_common import TARGET, ForwardCall, rebuild_steps
from decbench.decoders.state import GenerationState
from decbench.errors import ConfigError
from decbench.results import GenerationResult


def open_llama(target: LlamaCppRunner, draft_model: Any = None) -> Any:
    """A `llama_cpp.Llama` on the target's GGUF and settings whose evals are logged and timed."""
    llama_cpp_module()
    from llama_cpp import Llama

    class RecordingLlama(Llama):
        """Llama whose `eval` (one forward over the given tokens) is logged, timed and counted."""

        calls: list[ForwardCall]
        decode_phase = "decode"

        def eval(self, tokens) -> None:
            call = ForwardCall(TARGET, self.n_tokens, [int(t) for t in tokens])
            phase = self.decode_phase if self.calls else "prefill"
            with target.timer.phase(phase):
                began = time.perf_counter()
                target.model(lambda: Llama.eval(self, tokens))
                call.end = time.perf_counter()
            call.seconds = call.end - began
            self.calls.append(call)

    llama = RecordingLlama(
        str(target.gguf),
        n_ctx=target.n_ctx,
        n_batch=target.n_batch,
        n_ubatch=target.n_batch,
        n_threads=target.threads,
        n_threads_batch=target.threads,
        flash_attn=False,
        draft_model=draft_model,
        verbose=False,
    )
    llama.calls = []
    return llama


def check_no_penalty(method: str, request: Request) -> None:
    """llama.cpp's greedy sampler has no repetition penalty (temperature > 0 is refused before
    loading: these methods declare samples=False)."""
    if request.sampling.repetition_penalty != 1.0:
        raise ConfigError(
            f"method '{method}' runs llama.cpp's greedy sampler only; set "
            "sampling.repetition_penalty = 1"
        )


def run_llama_reference(
    method: str,
    params: object,
    target: LlamaCppRunner,
    llama: Any,
    request: Request,
    decode_phase: str = "decode",
) -> GenerationResult:
    """Run `llama.generate` at temperature 0 from a fresh cache; a GenerationResult like any
    decoder's."""
    check_no_penalty(method, request)
    state = GenerationState(method, params, target, request)
    if state.max_new == 0:
        return state.result()
    llama.calls = []
    llama.decode_phase = decode_phase
    llama.reset()  # no reuse of a previous run's prompt cache: every run pays its prefill
    tokens = llama.generate(request.prompt_ids, temp=0.0, repeat_penalty=1.0)
    try:
        for token in tokens:
            state.commit([int(token)])
            if state.done:
                break
    finally:
        tokens.close()
    steps = rebuild_steps(llama.calls, state.prompt_len, state.generated, decode_phase)
    for step in steps:  # the trace comes from the logged evals, not from GenerationState.record
        state.steps.append(step)
        state.stats.observe_step(step)
    return state.result()

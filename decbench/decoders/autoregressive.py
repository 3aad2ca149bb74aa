"""The plain one-token-per-forward loop that `greedy` and `sample` share."""

from __future__ import annotations

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.decoders.state import GenerationState
from decbench.results import GenerationResult
from decbench.sampler import choose, make_generator


def decode_autoregressive(
    method: str, params: object, target: ModelRunner, request: Request
) -> GenerationResult:
    """prefill → (choose → decode_step)*. One target forward per generated token."""
    state = GenerationState(method, params, target, request)
    sampling = request.sampling
    generator = None if sampling.greedy else make_generator(sampling)
    timer = target.timer
    if state.max_new == 0:
        return state.result()
    ids = torch.tensor([request.prompt_ids])
    with timer.phase("prefill"):
        logits = target.prefill(ids).logits[:, -1]  # [1, vocab]
    while True:
        with timer.phase("sampling"):
            token = choose(logits, sampling, [state.tokens], generator, state.allowed())[0]
        emitted = state.commit([token])
        state.record([], None, 0, token, False, emitted)
        if state.done:
            return state.result()
        with timer.phase("decode"):
            logits = target.forward(torch.tensor([[token]]), all_logits=False).logits[:, -1]

"""Tiny random bidirectional denoisers for the dllm-* tests (milliseconds per forward)."""

from __future__ import annotations

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.registry import get_decoder
from decbench.results import GenerationResult
from tests.conftest import TINY_VOCAB, make_request, no_models_ctx, runner_for, tiny_llama

MASK = TINY_VOCAB - 1  # the tiny denoisers' mask token
EOS = 1


def tiny_dllm(seed: int = 0, shift: bool = True, sharp: float = 1.0, eos_like: int | None = None):
    """A 2-layer random Llama marked as a decbench dLLM. `sharp` scales the LM head so that
    predictions are peaked (a trained denoiser is confident; a random one is flat).
    `eos_like`: make EOS score like that token, so that generations end early."""
    model = tiny_llama(seed)
    model.config.decbench_dllm = {"mask_token_id": MASK, "shift": shift}
    with torch.no_grad():
        model.lm_head.weight.mul_(sharp)
        if eos_like is not None:
            model.lm_head.weight[EOS] = model.lm_head.weight[eos_like] * 1.01
    return model


def dllm_runner(**kwargs) -> ModelRunner:
    return runner_for(tiny_dllm(**kwargs))


def decode(runner: ModelRunner, method: str, prompt: list[int], n: int = 24, **options):
    cls = get_decoder(method)
    decoder = cls(runner, cls.Options(**options), no_models_ctx())
    return decoder.generate(make_request(prompt, max_new_tokens=n))


def prompts(count: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        n = int(torch.randint(1, 12, (1,), generator=g))
        out.append(torch.randint(2, MASK, (n,), generator=g).tolist())
    return out


def calls(result: GenerationResult) -> int:
    return result.stats["dllm"]["forward_calls"]

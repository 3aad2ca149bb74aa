"""dllm-confidence: the reference decoding of masked-diffusion LMs. Fixed steps: in
semi-autoregressive blocks, each denoiser forward unmasks the k most confident masked positions
of the current block (confidence = probability of the argmax token), never remasking.

Paper: Nie, Zhu, You, Zhang, Ou, Hu, Zhou, Lin, Wen, Li, "Large Language Diffusion Models"
(LLaDA), 2025 — the "low-confidence remasking" sampler with semi-autoregressive blocks.
Reproduces that reference decoding (greedy, temperature 0). Not lossless with respect to any
autoregressive model: it *is* the reference that the other dllm-* methods are measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import DiffusionDecode, static_step
from decbench.diffusion.runner import DiffusionRunner
from decbench.options import option
from decbench.results import GenerationResult


@register_decoder
class DllmConfidence(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="dllm-confidence",
        summary="dLLM reference: k most confident masked positions per forward, in blocks",
        paper="Nie et al., Large Language Diffusion Models (LLaDA), 2025",
        lossless=False,
        lossless_note="the dLLM reference decoding itself; other dllm-* methods are compared "
        "to it (there is no autoregressive target to be lossless against)",
        samples=False,
        diffusion=True,
    )

    @dataclass
    class Options:
        block_length: int = option(32, ge=1)  # semi-autoregressive block size (tokens)
        # k: positions unmasked per forward (steps = block / k)
        tokens_per_step: int = option(1, ge=1)

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.denoiser = DiffusionRunner.wrap(target)

    def generate(self, request: Request) -> GenerationResult:
        run = DiffusionDecode(
            self.spec.name,
            self.options,
            self.target,
            self.denoiser,
            request,
            self.options.block_length,
        )
        while not run.done:
            logits = run.denoise()
            positions, tokens = static_step(run.canvas, logits, self.options.tokens_per_step)
            run.apply(positions, tokens)
        return run.result()

"""dllm-threshold: Fast-dLLM's confidence-aware parallel decoding with a block-wise KV cache.

Paper: Wu, Zhang, Liu, Lan, Chen, Xu, Xie, Han, Li, Du, "Fast-dLLM: Training-free Acceleration
of Diffusion LLM by Enabling KV Cache and Parallel Decoding", 2025.

Each forward unmasks every masked position of the current block whose confidence exceeds
`threshold`, or the single most confident one when none does. With `cache = "prefix"` the
first forward of each block runs the whole canvas and caches the keys and values before the
block; later forwards of the block run only the block and what follows it against that cache
(`"dual"` also caches the suffix and runs only the block). The cache is refreshed at every
block. Lossy, as the paper says: parallel unmasking departs from the one-token-per-step
reference, and the cache is approximate after each block's first step. `threshold = 1.0` is one
token per step (no confidence exceeds 1), and with `cache = "none"` that reproduces
dllm-confidence with tokens_per_step = 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import DiffusionDecode, above_threshold, confidence
from decbench.diffusion.runner import CACHE_MODES, DiffusionRunner
from decbench.errors import ConfigError
from decbench.options import option
from decbench.results import GenerationResult


@register_decoder
class DllmThreshold(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="dllm-threshold",
        summary="Fast-dLLM: unmask all positions above a confidence threshold, block KV cache",
        paper="Wu et al., Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling "
        "KV Cache and Parallel Decoding, 2025",
        lossless=False,
        lossless_note="parallel unmasking and the approximate block cache depart from "
        "dllm-confidence; threshold 1.0 without cache reproduces it",
        samples=False,
        diffusion=True,
    )

    @dataclass
    class Options:
        block_length: int = option(32, ge=1)  # semi-autoregressive block size (tokens)
        # unmask every position whose confidence exceeds this
        threshold: float = option(0.9, ge=0, le=1)
        # none | prefix | dual (Fast-dLLM's block KV cache)
        cache: str = option("prefix", choices=CACHE_MODES)

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.denoiser = DiffusionRunner.wrap(target)
        if options.cache != "none" and not self.denoiser.info.supports_cache:
            raise ConfigError(
                f"method.cache = '{options.cache}' needs a decbench dLLM; this "
                f"{self.denoiser.info.kind} model runs with method.cache = 'none'"
            )

    def generate(self, request: Request) -> GenerationResult:
        opts = self.options
        run = DiffusionDecode(
            self.spec.name, opts, self.target, self.denoiser, request, opts.block_length
        )
        block = -1
        while not run.done:
            current = run.canvas.current_block()
            start, end = run.canvas.block_range(current)
            p = run.canvas.prompt_len
            with run.timer.phase("denoise"):
                if current != block:  # refresh the cache at each block's first step
                    logits = self.denoiser.begin_block(
                        run.canvas.ids, p + start, p + end, opts.cache
                    )
                    block = current
                else:
                    logits = self.denoiser.step_block(run.canvas.ids)
            conf, tokens = confidence(logits[0])
            allowed = run.canvas.block_mask()[start:end]
            chosen = above_threshold(conf, allowed, opts.threshold)
            run.apply([start + i for i in chosen], tokens[chosen].tolist(), current)
        return run.result()

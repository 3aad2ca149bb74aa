"""dllm-prophet: early-commit decoding. Runs the reference decoding (k most confident positions
per forward, in blocks) but after every forward measures how sure the denoiser is: the mean gap
between the top-1 and top-2 logits over the still-masked positions. When that gap clears a
threshold that falls as decoding progresses (high early, lower late), it commits every remaining
position to its argmax at once ("all-in") and stops.

Paper: Li, Zhou, Muhtar, Yin, Yan, Shen, Liang, Vosoughi, Liu, "Diffusion Language Models Know
the Answer Before Decoding" (Prophet), 2025. Default thresholds are the paper's (7.5 / 5.0 / 2.5
for the first, middle and last third of the reference steps). One deviation: the paper monitors
the answer span of math/QA prompts; a general-purpose harness has no answer span, so the gap is
averaged over all masked positions. Lossy: the all-in commit can differ from what the remaining
reference steps would have produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import DiffusionDecode, static_step
from decbench.diffusion.runner import DiffusionRunner
from decbench.options import option
from decbench.results import GenerationResult


def top2_gap(logits: torch.Tensor, masked: torch.Tensor) -> float:
    """Mean top-1 minus top-2 logit over masked positions. logits [gen, vocab], masked [gen]."""
    top = logits[masked].topk(2, dim=-1).values  # [n_masked, 2]
    return float((top[:, 0] - top[:, 1]).mean()) if len(top) else math.inf


@register_decoder
class DllmProphet(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="dllm-prophet",
        summary="Prophet: reference decoding, all-in commit once the top-2 logit gap is large",
        paper="Li et al., Diffusion Language Models Know the Answer Before Decoding, 2025",
        lossless=False,
        lossless_note="identical to dllm-confidence until the early commit, which fills every "
        "remaining position with its current argmax",
        samples=False,
        diffusion=True,
    )

    @dataclass
    class Options:
        block_length: int = option(32, ge=1)  # semi-autoregressive block size (tokens)
        tokens_per_step: int = option(1, ge=1)  # k of the underlying reference decoding
        early_threshold: float = 7.5  # gap needed in the first third of the reference steps
        mid_threshold: float = 5.0  # ... in the middle third
        late_threshold: float = 2.5  # ... in the last third

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.denoiser = DiffusionRunner.wrap(target)

    def threshold(self, progress: float) -> float:
        o = self.options
        if progress < 1 / 3:
            return o.early_threshold
        return o.mid_threshold if progress < 2 / 3 else o.late_threshold

    def generate(self, request: Request) -> GenerationResult:
        k = self.options.tokens_per_step
        run = DiffusionDecode(
            self.spec.name,
            self.options,
            self.target,
            self.denoiser,
            request,
            self.options.block_length,
        )
        total = max(1, math.ceil(run.canvas.gen_len / k))  # reference steps (about)
        steps, early = 0, None
        while not run.done:
            logits = run.denoise()
            masked = run.canvas.masked
            if top2_gap(logits, masked) >= self.threshold(steps / total):
                self.commit_all(run, logits, masked)
                early = steps
                break
            positions, tokens = static_step(run.canvas, logits, k)
            run.apply(positions, tokens)
            steps += 1
        result = run.result()
        result.stats["dllm"]["early_commit_step"] = early  # reference steps before it
        return result

    def commit_all(self, run: DiffusionDecode, logits: torch.Tensor, masked: torch.Tensor) -> None:
        """The all-in step: every masked position takes its argmax."""
        positions = masked.nonzero().flatten().tolist()
        run.apply(positions, logits[positions].argmax(-1).tolist())

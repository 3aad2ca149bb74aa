"""dllm-credit: CreditDecoding. Threshold-based parallel unmasking (as in Fast-dLLM, without
cache) whose confidences come from the current logits fused with each position's Trace Credit:
the evidence accumulated over earlier forwards for the token that was top-1 there.

Paper: Wang, Jiang, Feng, Zhao, Liu, Li, Lan, Lin, "CreditDecoding: Accelerating Parallel
Decoding in Diffusion Large Language Models with Trace Credits", 2025. After every forward, for
each masked position i with top-1 token v*: C[i, v] <- beta * C[i, v] for all v, then
C[i, v*] += p(v* | x)^gamma; the fused logits are log p + alpha * log(1 + C), and a position is
unmasked when its fused probability exceeds `threshold` (else the single most confident one).
The paper's update rule is followed; the default alpha/beta/gamma are our choice, not tuned
values from the paper. Lossy: credit lets positions clear the threshold earlier than the
reference would unmask them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import DiffusionDecode, above_threshold, confidence
from decbench.diffusion.runner import DiffusionRunner
from decbench.options import option
from decbench.results import GenerationResult


def update_credit(
    credit: torch.Tensor,  # [gen, vocab] trace credit, updated in place
    log_probs: torch.Tensor,  # [gen, vocab] current log-probabilities
    masked: torch.Tensor,  # [gen] bool
    beta: float,
    gamma: float,
) -> None:
    """Decay every credit of the masked positions, then credit each one's current top-1."""
    rows = masked.nonzero().flatten()
    credit[rows] *= beta
    top_logp, top = log_probs[rows].max(dim=-1)
    credit[rows, top] += torch.exp(top_logp * gamma)  # p^gamma


def fuse(log_probs: torch.Tensor, credit: torch.Tensor, alpha: float) -> torch.Tensor:
    """[gen, vocab] fused logits: log p + alpha * log(1 + C)."""
    return log_probs + alpha * torch.log1p(credit)


@register_decoder
class DllmCredit(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="dllm-credit",
        summary="CreditDecoding: threshold unmasking on logits fused with accumulated trace credit",
        paper="Wang et al., CreditDecoding: Accelerating Parallel Decoding in Diffusion Large "
        "Language Models with Trace Credits, 2025",
        lossless=False,
        lossless_note="credit boosts positions past the threshold before the reference would "
        "unmask them; alpha = 0 is plain threshold decoding",
        samples=False,
        diffusion=True,
    )

    @dataclass
    class Options:
        block_length: int = option(32, ge=1)  # semi-autoregressive block size (tokens)
        # unmask positions whose fused confidence exceeds this
        threshold: float = option(0.9, ge=0, le=1)
        alpha: float = option(0.5, ge=0)  # weight of log(1 + credit) in the fused logits
        beta: float = option(0.7, gt=0, le=1)  # per-forward decay of old credit
        gamma: float = option(0.5, gt=0, le=1)  # concave power on the credited probability

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.denoiser = DiffusionRunner.wrap(target)

    def generate(self, request: Request) -> GenerationResult:
        o = self.options
        run = DiffusionDecode(
            self.spec.name, o, self.target, self.denoiser, request, o.block_length
        )
        credit: torch.Tensor | None = None  # [gen, vocab]
        while not run.done:
            log_probs = torch.log_softmax(run.denoise(), dim=-1)
            if credit is None:
                credit = torch.zeros_like(log_probs)
            update_credit(credit, log_probs, run.canvas.masked, o.beta, o.gamma)
            conf, tokens = confidence(fuse(log_probs, credit, o.alpha))
            chosen = above_threshold(conf, run.canvas.block_mask(), o.threshold)
            run.apply(chosen, tokens[chosen].tolist())
        return run.result()

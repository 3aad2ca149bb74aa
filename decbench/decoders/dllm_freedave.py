"""dllm-freedave: Free Draft-and-Verification. Reproduces dllm-confidence token for token with
fewer denoiser forwards.

Paper: Wu, Zhang, "Free Draft-and-Verification: Toward Lossless Parallel Decoding for Diffusion
Large Language Models" (FreeDave), 2025.

The reference step is a function of the canvas and that canvas's logits. Holding the logits of
the current canvas x, FreeDave drafts the next `drafts` states by applying the reference step
repeatedly with those same logits: d1 (exactly the reference's next state), d2, ... Then one
batched forward returns the logits of every draft. d(j+1) is verified when the reference step
applied to d(j) with d(j)'s own logits yields d(j+1); the longest verified chain is accepted,
and the logits of its last state, already computed, seed the next round. Every accepted state is
a state the reference visits, so the output equals dllm-confidence's (up to floating-point
differences between a batched and a single forward, which the tests show do not change tokens
here); each round costs one forward and advances one or more reference steps. The batched
forward costs more compute per call, so fewer forwards is a wall-clock gain only where a
forward is memory-bound (a GPU at batch 1, not a small model on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import Canvas, DiffusionDecode, static_step
from decbench.diffusion.runner import DiffusionRunner
from decbench.errors import ConfigError
from decbench.results import GenerationResult


@dataclass
class Draft:
    canvas: Canvas  # the drafted state
    positions: list[int]  # [k] positions its step unmasked
    tokens: list[int]  # [k]
    block: int  # block that step decoded


def draft(canvas: Canvas, logits: torch.Tensor, k: int, n: int) -> list[Draft]:
    """Up to n future states by repeated reference steps with the same logits [gen, vocab]."""
    drafts, state = [], canvas
    for _ in range(n):
        if state.complete:
            break
        block = state.current_block()
        positions, tokens = static_step(state, logits, k)
        state = state.copy()
        state.place(positions, tokens)
        drafts.append(Draft(state, positions, tokens, block))
    return drafts


def verify(drafts: list[Draft], logits: torch.Tensor, k: int) -> int:
    """How many drafts are reference states: d1 always is; d(j+1) is when the reference step
    from d(j) with its own logits (logits [n_drafts, gen, vocab]) places what d(j+1) placed."""
    accepted = 1
    while accepted < len(drafts):
        positions, tokens = static_step(drafts[accepted - 1].canvas, logits[accepted - 1], k)
        nxt = drafts[accepted]
        if positions != nxt.positions or tokens != nxt.tokens:
            break
        accepted += 1
    return accepted


def cut_at_finish(run: DiffusionDecode, drafts: list[Draft]) -> list[Draft]:
    """Drop the drafts past the first one that ends the generation (EOS, length, full)."""
    for i, d in enumerate(drafts):
        if run.would_finish(d.canvas):
            return drafts[: i + 1]
    return drafts


@register_decoder
class DllmFreeDave(Decoder):
    spec = MethodSpec(
        name="dllm-freedave",
        summary="FreeDave: draft future reference steps, verify them in one batched forward",
        paper="Wu and Zhang, Free Draft-and-Verification: Toward Lossless Parallel Decoding for "
        "Diffusion Large Language Models, 2025",
        lossless=False,
        lossless_note="reproduces dllm-confidence token for token (tested); lossless with "
        "respect to that dLLM reference, not to an autoregressive model",
        samples=False,
        diffusion=True,
    )

    @dataclass
    class Options:
        block_length: int = 32  # semi-autoregressive block size (tokens), as the reference
        tokens_per_step: int = 1  # k of the reproduced reference decoding
        drafts: int = 4  # future states drafted and verified per forward (batch size)

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        if options.tokens_per_step < 1 or options.drafts < 1:
            raise ConfigError(
                f"method.tokens_per_step and method.drafts must be >= 1, got "
                f"{options.tokens_per_step} and {options.drafts}"
            )
        self.denoiser = DiffusionRunner.wrap(target)

    def generate(self, request: Request) -> GenerationResult:
        o = self.options
        run = DiffusionDecode(
            self.spec.name, o, self.target, self.denoiser, request, o.block_length
        )
        if run.done:
            return run.result()
        logits = run.denoise()  # [gen, vocab] of the current canvas
        while not run.done:
            drafts = draft(run.canvas, logits, o.tokens_per_step, o.drafts)
            drafts = cut_at_finish(run, drafts)
            needed = drafts[:-1] if run.would_finish(drafts[-1].canvas) else drafts
            if not needed:  # the reference's next step already ends the generation
                self.accept(run, drafts, 0)
                break
            batch = torch.cat([d.canvas.ids for d in needed])  # [n_needed, prompt + gen]
            with run.timer.phase("verify"):
                all_logits = self.denoiser.denoise(batch, run.canvas.prompt_len)
            accepted = verify(drafts, all_logits, o.tokens_per_step)
            self.accept(run, drafts[:accepted], len(needed))
            if accepted <= len(needed):
                logits = all_logits[accepted - 1]
        return run.result()

    def accept(self, run: DiffusionDecode, chain: list[Draft], batch: int) -> None:
        """Place every accepted step's tokens as one recorded step."""
        positions = [p for d in chain for p in d.positions]
        tokens = [t for d in chain for t in d.tokens]
        run.apply(positions, tokens, chain[0].block, batch, len(chain))

"""dllm-freedave: Free Draft-and-Verification. Reproduces dllm-confidence token for token with
fewer denoiser forwards.

Paper: Wu, Zhang, "Free Draft-and-Verification: Toward Lossless Parallel Decoding for Diffusion
Large Language Models" (FreeDave), 2025.

The reference step is a function of the canvas and that canvas's logits. Each forward runs a
batch: the current canvas x (a state the reference visits) and `drafts - 1` future states made
by applying the reference step repeatedly with the logits already in hand (the previous
forward's): d1, d2, ... A draft d(i+1) is verified when the reference step from d(i) (from x
for d1) with that state's own logits, now computed, places exactly what the draft placed. The
longest verified chain is accepted, and since the logits of the state it reaches are in the
batch, that state's reference step comes free as well. Every accepted state is one the
reference visits, so the output equals dllm-confidence's (up to floating-point differences
between a batched and a single forward, which the tests show do not change tokens here); each
forward advances one or more reference steps, never fewer than the reference. The batched
forward costs more compute per call, so fewer forwards is a wall-clock gain only where a
forward is memory-bound (a GPU at batch 1, not a small model on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import Canvas, DiffusionDecode, static_step
from decbench.diffusion.runner import DiffusionRunner
from decbench.options import option
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


def verify(states: list[Canvas], drafts: list[Draft], logits: torch.Tensor, k: int) -> int:
    """How many drafts are reference states. states[0] is the current (reference) canvas and
    states[i + 1] = drafts[i].canvas; drafts[i] is verified when the reference step from
    states[i] with states[i]'s own logits (logits [n_rows, gen, vocab]) places what it placed."""
    accepted = 0
    while accepted < len(drafts):
        positions, tokens = static_step(states[accepted], logits[accepted], k)
        if positions != drafts[accepted].positions or tokens != drafts[accepted].tokens:
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
        requires=frozenset({TORCH_MODEL}),
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
        # semi-autoregressive block size (tokens), as the reference
        block_length: int = option(32, ge=1)
        tokens_per_step: int = option(1, ge=1)  # k of the reproduced reference decoding
        # sequences per forward: the canvas and drafts - 1 drafted states
        drafts: int = option(4, ge=1)

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.denoiser = DiffusionRunner.wrap(target)

    def generate(self, request: Request) -> GenerationResult:
        """One recorded step per forward: the first places the reference's first step; each
        later one places the drafts it verified plus the reference step its logits make free."""
        o, k = self.options, self.options.tokens_per_step
        run = DiffusionDecode(
            self.spec.name, o, self.target, self.denoiser, request, o.block_length
        )
        if run.done:
            return run.result()
        logits = run.denoise()  # [gen, vocab] of the current canvas
        run.apply(*static_step(run.canvas, logits, k))
        while not run.done:
            drafts = cut_at_finish(run, draft(run.canvas, logits, k, o.drafts - 1))
            states = [run.canvas] + [d.canvas for d in drafts]
            rows = states[:-1] if drafts and run.would_finish(states[-1]) else states
            with run.timer.phase("verify"):
                batch = torch.cat([s.ids for s in rows])  # [n_rows, prompt + gen]
                all_logits = self.denoiser.denoise(batch, run.canvas.prompt_len)
            accepted = verify(states, drafts, all_logits, k)
            block = run.canvas.current_block()
            positions = [p for d in drafts[:accepted] for p in d.positions]
            tokens = [t for d in drafts[:accepted] for t in d.tokens]
            steps = accepted
            if accepted < len(rows):  # the reached state's logits are known: its step is free
                logits = all_logits[accepted]
                free = static_step(states[accepted], logits, k)
                positions, tokens, steps = positions + free[0], tokens + free[1], steps + 1
            run.apply(positions, tokens, block, len(rows), steps)
        return run.result()

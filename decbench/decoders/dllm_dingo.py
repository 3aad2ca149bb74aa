"""dllm-dingo: the dLLM reference decoding under a regular-expression constraint, through DINGO's
dynamic programme.

Paper: Suresh, Banerjee, Ugare, Misailovic, Singh, "DINGO: Constrained Inference for Diffusion
LLMs", 2025.

Each denoiser forward gives the current block's positions their distributions. As in
dllm-confidence, the `tokens_per_step` most confident masked positions of the block are the ones
unmasked (the mask-prediction step, unchanged). Which tokens go there is DINGO's programme
(decbench/diffusion/dingo.py): the most probable block string that the regex's token DFA
allows from the state the blocks before it reached, with the tokens placed earlier fixed and
the positions that stay masked free to become any one token later; the block must end in a
state from which the rest of the canvas can still complete a match (the last block: a full
match, EOS padding included). The previous step's string stays allowed after its tokens are
placed, so every later programme has a solution and the finished canvas always matches the
regex (tested on random distributions and end to end). The token DFA is built once per decoder
from the tokenizer's vocabulary (decbench/diffusion/token_dfa.py).

Why a method of its own rather than an option of dllm-confidence: dllm-confidence stays the
unconstrained reference that every dllm-* method (this one included) is compared against for
agreement, and the constrained step is a different rule (a programme over the block, not the
per-position argmax). Where the regex allows every token the model prefers, the two agree token
for token (tested).

Not lossless: the constraint changes the output. Within it, the unmasked tokens are the exact
constrained argmax of the model's per-position distributions, the paper's guarantee.
Greedy only (temperature 0).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import torch

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.diffusion.canvas import Canvas, DiffusionDecode, confidence, most_confident
from decbench.diffusion.dingo import block_argmax, block_scores
from decbench.diffusion.runner import DiffusionRunner
from decbench.diffusion.token_dfa import build_token_dfa, char_dfa, token_texts
from decbench.errors import ConfigError, RunError
from decbench.metrics.constraint import search_summary
from decbench.options import option
from decbench.results import GenerationResult
from decbench.settings import ConstraintSettings


@register_decoder
class DllmDingo(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="dllm-dingo",
        summary="dLLM reference decoding whose output matches `regex` (DINGO's block programme)",
        paper="Suresh, Banerjee, Ugare, Misailovic, Singh, DINGO: Constrained Inference for "
        "Diffusion LLMs, 2025",
        lossless=False,
        lossless_note="the regex changes the output; within it each block is the exact "
        "constrained argmax; equals dllm-confidence where the regex allows the model's choices",
        samples=False,
        diffusion=True,
    )

    @dataclass
    class Options:
        regex: str = ""  # the output must match it in full (Python `re` syntax, no lookaround)
        block_length: int = option(32, ge=1)  # semi-autoregressive block size (tokens)
        tokens_per_step: int = option(1, ge=1)  # positions unmasked per forward

        def validate(self) -> None:
            char_dfa(self.regex)  # a bad regex fails when the profile is read, before any model

    @classmethod
    def takes_constraint(cls, options, settings: ConstraintSettings):
        """[constraint] kind = "grammar" with a regex (or --regex): it becomes method.regex."""
        if settings.kind != "grammar" or not settings.regex or settings.file or settings.lark:
            return None
        return dataclasses.replace(options, regex=settings.regex)

    def __init__(self, target, options, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.denoiser = DiffusionRunner.wrap(target)
        if target.tokenizer is None:
            raise ConfigError("method.regex needs the model's tokenizer; this model has none")
        start = time.perf_counter()
        mask = self.denoiser.mask_token_id
        texts = token_texts(target.tokenizer, target.vocab_size, exclude={mask})
        self.dfa = build_token_dfa(options.regex, texts, target.eos_token_ids)
        self.build_s = time.perf_counter() - start

    def generate(self, request: Request) -> GenerationResult:
        opts = self.options
        run = DiffusionDecode(
            self.spec.name, opts, self.target, self.denoiser, request, opts.block_length
        )
        shortest = int(self.dfa.distance[self.dfa.initial])
        if shortest > run.canvas.gen_len:
            raise ConfigError(
                f"method.regex {opts.regex!r}: its shortest match takes {shortest} tokens, more "
                f"than the {run.canvas.gen_len} that can be generated; raise max_new_tokens"
            )
        while not run.done:
            logits = run.denoise()
            block = run.canvas.current_block()
            positions = self.positions_to_unmask(run.canvas, logits)
            with run.timer.phase("constraint"):
                tokens = self.dingo_tokens(run.canvas, block, logits, positions)
            run.apply(positions, tokens, block)
        result = run.result()
        result.stats["constraint"] = self.stats(result)
        result.constraint = search_summary(result, "regex", "method.regex", len(result.steps))
        return result

    def positions_to_unmask(self, canvas: Canvas, logits: torch.Tensor) -> list[int]:
        """dllm-confidence's rule: the k most confident masked positions of the current block
        (confidence of the unconstrained argmax). logits: [gen, vocab]."""
        allowed = canvas.block_mask()
        conf, _ = confidence(logits)
        k = min(self.options.tokens_per_step, int(allowed.sum()))
        return most_confident(conf, allowed, k)

    def dingo_tokens(
        self, canvas: Canvas, block: int, logits: torch.Tensor, positions: list[int]
    ) -> list[int]:
        """DINGO's programme over the block, with the masked positions other than `positions`
        left as ⊥; the tokens it puts at `positions`."""
        start, end = canvas.block_range(block)
        current = canvas.generated[start:end].tolist()
        placed = {i: t for i, t in enumerate(current) if t != canvas.mask_id}
        unmask = {p - start for p in positions}
        masked = [i for i in range(end - start) if i not in placed and i not in unmask]
        scores = block_scores(self.dfa, logits[start:end], placed, masked)  # copies free rows only
        state = self.dfa.walk(canvas.generated[:start].tolist())
        end_ok = self.dfa.distance <= canvas.gen_len - end
        found = block_argmax(self.dfa, scores, state, end_ok)
        if found is None:  # cannot happen: the previous step's string is still allowed
            raise RunError(
                f"method.regex {self.options.regex!r}: no allowed string for block {block}"
            )
        chosen, _ = found
        return [chosen[p - start] for p in positions]

    def stats(self, result: GenerationResult) -> dict:
        seconds = result.timings.phases.get("constraint", 0.0)
        steps = len(result.steps)
        return {
            "kind": "regex",
            "regex": self.options.regex,
            "satisfied": self.dfa.accepts(result.token_ids),
            "dfa_states": self.dfa.states,
            "live_tokens": self.dfa.live_tokens,  # tokens allowed from some state
            "dfa_build_s": self.build_s,  # once per decoder, not per request
            "bookkeeping_s": seconds,  # DINGO programmes and DFA walks (not the confidence rule)
            "bookkeeping_s_per_step": seconds / steps if steps else 0.0,
        }

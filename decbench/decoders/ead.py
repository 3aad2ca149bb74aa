"""Entropy Adaptive Decoding (Simonds, "Entropy Adaptive Decoding: Dynamic Model Switching for
Efficient Inference", 2025).

A small model (the draft) generates while the text is easy, the large model (the target) while
it is hard. Difficulty is the entropy, in bits, of the generating model's next-token
distribution, taken from the raw logits (before temperature), and smoothed over the last
`window` tokens (the paper uses w = 5):

    H_t = −Σ_i p_i log2 p_i          H̄_t = mean(H_{t−w+1}, ..., H_t)

Generation starts on the draft. When H̄_t rises above `threshold` (τ) the target generates the
next tokens; it hands back once H̄_t is at or under τ again, but not before it has generated
`min_target_tokens` tokens (a hold that keeps the two from alternating token by token). Each
model keeps its own KV cache and catches up on the tokens the other one wrote in a single
chunked forward when it takes over. The fraction of tokens from each model, the number of
switches and the runs of each (`segments`) are in result.stats.

No token is verified: the output is not the target's. Lossy, and marked so. It honours the
[sampling] settings (each model samples its own tokens with them).

`draft` is any model sharing the target's tokenizer (a model name or folder, e.g. a distilled
student) or `self:layers=N`, the target's own first N layers and its LM head.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.draft_model import load_draft
from decbench.decoders.state import GenerationState
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import choose, make_generator

DRAFT, TARGET = "draft", "target"


@dataclass
class EadOptions:
    draft: str = "self:layers=24"  # small model: name/folder, or self:layers=N
    # τ in bits: rolling entropy above it hands over to the target
    threshold: float = option(1.5, ge=0)
    window: int = option(5, ge=1)  # w: tokens in the rolling entropy
    # the target keeps at least this many tokens once it takes over
    min_target_tokens: int = option(5, ge=1)


def entropy_bits(logits: torch.Tensor) -> float:
    """Entropy in bits of softmax(logits) ([vocab], untempered)."""
    log_probs = logits.float().log_softmax(-1)
    return -(log_probs.exp() * log_probs).nansum().item() / math.log(2)


class ModelCursor:
    """A model's KV cache and the committed tokens it already holds (EAD never rolls back)."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.cached = 0  # committed tokens in the cache

    def next_logits(self, tokens: list[int]) -> torch.Tensor:
        """Feed the tokens this model has not seen yet; return its next-token logits [vocab]."""
        feed = torch.tensor([tokens[self.cached :]])
        if self.cached == 0:
            out = self.runner.prefill(feed)
        else:
            out = self.runner.forward(feed, all_logits=False)
        self.cached = len(tokens)
        return out.logits[0, -1]


class Switch:
    """The rolling entropy and the choice of model for the next token."""

    def __init__(self, options: EadOptions) -> None:
        self.options = options
        self.window: deque[float] = deque(maxlen=options.window)
        self.active = DRAFT
        self.hold = 0  # target tokens still owed before it may hand back
        self.switches = 0

    def observe(self, entropy: float) -> None:
        """Add this token's entropy; pick the model for the next token."""
        self.window.append(entropy)
        rolling = sum(self.window) / len(self.window)
        hard = rolling > self.options.threshold
        if self.active == DRAFT and hard:
            self.active, self.hold = TARGET, self.options.min_target_tokens
            self.switches += 1
        elif self.active == TARGET:
            self.hold -= 1
            if self.hold <= 0 and not hard:
                self.active = DRAFT
                self.switches += 1


def decode_ead(
    method: str, options: EadOptions, target: ModelRunner, draft: ModelRunner, request: Request
) -> GenerationResult:
    """(generate one token on the active model → entropy → switch?)*."""
    state = GenerationState(method, options, target, request)
    timer = target.timer
    if state.max_new == 0:
        return state.result()
    sampling = request.sampling
    generator = None if sampling.greedy else make_generator(sampling)
    cursors = {DRAFT: ModelCursor(draft), TARGET: ModelCursor(target)}
    switch = Switch(options)
    counts = {DRAFT: 0, TARGET: 0}
    segments: list[list] = []  # [model, tokens] runs in order
    while not state.done:
        model = switch.active
        with timer.phase(model):
            logits = cursors[model].next_logits(state.tokens)
        with timer.phase("sampling"):
            entropy = entropy_bits(logits)
            token = choose(logits[None], sampling, [state.tokens], generator)[0]
        state.record([], None, 0, token, False, state.commit([token]))
        counts[model] += 1
        if segments and segments[-1][0] == model:
            segments[-1][1] += 1
        else:
            segments.append([model, 1])
        switch.observe(entropy)
    result = state.result()
    total = max(1, sum(counts.values()))
    result.stats.update(
        draft_tokens=counts[DRAFT],
        target_tokens=counts[TARGET],
        draft_fraction=counts[DRAFT] / total,
        target_fraction=counts[TARGET] / total,
        switches=switch.switches,
        segments=segments,
    )
    return result


@register_decoder
class EntropyAdaptiveDecoding(Decoder):
    spec = MethodSpec(
        name="ead",
        summary="a small model writes while rolling entropy is low, the target when it is high",
        paper=(
            "Simonds, Entropy Adaptive Decoding: Dynamic Model Switching for Efficient "
            "Inference (2025)"
        ),
        lossless=False,
        lossless_note=(
            "lossy: draft tokens are never verified, so the output is not the target's; "
            "result.stats reports the fraction of tokens from each model"
        ),
        needs_draft=True,
    )
    Options = EadOptions

    def __init__(self, target: ModelRunner, options: EadOptions, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.draft = load_draft(options.draft, target, ctx)

    def generate(self, request: Request) -> GenerationResult:
        return decode_ead(self.spec.name, self.options, self.target, self.draft, request)

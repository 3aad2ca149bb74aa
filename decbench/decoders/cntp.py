"""Cautious Next Token Prediction (CNTP; Wang et al., "Cautious Next Token Prediction", Findings
of ACL 2025).

When the model is unsure, try several continuations and keep the most confident one. At a step
whose entropy exceeds `threshold` (bits; gated.py's loop), `trials` continuations are sampled
independently, each up to `lookahead` tokens, ending early at a punctuation token (the paper's
segment boundary; needs a tokenizer) or at EOS. Each trial is scored by its mean log-probability
under the model's own untempered distribution (the negative log of its perplexity), and the
trial with the lowest perplexity is committed whole. Elsewhere the step is plain greedy or a
plain draw under [sampling].

Trials sample with the [sampling] settings; under greedy (temperature 0), where every trial
would be the greedy path, they sample at `trial_temperature` instead, seeded by
[sampling].seed. The trials share one branch tree, so each lookahead depth costs one target
forward over every live trial (`lookahead - 1` extra forwards per uncertain step); the committed
trial then runs once more to move the cache on. result.stats reports how often the extra path
fired and what it cost (gated.py).

LOSSY: a quality method, not a speed one; the output is neither greedy's nor the sampler's
distribution. With threshold = inf it is token-identical to greedy (or to `sample`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, DecoderContext, MethodSpec, Request
from decbench.decoders.gated import (
    UncertainStep,
    branch_logits,
    decode_gated,
    log_probs,
)
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import draw, target_distribution
from decbench.settings import SamplingSettings

PUNCTUATION = tuple(".,;:!?\n")  # a trial ends after a token whose text ends with one of these


@dataclass
class CNTPOptions:
    # bits: steps more uncertain run the trials (p90, default model)
    threshold: float = option(5.4, ge=0)
    trials: int = option(4, ge=1)  # continuations sampled at an uncertain step
    lookahead: int = option(6, ge=1)  # most tokens per trial
    # trials' temperature when the request itself is greedy
    trial_temperature: float = option(0.7, gt=0)


@dataclass
class Trial:
    node: int  # its last node in the branch tree
    tokens: list[int]
    log_prob: float = 0.0  # sum of the model's log-probabilities of its tokens
    ended: bool = False

    @property
    def score(self) -> float:
        """Mean log-probability: higher is lower perplexity."""
        return self.log_prob / len(self.tokens)


class TrialSampler:
    """The extra path: sample the trials, return the most confident one's tokens."""

    def __init__(self, options: CNTPOptions, sampling: SamplingSettings, ends: set[int]) -> None:
        self.options = options
        greedy = sampling.greedy
        self.sampling = (
            replace(sampling, temperature=options.trial_temperature) if greedy else sampling
        )
        self.ends = ends  # EOS and punctuation tokens

    def __call__(self, step: UncertainStep) -> list[int]:
        best = max(self.sample(step), key=lambda t: t.score)  # the first of equals
        return best.tokens

    def sample(self, step: UncertainStep) -> list[Trial]:
        """The trials, grown one depth per branch forward; the cache is left as it was."""
        builder = tree.TreeBuilder()
        trials = [Trial(tree.ROOT, []) for _ in range(self.options.trials)]
        rows = step.logits[None].expand(len(trials), -1)
        for depth in range(min(self.options.lookahead, step.remaining)):
            live = [t for t in trials if not t.ended]
            if not live:
                break
            if depth > 0:
                rows = branch_logits(step, builder, [t.node for t in live])
            self.extend(step, builder, live, rows)
        return trials

    def extend(
        self,
        step: UncertainStep,
        builder: tree.TreeBuilder,
        live: list[Trial],
        rows: torch.Tensor,  # [len(live), vocab] logits after each live trial
    ) -> None:
        contexts = [step.tokens + t.tokens for t in live]
        probs = target_distribution(rows, self.sampling, contexts)
        tokens = draw(probs, step.generator).squeeze(-1).tolist()
        scores = log_probs(rows)
        for trial, token, row in zip(live, tokens, scores, strict=True):
            trial.node = builder.child(trial.node, token, "trial")
            trial.tokens.append(token)
            trial.log_prob += row[token].item()
            trial.ended = token in self.ends


def ending_tokens(target: ModelRunner) -> set[int]:
    """EOS ids plus every token whose text ends with punctuation (none without a tokenizer)."""
    ends = set(target.eos_token_ids)
    tokenizer = target.tokenizer
    if tokenizer is not None:
        for token in range(target.vocab_size):
            text = tokenizer.decode([token])
            if text.rstrip(" ").endswith(PUNCTUATION):
                ends.add(token)
    return ends


@register_decoder
class CautiousNextTokenPrediction(Decoder):
    spec = MethodSpec(
        name="cntp",
        summary="at high-entropy steps sample several short continuations, keep the least perplexed",
        paper="Wang et al., Cautious Next Token Prediction (2025)",
        lossless=False,
        lossless_note=(
            "lossy (a quality method): uncertain steps commit the lowest-perplexity trial; "
            "threshold = inf is plain decoding; result.stats has how often trials ran and their cost"
        ),
    )
    Options = CNTPOptions

    def __init__(self, target: ModelRunner, options: CNTPOptions, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.ends = ending_tokens(target)

    def generate(self, request: Request) -> GenerationResult:
        trials = TrialSampler(self.options, request.sampling, self.ends)
        result, _ = decode_gated(
            self.spec.name, self.options, self.target, request, self.options.threshold, trials
        )
        return result

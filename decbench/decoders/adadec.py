"""AdaDec: uncertainty-guided adaptive decoding (He et al., "Towards Better Code Generation:
Adaptive Decoding with Uncertainty Guidance", 2025).

Pause, look ahead, then rerank, only where the model hesitates. At a step whose entropy exceeds
`threshold` (bits; gated.py's loop; the paper learns this threshold per model, and
`decbench calibrate-entropy` measures the entropy quantiles to set it from), the `top_k` most
likely next tokens each get a greedy lookahead of `lookahead` tokens, and each candidate is
scored by the mean log-probability of itself and its lookahead under the model's untempered
distribution. The best-scoring candidate is committed, and only it: the lookahead is thrown
away and the next step decides afresh. Elsewhere the step is plain greedy (or a plain draw
under [sampling]).

The candidates' lookaheads share one branch tree: `lookahead` extra target forwards per
uncertain step, each over all candidates at once. result.stats reports how often the extra
path fired and what it cost (gated.py).

LOSSY: a quality method, not a speed one. With threshold = inf it is token-identical to greedy.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class AdaDecOptions:
    # bits (inf = never): steps more uncertain are reranked (code p90, default model)
    threshold: float = option(3.0, ge=0)
    top_k: int = option(3, ge=1)  # candidate tokens reranked at an uncertain step
    lookahead: int = option(4, ge=0)  # greedy tokens looked at after each candidate


def rerank(
    step: UncertainStep, top_k: int, lookahead: int, eos: set[int]
) -> tuple[int, list[float]]:
    """(the chosen candidate token, [top_k] scores: mean log-probability of each candidate and
    its greedy lookahead; a branch stops at EOS)."""
    first = log_probs(step.logits)
    candidates = torch.topk(first, min(top_k, first.numel())).indices.tolist()
    builder = tree.TreeBuilder()
    ends = [builder.child(tree.ROOT, token, "candidate") for token in candidates]
    totals = [first[token].item() for token in candidates]
    lengths = [1] * len(candidates)
    live = [i for i, token in enumerate(candidates) if token not in eos]
    for _ in range(min(lookahead, step.remaining - 1)):
        if not live:
            break
        rows = log_probs(branch_logits(step, builder, [ends[i] for i in live]))
        for i, row in zip(live, rows, strict=True):
            token = int(row.argmax())
            ends[i] = builder.child(ends[i], token, "lookahead")
            totals[i] += row[token].item()
            lengths[i] += 1
        live = [i for i in live if builder.tokens[ends[i]] not in eos]
    scores = [total / length for total, length in zip(totals, lengths, strict=True)]
    best = max(range(len(candidates)), key=scores.__getitem__)  # the likelier first of equals
    return candidates[best], scores


@register_decoder
class AdaDec(Decoder):
    spec = MethodSpec(
        name="adadec",
        summary="at high-entropy steps rerank the top-k next tokens by a short greedy lookahead",
        paper=(
            "He et al., Towards Better Code Generation: Adaptive Decoding with Uncertainty "
            "Guidance (AdaDec, 2025)"
        ),
        lossless=False,
        lossless_note=(
            "lossy (a quality method): uncertain steps commit the best lookahead-scored candidate; "
            "threshold = inf is plain decoding; result.stats has how often it fired and its cost"
        ),
    )
    Options = AdaDecOptions

    def __init__(self, target: ModelRunner, options: AdaDecOptions, ctx: DecoderContext) -> None:
        super().__init__(target, options, ctx)
        self.eos = set(target.eos_token_ids)

    def generate(self, request: Request) -> GenerationResult:
        options = self.options

        def uncertain(step: UncertainStep) -> list[int]:
            return [rerank(step, options.top_k, options.lookahead, self.eos)[0]]

        result, _ = decode_gated(
            self.spec.name, self.options, self.target, request, options.threshold, uncertain
        )
        return result

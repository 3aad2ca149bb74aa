"""Entropy-gated decoding: plain decoding, with an extra path taken only at uncertain steps.

The loop that Cautious Next Token Prediction (cntp.py) and AdaDec (adadec.py) share: at every
step the entropy (bits, of the untempered next-token distribution) decides. At or under
`threshold` the step is a plain one (argmax, or a draw under [sampling]); above it the method's
`uncertain` callback looks ahead along branches hanging under the committed text (one forward
of the whole branch tree per lookahead depth, `branch_logits`) and returns the tokens to commit.
The cache holds exactly the committed tokens between steps; the committed tokens then run in
one forward for the next step's logits.

Stats: `uncertain_steps` and `uncertain_share` (how often the extra path fired, per decision),
`extra_forwards` and `extra_tokens` (the branch forwards it ran and the tokens they processed)
and `forwards_per_token` (every target forward, prefill included, per generated token).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.decoders.ead import entropy_bits
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.multi_draft import tree_logits
from decbench.decoders.state import GenerationState
from decbench.results import GenerationResult
from decbench.sampler import choose, make_generator


@dataclass
class UncertainStep:
    """What the extra path sees at an uncertain step."""

    runner: ModelRunner  # its cache holds the committed tokens, no more
    tokens: list[int]  # [n] prompt + committed tokens
    logits: torch.Tensor  # [vocab] next-token logits after `tokens`
    remaining: int  # most tokens it may return
    generator: torch.Generator  # seeded from [sampling].seed, also under greedy
    cost: GateCost


@dataclass
class GateCost:
    decisions: int = 0  # steps at which the gate looked at the entropy
    fired: int = 0  # of them, steps that took the extra path
    extra_forwards: int = 0  # branch forwards run by the extra path
    extra_tokens: int = 0  # tokens those forwards processed
    entropies: list[float] = field(default_factory=list)  # [decisions] bits, in order


def branch_logits(step: UncertainStep, builder: tree.TreeBuilder, nodes: list[int]) -> torch.Tensor:
    """[len(nodes), vocab] logits after each of `nodes` of the branch tree in `builder`, hung
    under the committed tokens (one forward; the cache is cropped back), counted as extra."""
    step.cost.extra_forwards += 1
    step.cost.extra_tokens += len(builder)
    return tree_logits(step.runner, builder.tokens, builder.parents, nodes)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """[..., vocab] the model's own (untempered) log-probabilities, for scoring branches."""
    return logits.float().log_softmax(-1)


def decode_gated(
    method: str,
    options: object,
    target: ModelRunner,
    request: Request,
    threshold: float,
    uncertain: Callable[[UncertainStep], list[int]],
) -> tuple[GenerationResult, GateCost]:
    """prefill → (entropy → plain step or `uncertain` → commit → forward)*."""
    state = GenerationState(method, options, target, request)
    sampling = request.sampling
    generator = make_generator(sampling)
    cost = GateCost()
    if state.max_new == 0:
        return state.result(), cost
    timer = target.timer
    with timer.phase("prefill"):
        logits = target.prefill(torch.tensor([request.prompt_ids])).logits[0, -1]
    while True:
        entropy = entropy_bits(logits)
        cost.decisions += 1
        cost.entropies.append(entropy)
        if entropy > threshold:
            cost.fired += 1
            step = UncertainStep(target, state.tokens, logits, state.remaining, generator, cost)
            with timer.phase("uncertain"):
                tokens = uncertain(step)
        else:
            with timer.phase("sampling"):
                tokens = choose(logits[None], sampling, [state.tokens], generator)
        committed = commit_each(state, tokens)
        if state.done:
            break
        with timer.phase("decode"):
            logits = target.forward(torch.tensor([committed]), all_logits=False).logits[0, -1]
    result = state.result()
    generated = max(1, len(result.token_ids))
    result.stats.update(
        uncertain_steps=cost.fired,
        uncertain_share=cost.fired / max(1, cost.decisions),
        extra_forwards=cost.extra_forwards,
        extra_tokens=cost.extra_tokens,
        forwards_per_token=target.forward_calls / generated,
    )
    return result, cost


def commit_each(state: GenerationState, tokens: list[int]) -> list[int]:
    """Commit `tokens` one trace step each (they are all the target's own tokens, not accepted
    drafts), until a stop rule fires; returns those committed."""
    committed: list[int] = []
    for token in tokens:
        emitted = state.commit([token])
        state.record([], None, 0, token, False, emitted)
        committed += [token] * emitted
        if state.done:
            break
    return committed

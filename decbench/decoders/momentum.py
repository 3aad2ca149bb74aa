"""Momentum decoding (Lan, Su, Liu, Huang and Mao, "Momentum Decoding: Open-ended Text Generation
As Graph Exploration", 2022).

Generation walks a directed graph whose nodes are tokens and whose edges are the transitions
already taken (prompt included). Degeneration is the walk going round a circuit. Each step takes
the target's top-k candidates; a candidate that is a new node costs nothing, one already in the
graph closes a circuit and is charged by a resistance function of how long the walk it would
repeat is:

    L(v) = 0                 if v has never occurred (a new node)
         = max n ≤ max_ngram such that (x_{t-n+1}, ..., x_{t-1}, v) already occurred, else 1

    x_t = argmax_{v in top-k}  p(v | x_<t) − α · R(L(v))

The paper's resistance functions are parameters (`resistance`), with the shapes of the authors'
released code: `linear` R(L) = L; `log` R(L) = log_6(1 + L) / 0.2; `exp` R(L) = 1.5^L / 2;
`constant` R(L) = 2; `table` R(L) = table[L − 1], and infinite (the walk is blocked) for L past
the end of the table; `none` R = 0. With α = 0 or `none` it is exactly greedy.

Cost: one target forward per token, like greedy. The graph is kept as a set of the n-grams seen
(n ≤ max_ngram) that grows by max_ngram entries per committed token, and scoring a step is
k × max_ngram set look-ups, so the per-token overhead over greedy is a softmax, a top-k and a
few dictionary probes.

Lossy by design (the resistance re-ranks the top-k). Deterministic: temperature > 0 is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.state import GenerationState
from decbench.errors import ConfigError
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import penalize

RESISTANCES: dict[str, Callable[[int], float]] = {
    "linear": lambda length: float(length),
    "log": lambda length: math.log(1 + length, 6) / 0.2,
    "exp": lambda length: 1.5**length / 2,
    "constant": lambda length: 2.0,
    "none": lambda length: 0.0,
}
RESISTANCE_NAMES = (*RESISTANCES, "table")  # "table": R(L) from the `table` option


@dataclass
class MomentumOptions:
    k: int = option(5, ge=1)  # candidates per step (top-k of the target)
    alpha: float = option(0.2, ge=0)  # weight of the resistance; 0 = greedy
    resistance: str = option("linear", choices=RESISTANCE_NAMES)  # linear | log | ... | none
    max_ngram: int = option(5, ge=1)  # longest repeated walk that is measured
    table: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 5.0])  # R(1..), `table`

    def validate(self) -> None:
        if self.resistance == "table" and any(not v >= 0 for v in self.table):
            raise ConfigError(f"method.table values must be >= 0, got {self.table}")


def resistance_function(options: MomentumOptions) -> Callable[[int], float]:
    """R(L) for L ≥ 1 (a new node, L = 0, never meets resistance)."""
    if options.resistance == "table":
        table = list(options.table)
        return lambda length: table[length - 1] if length <= len(table) else math.inf
    return RESISTANCES[options.resistance]  # a declared choice (MomentumOptions)


class TokenGraph:
    """The explored graph, stored as the set of walks (n-grams, n ≤ max_n) already taken."""

    def __init__(self, tokens: list[int], max_n: int) -> None:
        self.max_n = max_n
        self.tokens: list[int] = []
        self.walks: set[tuple[int, ...]] = set()
        for token in tokens:
            self.visit(token)

    def visit(self, token: int) -> None:
        """Move to `token`: add the edge and every walk of length ≤ max_n that ends there."""
        self.tokens.append(token)
        for n in range(1, min(self.max_n, len(self.tokens)) + 1):
            self.walks.add(tuple(self.tokens[-n:]))

    def repetition_length(self, candidate: int) -> int:
        """L(candidate): 0 for a new node, else the longest already-taken walk it would repeat."""
        if (candidate,) not in self.walks:
            return 0
        for n in range(min(self.max_n, len(self.tokens) + 1), 1, -1):
            if (*self.tokens[len(self.tokens) - n + 1 :], candidate) in self.walks:
                return n
        return 1


def momentum_choice(
    probs: torch.Tensor,  # [k] target probabilities of the candidates, descending
    lengths: list[int],  # [k] repetition length L of each candidate
    alpha: float,
    resistance: Callable[[int], float],
) -> int:
    """Index of argmax p − α·R(L); a new node (L = 0) has no resistance. Ties keep the most
    probable candidate; if every candidate is blocked (−inf) the most probable one is kept."""
    best, best_score = 0, -math.inf
    for i, (p, length) in enumerate(zip(probs.tolist(), lengths, strict=True)):
        penalty = alpha * resistance(length) if alpha and length else 0.0
        score = p - penalty
        if score > best_score:
            best, best_score = i, score
    return best


def decode_momentum(
    method: str, options: MomentumOptions, target: ModelRunner, request: Request
) -> GenerationResult:
    """prefill → (candidates → resist → commit → decode_step)*: one forward per token."""
    state = GenerationState(method, options, target, request)
    timer = target.timer
    if state.max_new == 0:
        return state.result()
    resistance = resistance_function(options)
    graph = TokenGraph(request.prompt_ids, options.max_ngram)
    penalty = request.sampling.repetition_penalty
    with timer.phase("prefill"):
        logits = target.prefill(torch.tensor([request.prompt_ids])).logits[0, -1]  # [vocab]
    top1_steps = 0
    while True:
        with timer.phase("select"):
            logits = penalize(logits[None], [state.tokens], penalty)[0]
            probs, candidates = logits.softmax(-1).topk(min(options.k, logits.shape[-1]))
            lengths = [graph.repetition_length(int(v)) for v in candidates.tolist()]
            chosen = momentum_choice(probs, lengths, options.alpha, resistance)
            token = int(candidates[chosen])
            graph.visit(token)
        top1_steps += chosen == 0
        state.record([], None, 0, token, False, state.commit([token]))
        if state.done:
            break
        with timer.phase("decode"):
            logits = target.forward(torch.tensor([[token]]), all_logits=False).logits[0, -1]
    result = state.result()
    result.stats["greedy_ratio"] = top1_steps / max(1, len(state.steps))
    return result


@register_decoder
class MomentumDecoding(Decoder):
    spec = MethodSpec(
        name="momentum",
        summary="greedy graph exploration: revisiting a walk is charged by a resistance function",
        paper=(
            "Lan et al., Momentum Decoding: Open-ended Text Generation As Graph Exploration (2022)"
        ),
        lossless=False,
        lossless_note=(
            "changes the output by design (resistance re-ranks the top-k); "
            "alpha = 0 or resistance = 'none' is token-identical to greedy"
        ),
        samples=False,
    )
    Options = MomentumOptions

    def generate(self, request: Request) -> GenerationResult:
        return decode_momentum(self.spec.name, self.options, self.target, request)

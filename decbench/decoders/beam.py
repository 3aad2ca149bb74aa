"""Beam search with a length penalty (as in Wu et al., "Google's Neural Machine Translation
System", 2016, and transformers' beam search; the classic reference is Graves, "Sequence
Transduction with Recurrent Neural Networks", 2012).

`width` beams advance together as the batch dimension of one target forward per step; the KV
cache is repeated to `width` rows after the prefill and reordered (`index_select` on the batch)
to the surviving beams' origins after each step. Every beam has the same length, so there are
no ragged positions. Each step the best 2·width continuations of all beams are scanned in order:
an EOS among the first `width` ends a hypothesis, scored sum(log p) / length ** length_penalty
(length = generated tokens, EOS included); the others fill the next beams. The search stops
when `width` hypotheses have ended and none of the live beams can beat the worst of them at its
current length (transformers' default heuristic), at once when `early_stopping` is set, or at
max_new_tokens, where the live beams join the hypotheses. The best hypothesis is the output.

Width 1 is token-identical to greedy for any length penalty: an EOS ranked first ends the only
hypothesis and no live beam can beat it at equal length. Stop strings are applied to the chosen
hypothesis afterwards, so they cut the text where greedy's would but do not steer the search.
The whole output is known only at the end, so the time to the first token is the total time.

Under a constraint (decbench/constraints) every beam carries its own constraint state: its
next-token log-probabilities are those of the masked, renormalised target, a continuation the
constraint does not allow is never scanned, and a beam whose constraint is complete with nothing
allowed after it ends a hypothesis as EOS would. Width 1 stays identical to constrained greedy.

Lossy by design (it maximises sequence likelihood, not the next token). Deterministic:
temperature > 0 is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from decbench.backends.capabilities import TORCH_MODEL
from decbench.backends.runner import ModelRunner
from decbench.constraints.base import ConstraintState
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.state import GenerationState
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import constrain, penalize


@dataclass
class BeamOptions:
    width: int = option(4, ge=1)  # beams kept per step
    length_penalty: float = 1.0  # hypothesis score = sum log p / length ** length_penalty
    early_stopping: bool = False  # stop as soon as `width` hypotheses have ended


@dataclass
class Beam:
    tokens: list[int]  # generated tokens of this beam
    origin: int  # row of the previous step's batch it extends
    total: float  # sum of log-probabilities
    constraint: ConstraintState | None = None  # after `tokens`, when the output is constrained


class Hypotheses:
    """The `width` best finished sequences, by length-normalised score."""

    def __init__(self, width: int, length_penalty: float) -> None:
        self.width = width
        self.length_penalty = length_penalty
        self.items: list[tuple[float, list[int]]] = []

    def score(self, total: float, length: int) -> float:
        return total / (length**self.length_penalty)

    def add(self, tokens: list[int], total: float) -> None:
        self.items.append((self.score(total, len(tokens)), tokens))
        self.items.sort(key=lambda item: item[0], reverse=True)
        del self.items[self.width :]

    def full(self) -> bool:
        return len(self.items) >= self.width

    def worst(self) -> float:
        return self.items[-1][0]

    def best(self) -> list[int]:
        return self.items[0][1] if self.items else []


class BeamSearch:
    """One search: live beams, finished hypotheses, and the target whose batch follows them."""

    def __init__(self, target: ModelRunner, options: BeamOptions, state: GenerationState):
        self.target = target
        self.options = options
        self.state = state
        self.beams = [Beam([], 0, 0.0, state.constraint.fork() if state.constraint else None)]
        self.hypotheses = Hypotheses(options.width, options.length_penalty)

    def prefill(self) -> torch.Tensor:
        """Prompt at batch 1; returns [1, vocab] logits. The cache is widened on the first step."""
        ids = torch.tensor([self.state.request.prompt_ids])
        return self.target.prefill(ids).logits[:, -1]

    def expand(self, logits: torch.Tensor) -> list[Beam]:
        """Scan the best 2·width continuations (logits: [n_beams, vocab]); end hypotheses at EOS,
        return the next live beams, best first."""
        width = self.options.width
        prompt = self.state.request.prompt_ids
        contexts = [prompt + beam.tokens for beam in self.beams]
        penalty = self.state.request.sampling.repetition_penalty
        masks = self.masks()  # [n_beams, vocab] bool, or None
        logprobs = constrain(penalize(logits, contexts, penalty), masks).log_softmax(-1)
        totals = torch.tensor([b.total for b in self.beams], device=logprobs.device)[:, None]
        totals = totals + logprobs
        vocab = logprobs.shape[-1]
        values, flat = totals.flatten().topk(min(2 * width, totals.numel()))
        live: list[Beam] = []
        for rank, (total, index) in enumerate(zip(values.tolist(), flat.tolist(), strict=True)):
            if total == float("-inf"):  # only continuations the constraint forbids are left
                break
            origin, token = divmod(index, vocab)
            tokens = [*self.beams[origin].tokens, token]
            constraint = self.advance(self.beams[origin], token)
            if token in self.state.eos or (constraint is not None and constraint.must_stop):
                if rank < width:
                    self.hypotheses.add(tokens, total)
                continue
            live.append(Beam(tokens, origin, total, constraint))
            if len(live) == width:
                break
        return live

    def masks(self) -> torch.Tensor | None:
        """[n_beams, vocab] the constraint's mask after each beam (None: unconstrained)."""
        if self.state.constraint is None:
            return None
        with self.state.timer.phase("constraint"):
            masks = torch.stack([beam.constraint.mask() for beam in self.beams])
        return self.state.check_masks(masks)

    def advance(self, beam: Beam, token: int) -> ConstraintState | None:
        """The constraint state of `beam` extended by `token` (a fork: beams share origins)."""
        if beam.constraint is None:
            return None
        with self.state.timer.phase("constraint"):
            constraint = beam.constraint.fork()
            constraint.advance(token)
        return constraint

    def finished(self, live: list[Beam]) -> bool:
        """No live beam can still enter the hypotheses (or early stopping after `width`)."""
        if not live:
            return True
        if not self.hypotheses.full():
            return False
        if self.options.early_stopping:
            return True
        best_live = self.hypotheses.score(live[0].total, len(live[0].tokens))
        return self.hypotheses.worst() >= best_live

    def decode_step(self, live: list[Beam], first: bool) -> torch.Tensor:
        """Reorder the cache to the live beams' origins and run their last tokens."""
        origins = torch.tensor([beam.origin for beam in live], device=self.target.device)
        if first:
            self.target.cache.batch_repeat_interleave(len(live))
        else:
            self.target.cache.reorder_cache(origins)
        self.beams = live
        ids = torch.tensor([[beam.tokens[-1]] for beam in live])  # [n_beams, 1]
        return self.target.forward(ids, all_logits=False).logits[:, -1]  # [n_beams, vocab]

    def best(self, live: list[Beam]) -> list[int]:
        for beam in live:
            self.hypotheses.add(beam.tokens, beam.total)
        return self.hypotheses.best()


def decode_beam(
    method: str, options: BeamOptions, target: ModelRunner, request: Request
) -> GenerationResult:
    state = GenerationState(method, options, target, request)
    if state.max_new > 0:  # run_search also returns at once, but the search is not built
        run_search(BeamSearch(target, options, state), state, target.timer)
    return state.result()


def run_search(search: Any, state: GenerationState, timer: Any) -> int:
    """prefill → (expand → stop? → reorder + decode_step)* → commit the best hypothesis, for any
    search with prefill, expand, finished, decode_step and best (beam, grid-beam). Returns the
    number of expansions."""
    if state.max_new == 0:
        return 0
    with timer.phase("prefill"):
        logits = search.prefill()
    live: list = []
    steps = 0
    for step in range(state.max_new):
        with timer.phase("select"):
            live = search.expand(logits)
        steps += 1
        if search.finished(live):
            live = []
            break
        if step == state.max_new - 1:
            break
        with timer.phase("decode"):
            logits = search.decode_step(live, first=step == 0)
    with timer.phase("select"):
        output = search.best(live)
    for token in output:
        state.record([], None, 0, token, False, state.commit([token]))
        if state.done:
            break
    return steps


@register_decoder
class BeamSearchDecoder(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="beam",
        summary="width beams in one batched forward per step, length-normalised scores",
        paper="Wu et al., Google's Neural Machine Translation System (2016): length penalty",
        lossless=False,
        lossless_note=(
            "returns the most likely sequence found, not greedy's; width = 1 is token-identical "
            "to greedy"
        ),
        samples=False,
        constraints=True,
    )
    Options = BeamOptions

    def generate(self, request: Request) -> GenerationResult:
        return decode_beam(self.spec.name, self.options, self.target, request)

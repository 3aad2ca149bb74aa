"""The speculative engine: it owns the loop, the target's cache and the trace.

Invariant: the target's KV cache holds every committed token except the last one (the
*pending* token), so each step's single forward runs over [pending] + draft and yields the
target's distribution after the context and after every draft prefix.
"""

from __future__ import annotations

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.decoders.speculative.acceptance import (
    SamplingRule,
    Verdict,
    greedy_match,
    rejection_sampling,
)
from decbench.decoders.speculative.proposer import Draft, Feedback, Proposer, ProposerContext
from decbench.decoders.state import GenerationState
from decbench.results import GenerationResult
from decbench.sampler import choose, greedy_tokens, make_generator, target_distribution
from decbench.settings import SamplingSettings


def run_speculative(
    method: str,
    params: object,
    target: ModelRunner,
    proposer: Proposer,
    request: Request,
    rule: SamplingRule = rejection_sampling,
) -> GenerationResult:
    """prefill, then steps of: propose → verify (one target forward) → accept → append, emit
    and roll back → observe. `rule` decides acceptance under sampling; greedy uses exact match."""
    state = GenerationState(method, params, target, request)
    sampling = request.sampling
    generator = None if sampling.greedy else make_generator(sampling)
    timer = target.timer
    if state.max_new == 0:
        return state.result()

    with timer.phase("prefill"):
        logits = target.prefill(torch.tensor([request.prompt_ids])).logits[:, -1]
    with timer.phase("sampling"):
        first = choose(logits, sampling, [state.tokens], generator)[0]
    state.record([], None, 0, first, False, state.commit([first]))

    while not state.done:
        # 1. propose, never past the token budget (the bonus token needs one slot)
        budget = state.remaining - 1
        ctx = ProposerContext(state.tokens, state.prompt_len, budget, sampling, generator)
        with timer.phase("draft"):
            draft = proposer.propose(ctx) if budget > 0 else Draft([])
        draft.tokens = draft.tokens[: max(budget, 0)]

        # 2. verify: one target forward over the pending token and the draft
        ids = torch.tensor([[state.tokens[-1], *draft.tokens]])
        with timer.phase("verify"):
            logits = target.forward(ids).logits[0]  # [k+1, vocab]

        # 3. accept
        with timer.phase("accept"):
            verdict = accept(draft, logits, state.tokens, sampling, generator, rule)

        # 4. append, emit, roll back the rejected suffix from the cache
        emitted = state.commit([*draft.tokens[: verdict.accepted], verdict.bonus])
        with timer.phase("rollback"):
            target.crop(len(state.tokens) - 1)
        state.record(
            draft.tokens,
            draft.probs_of_tokens(),
            verdict.accepted,
            verdict.bonus,
            verdict.recovered,
            emitted,
        )

        # 5. observe
        proposer.observe(Feedback(len(draft.tokens), verdict.accepted, state.tokens))
    return state.result()


def accept(
    draft: Draft,
    logits: torch.Tensor,  # [k+1, vocab] target logits after the context and each draft prefix
    tokens: list[int],  # committed tokens before this step
    sampling: SamplingSettings,
    generator: torch.Generator | None,
    rule: SamplingRule,
) -> Verdict:
    contexts = prefix_contexts(tokens, draft.tokens, sampling)
    if sampling.greedy:
        return greedy_match(draft.tokens, greedy_tokens(logits, sampling, contexts))
    target_probs = target_distribution(logits, sampling, contexts)
    return rule(draft.tokens, draft.draft_probs, target_probs, generator)


def prefix_contexts(
    tokens: list[int], draft_tokens: list[int], sampling: SamplingSettings
) -> list[list[int]]:
    """The context of each verified position, needed only by the repetition penalty."""
    if sampling.repetition_penalty == 1.0:
        return []
    return [tokens + draft_tokens[:i] for i in range(len(draft_tokens) + 1)]

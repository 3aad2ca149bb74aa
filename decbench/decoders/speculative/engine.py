"""The speculative engine: it owns the loop, the target's cache and the trace.

Invariant: the target's KV cache holds every committed token except the last one (the
*pending* token), so each step's single forward runs over [pending] + draft and yields the
target's distribution after the context and after every draft prefix. A tree draft (tree.py)
runs the same way under a tree mask; afterwards the cache is compacted to the accepted path.

Under a constraint (decbench/constraints) a chain draft is cut at its first disallowed token
before verification, and the target's logits at every verified position are masked before the
acceptance rule, so greedy stays token-identical to constrained greedy and sampling draws from
the constrained target. A draft with draft probabilities keeps its first disallowed token under
sampling: the rule rejects it for certain (p(x) = 0) and draws from the residual max(0, p - q),
which cutting it would skip. Tree nodes off the constraint stay in the verify forward but can
never be accepted (their target probability is 0), so proposers keep their own node indices.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, Request
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.acceptance import (
    SamplingRule,
    Verdict,
    greedy_match,
    rejection_sampling,
)
from decbench.decoders.speculative.constrained import constrain_chain, tree_masks
from decbench.decoders.speculative.proposer import Draft, Feedback, Proposer, ProposerContext
from decbench.decoders.state import GenerationState
from decbench.results import GenerationResult, TreeTrace
from decbench.sampler import choose, greedy_tokens, make_generator, target_distribution
from decbench.settings import SamplingSettings


@dataclass
class RowPlan:
    """How a method runs one request: what `run_speculative` is called with, and the
    proposer's own report, which the engine files under the result's `stats["proposer"]`.
    Decoders build one per request (`plan`), so that a request runs alone (`run_plan`) or as
    one row of a batch (batch_engine.py)."""

    proposer: Proposer
    rule: SamplingRule = rejection_sampling
    tree_rule: tree.TreeRule = tree.accept_sampling
    observe_prefill: bool = False
    report: Callable[[], dict[str, Any]] | None = None  # read after the last step

    def finish(self, result: GenerationResult) -> GenerationResult:
        if self.report is not None:
            result.stats["proposer"] = self.report()
        return result


class PlannedDecoder(Decoder):
    """A decoder whose every request runs as a RowPlan: alone through `run_plan`, or as a row
    of a ragged batch. Subclasses implement `plan` only."""

    def generate(self, request: Request) -> GenerationResult:
        return run_plan(self.spec.name, self.options, self.target, self.plan(request), request)

    @abstractmethod
    def plan(self, request: Request, row: int = 0) -> RowPlan: ...


def run_plan(
    method: str, params: object, target: ModelRunner, plan: RowPlan, request: Request
) -> GenerationResult:
    """One request alone, as its plan says."""
    result = run_speculative(
        method,
        params,
        target,
        plan.proposer,
        request,
        plan.rule,
        plan.tree_rule,
        plan.observe_prefill,
    )
    return plan.finish(result)


def run_speculative(
    method: str,
    params: object,
    target: ModelRunner,
    proposer: Proposer,
    request: Request,
    rule: SamplingRule = rejection_sampling,
    tree_rule: tree.TreeRule = tree.accept_sampling,
    observe_prefill: bool = False,
) -> GenerationResult:
    """prefill, then steps of: propose → verify (one target forward) → accept → append, emit
    and roll back → observe. Under sampling `rule` decides acceptance of chains and `tree_rule`
    of trees; greedy uses exact match for both. With `observe_prefill` the prefill keeps the
    logits of every prompt position and the proposer observes them first, as if the prompt had
    been a verified chain (rows: prompt[0], then each later prompt token). A proposer with
    `wants_hidden` also gets the target's last hidden states with every feedback, and after the
    prefill a feedback with those of every prompt position, rows as under `observe_prefill`."""
    state = GenerationState(method, params, target, request)
    sampling = request.sampling
    generator = None if sampling.greedy else make_generator(sampling)
    timer = target.timer
    if state.max_new == 0:
        return state.result()

    prompt = request.prompt_ids
    hidden = getattr(proposer, "wants_hidden", False)
    with timer.phase("prefill"):
        out = target.prefill(torch.tensor([prompt]), all_logits=observe_prefill, hidden=hidden)
    start_sequence(state, proposer, generator, out.logits[0], out.hidden, observe_prefill)
    del out  # [1, n_prompt, vocab] under observe_prefill: not kept while decoding

    while not state.done:
        # 1. propose, never past the token budget (the bonus token needs one slot)
        draft, masks = propose_step(proposer, state, generator)

        # 2.-4. verify in one target forward, accept, then append, emit and roll back
        if draft.is_tree:
            feedback = tree_step(draft, state, generator, tree_rule, hidden)
        else:
            feedback = chain_step(draft, state, generator, rule, hidden, masks)

        # 5. observe
        proposer.observe(feedback)
    return state.result()


def start_sequence(
    state: GenerationState,
    proposer: Proposer,
    generator: torch.Generator | None,
    prefill: torch.Tensor,  # [n_prompt or 1, vocab] the prefill's logits for this sequence
    prefill_hidden: torch.Tensor | None,  # [1, n_prompt, hidden] its hidden states, if asked for
    observe_prefill: bool,
) -> None:
    """After the prefill: choose and commit the first token, and let the proposer observe the
    prompt (see `run_speculative`). Shared with the ragged batch engine."""
    prompt = state.request.prompt_ids
    with state.timer.phase("sampling"):
        allowed = state.allowed()
        first = choose(prefill[-1:], state.request.sampling, [state.tokens], generator, allowed)[0]
    state.record([], None, 0, first, False, state.commit([first]))
    if observe_prefill:
        with state.timer.phase("draft"):
            seen = Draft(list(prompt[1:]))
            proposer.observe(Feedback(0, 0, state.tokens, seen, prefill, None, prompt[0]))
    if prefill_hidden is not None:  # every prompt row, as if the prompt had been a verified chain
        n = len(prompt) - 1
        seen = Draft(list(prompt[1:]))
        rows = prefill_hidden[0]
        proposer.observe(Feedback(n, n, state.tokens, seen, None, None, prompt[0], rows))


def propose_step(
    proposer: Proposer, state: GenerationState, generator: torch.Generator | None
) -> tuple[Draft, torch.Tensor | None]:
    """Step 1: the proposer's draft, cut to the token budget (the bonus token needs one slot)
    and, for chains under a constraint, to its allowed prefix; with the chain's masks."""
    budget = state.remaining - 1
    ctx = ProposerContext(state.tokens, state.prompt_len, budget, state.request.sampling, generator)
    with state.timer.phase("draft"):
        draft = proposer.propose(ctx) if budget > 0 else Draft([])
    if draft.is_tree:
        return tree.prune_depth(draft, budget), None
    draft.tokens = draft.tokens[: max(budget, 0)]
    return draft, constrain_chain(draft, state)


def chain_step(
    draft: Draft,
    state: GenerationState,
    generator: torch.Generator | None,
    rule: SamplingRule,
    hidden: bool = False,
    masks: torch.Tensor | None = None,  # [k+1, vocab] bool: a constraint's masks per row
) -> Feedback:
    target, timer = state.target, state.timer

    # 2. verify: one target forward over the pending token and the draft
    pending = state.tokens[-1]
    ids = torch.tensor([[pending, *draft.tokens]])
    with timer.phase("verify"):
        out = target.forward(ids, hidden=hidden)
    logits = out.logits[0]  # [k+1, vocab]

    # 3. accept, 4. append and emit, then roll back the rejected suffix from the cache
    verdict, emitted = settle_chain(draft, state, logits, generator, rule, masks)
    with timer.phase("rollback"):
        target.crop(len(state.tokens) - 1)
    states = out.hidden[0] if hidden else None
    return record_chain(draft, state, verdict, emitted, logits, pending, states)


def settle_chain(
    draft: Draft,
    state: GenerationState,
    logits: torch.Tensor,  # [k+1, vocab] the verify forward's target logits for this sequence
    generator: torch.Generator | None,
    rule: SamplingRule,
    masks: torch.Tensor | None = None,  # [k+1, vocab] bool: a constraint's masks per row
) -> tuple[Verdict, int]:
    """Steps 3 and 4 of a chain, without the cache: accept, then commit the accepted tokens and
    the bonus token. Returns the verdict and how many tokens were committed (a stop rule may
    cut them short). The ragged batch engine shares this with `chain_step`."""
    with state.timer.phase("accept"):
        verdict = accept(
            draft, logits, state.tokens, state.request.sampling, generator, rule, masks
        )
    emitted = state.commit([*draft.tokens[: verdict.accepted], verdict.bonus])
    return verdict, emitted


def record_chain(
    draft: Draft,
    state: GenerationState,
    verdict: Verdict,
    emitted: int,
    logits: torch.Tensor,  # [k+1, vocab]
    pending: int,
    states: torch.Tensor | None,  # [k+1, hidden] the target's last hidden states, if asked for
) -> Feedback:
    """The step's trace entry (after the rollback, so its time is in it) and the feedback."""
    state.record(
        draft.tokens,
        draft.probs_of_tokens(),
        verdict.accepted,
        verdict.bonus,
        verdict.recovered,
        emitted,
    )
    accepted = verdict.accepted
    return Feedback(len(draft.tokens), accepted, state.tokens, draft, logits, None, pending, states)


def tree_step(
    draft: Draft,
    state: GenerationState,
    generator: torch.Generator | None,
    rule: tree.TreeRule,
    hidden: bool = False,
) -> Feedback:
    target, timer = state.target, state.timer
    past, pending = target.cache_len, state.tokens[-1]

    # 2. verify: one target forward over the pending token, every tree node and the side branch
    block = tree.flatten(draft, pending, past)
    with timer.phase("verify"):
        out = target.forward(block.ids, block.positions, block.mask, hidden=hidden)
    logits = out.logits[0]  # [1+n+m, vocab]

    # 3. accept the longest path the target agrees with (and the constraint allows), 4. append
    # and emit, then compact the cache to the accepted path (and cut it at a stop)
    verdict, emitted = settle_tree(draft, state, logits, generator, rule)
    with timer.phase("rollback"):
        target.compact(past, tree.compact_keep(verdict.path))
        target.crop(len(state.tokens) - 1)
    states = out.hidden[0] if hidden else None
    return record_tree(draft, state, verdict, emitted, logits, pending, states)


def settle_tree(
    draft: Draft,
    state: GenerationState,
    logits: torch.Tensor,  # [1+n+m, vocab] the verify forward's target logits for this sequence
    generator: torch.Generator | None,
    rule: tree.TreeRule,
) -> tuple[tree.TreeVerdict, int]:
    """Steps 3 and 4 of a tree, without the cache (shared with the ragged batch engine)."""
    masks = tree_masks(draft, state)
    with state.timer.phase("accept"):
        verdict = accept_tree(
            draft, logits, state.tokens, state.request.sampling, generator, rule, masks
        )
    path_tokens = [draft.tokens[node] for node in verdict.path]
    emitted = state.commit([*path_tokens, verdict.bonus])
    return verdict, emitted


def record_tree(
    draft: Draft,
    state: GenerationState,
    verdict: tree.TreeVerdict,
    emitted: int,
    logits: torch.Tensor,  # [1+n+m, vocab]
    pending: int,
    states: torch.Tensor | None,  # [1+n+m, hidden] the target's last hidden states, if asked for
) -> Feedback:
    """The step's trace entry (after the compaction, so its time is in it) and the feedback."""
    branch = tree.best_branch(draft, verdict.path)
    trace = TreeTrace(
        list(draft.tokens),
        list(tree.tree_parents(draft)),
        list(draft.sources or ["draft"] * len(draft.tokens)),
        list(verdict.path),
    )
    drafted = [draft.tokens[node] for node in branch]
    accepted = len(verdict.path)
    state.record(drafted, None, accepted, verdict.bonus, verdict.recovered, emitted, trace)
    path = verdict.path
    return Feedback(len(drafted), accepted, state.tokens, draft, logits, path, pending, states)


def accept(
    draft: Draft,
    logits: torch.Tensor,  # [k+1, vocab] target logits after the context and each draft prefix
    tokens: list[int],  # committed tokens before this step
    sampling: SamplingSettings,
    generator: torch.Generator | None,
    rule: SamplingRule,
    masks: torch.Tensor | None = None,  # [k+1, vocab] bool: a constraint's masks per row
) -> Verdict:
    contexts = prefix_contexts(tokens, draft.tokens, sampling)
    if sampling.greedy:
        return greedy_match(draft.tokens, greedy_tokens(logits, sampling, contexts, masks))
    target_probs = target_distribution(logits, sampling, contexts, masks)
    return rule(draft.tokens, draft.draft_probs, target_probs, generator)


def accept_tree(
    draft: Draft,
    logits: torch.Tensor,  # [1+n+m, vocab] target logits after the root, each node, each side token
    tokens: list[int],  # committed tokens before this step
    sampling: SamplingSettings,
    generator: torch.Generator | None,
    rule: tree.TreeRule,
    masks: torch.Tensor | None = None,  # [1+n, vocab] bool: a constraint's masks per row
) -> tree.TreeVerdict:
    rows = logits[: 1 + len(draft.tokens)]
    if masks is not None:
        masks = masks.to(rows.device)  # once, not once per row the walk visits
    penalized = sampling.repetition_penalty != 1.0
    contexts = tree.path_contexts(tokens, draft) if penalized else []
    if sampling.greedy:
        return tree.accept_greedy(draft, greedy_tokens(rows, sampling, contexts, masks))

    def target_probs(row: int) -> torch.Tensor:  # the walk only needs the rows it visits
        context = [contexts[row]] if penalized else []
        allowed = None if masks is None else masks[row : row + 1]
        return target_distribution(rows[row : row + 1], sampling, context, allowed)[0]

    return rule(draft, target_probs, generator)


def prefix_contexts(
    tokens: list[int], draft_tokens: list[int], sampling: SamplingSettings
) -> list[list[int]]:
    """The context of each verified position, needed only by the repetition penalty."""
    if sampling.repetition_penalty == 1.0:
        return []
    return [tokens + draft_tokens[:i] for i in range(len(draft_tokens) + 1)]

"""The ragged batch engine: the speculative loop of engine.py for B sequences in lockstep.

Each row is one request with its own GenerationState (stop rules, trace, constraint), its own
proposer instance, its own RNG (seeded as at batch 1) and its own acceptance. A step runs:

1. propose: every live row drafts (a chain, a tree or nothing), cut to its own budget;
2. verify: one target forward over every row's block, padded to the widest (backends/ragged.py);
3.-4. per row, with engine.py's own functions: accept, append and emit, then roll back by
   clearing the validity bits of the row's rejected block entries (for a tree: all but the
   pending token and the accepted path);
5. observe: each row's proposer gets its own feedback.

Rows that finish leave the batch before the next step (the cache's batch dimension is
index-selected), so a row that stops at EOS on step 1 never stalls or pads the others. Greedy
and sampling are the same loop with an empty draft (one token per row per forward).

Timing: the runner's PhaseTimer is shared, so a batched forward's time lands in the trace of
every row that was live for it. Each row's `total_s` runs from the batch start to the row's own
finish (its latency under this load); the batch's wall time is the caller's to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.ragged import RaggedBatch, RowBlock, chain_block
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Request
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.engine import (
    RowPlan,
    propose_step,
    record_chain,
    record_tree,
    settle_chain,
    settle_tree,
    start_sequence,
)
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.decoders.state import GenerationState
from decbench.results import GenerationResult
from decbench.sampler import make_generator


class NoDraft:
    """The proposer of plain decoding: always the empty draft (one token per forward)."""

    def propose(self, ctx: ProposerContext) -> Draft:
        return Draft([])

    def observe(self, feedback: Feedback) -> None:
        """Nothing to learn."""


@dataclass
class Row:
    """A live sequence of the batch."""

    index: int  # its place in the caller's list of requests
    state: GenerationState
    plan: RowPlan
    generator: torch.Generator | None


def run_batch(
    method: str, params: object, target: ModelRunner, requests: list[Request], plans: list[RowPlan]
) -> list[GenerationResult]:
    """Decode `requests` as one ragged batch; results come back in the requests' order, each
    token-identical to the request run alone (up to float summation order; see README)."""
    states = [GenerationState(method, params, target, request) for request in requests]
    longest = max(s.prompt_len + s.max_new for s in states)
    target.reserve(longest)  # the last state's reserve would otherwise win
    results: list[GenerationResult | None] = [None] * len(requests)
    rows = []
    for i, (state, plan) in enumerate(zip(states, plans, strict=True)):
        if state.max_new == 0:
            results[i] = finish(state, plan)
            continue
        generator = (
            None if state.request.sampling.greedy else make_generator(state.request.sampling)
        )
        rows.append(Row(i, state, plan, generator))
    if not rows:
        return results  # type: ignore[return-value]

    hidden = any(getattr(row.plan.proposer, "wants_hidden", False) for row in rows)
    all_logits = any(row.plan.observe_prefill for row in rows)
    batch = RaggedBatch(target)
    with target.timer.phase("prefill"):
        out = batch.prefill([row.state.request.prompt_ids for row in rows], all_logits, hidden)
    for b, row in enumerate(rows):
        n = row.state.prompt_len
        logits = out.logits[b, -n:] if all_logits else out.logits[b, -1:]
        wants = getattr(row.plan.proposer, "wants_hidden", False)
        states = out.hidden[b : b + 1, -n:] if wants else None
        start_sequence(
            row.state, row.plan.proposer, row.generator, logits, states, row.plan.observe_prefill
        )
    del out

    while True:
        rows = leave(rows, batch, results)
        if not rows:
            return results  # type: ignore[return-value]
        step(rows, batch, hidden)


def step(rows: list[Row], batch: RaggedBatch, hidden: bool) -> None:
    """One lockstep step of every live row (numbered as in the module docstring)."""
    timer = rows[0].state.timer
    # 1. propose
    drafts = [propose_step(row.plan.proposer, row.state, row.generator) for row in rows]
    lengths = batch.lengths
    blocks = [
        row_block(draft, row.state.tokens[-1], length)
        for (draft, _masks), row, length in zip(drafts, rows, lengths, strict=True)
    ]

    # 2. verify: one forward over every row's block
    with timer.phase("verify"):
        out = batch.forward(blocks, hidden)
    width = out.logits.shape[1]

    # 3.-5. per row: accept, append and emit, roll back, observe
    for b, ((draft, masks), row, length) in enumerate(zip(drafts, rows, lengths, strict=True)):
        state, plan = row.state, row.plan
        n = len(blocks[b].ids)
        logits = out.logits[b, :n]
        states = out.hidden[b, :n] if hidden else None
        pending = state.tokens[-1]
        if draft.is_tree:
            verdict, emitted = settle_tree(draft, state, logits, row.generator, plan.tree_rule)
            kept = tree.compact_keep(verdict.path).tolist()
        else:
            verdict, emitted = settle_chain(draft, state, logits, row.generator, plan.rule, masks)
            kept = list(range(n))
        with timer.phase("rollback"):
            # the cache holds every committed token but the new pending one
            batch.keep(b, width, kept[: len(state.tokens) - 1 - length])
        if draft.is_tree:
            feedback = record_tree(draft, state, verdict, emitted, logits, pending, states)
        else:
            feedback = record_chain(draft, state, verdict, emitted, logits, pending, states)
        plan.proposer.observe(feedback)
    with timer.phase("rollback"):
        batch.trim()


def row_block(draft: Draft, pending: int, length: int) -> RowBlock:
    """The row's verify inputs: [pending] + chain, or the flattened tree (tree.flatten), at the
    row's own positions."""
    if not draft.is_tree:
        return chain_block([pending, *draft.tokens], length)
    block = tree.flatten(draft, pending, length)
    return RowBlock(block.ids[0].tolist(), block.positions[0].tolist(), block.mask[0])


def leave(rows: list[Row], batch: RaggedBatch, results: list[GenerationResult | None]) -> list[Row]:
    """Finished rows leave the batch (their cache rows are dropped) and get their results."""
    live = [b for b, row in enumerate(rows) if not row.state.done]
    if len(live) == len(rows):
        return rows
    for row in rows:
        if row.state.done:
            results[row.index] = finish(row.state, row.plan)
    if live:
        batch.select(live)
    return [rows[b] for b in live]


def finish(state: GenerationState, plan: RowPlan) -> GenerationResult:
    return plan.finish(state.result())

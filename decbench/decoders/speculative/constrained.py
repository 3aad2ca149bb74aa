"""Drafts under a constraint (decbench/constraints): what the speculative engine verifies and the
masks of the rows it verifies. See the engine's docstring for why each rule keeps the method
lossless with respect to the constrained target."""

from __future__ import annotations

import torch

from decbench.decoders.speculative import tree
from decbench.decoders.speculative.proposer import Draft
from decbench.decoders.state import GenerationState


def constrain_chain(draft: Draft, state: GenerationState) -> torch.Tensor | None:
    """Cut a chain draft to what the constraint allows (keeping the first disallowed token of a
    draft with draft probabilities under sampling, as a certain rejection) and return the masks
    of its verified rows, [k+1, vocab] (None: unconstrained)."""
    if state.constraint is None:
        return None
    kept = state.prune(draft.tokens)
    masks = state.allowed_along(draft.tokens[:kept])
    sentinel = kept < len(draft.tokens) and draft.draft_probs is not None
    if sentinel and not state.request.sampling.greedy:
        kept += 1  # its row is never reached: the token is rejected first
        masks = torch.cat([masks, torch.ones_like(masks[:1])])
    draft.tokens = draft.tokens[:kept]
    return masks


def tree_masks(draft: Draft, state: GenerationState) -> torch.Tensor | None:
    """[1+n, vocab] the constraint's mask after the root and after each tree node; nodes the
    constraint does not allow (and their subtrees) get an all-true row that is never reached,
    because their parent's row masks them out."""
    if state.constraint is None:
        return None
    kids = tree.children(tree.tree_parents(draft))  # [1+n]: the root's at 0, node i's at 1+i
    constraint, timer = state.constraint, state.timer
    reached = 0  # rows given a real mask, the root's included

    def visit(node: int) -> None:  # depth first: advance into each allowed child, then back
        nonlocal reached
        masks[1 + node] = constraint.mask()
        reached += 1
        for child in kids[1 + node]:
            if masks[1 + node, draft.tokens[child]]:
                constraint.advance(draft.tokens[child])
                visit(child)
                constraint.rollback(1)

    with timer.phase("constraint"):
        masks = torch.ones(1 + len(draft.tokens), state.target.vocab_size, dtype=torch.bool)
        visit(tree.ROOT)  # ROOT = -1: row 0
    state.constraint_stats.observe_draft(len(draft.tokens), reached - 1)
    state.check_masks(masks[:1], rows=reached)
    return masks

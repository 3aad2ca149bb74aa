"""Candidate trees: build them, flatten them for one verify forward, pick the accepted path.

A tree hangs under the *pending* token (the last committed token, not yet in the KV cache).
Node i has a token, a parent (`-1` = the pending token) and a source label; nodes come in
topological order and siblings carry distinct tokens, so at most one child can match.

One verify forward runs `[pending] + nodes + side branch` at once. Each node sees the cache,
the pending token and its own ancestors (its own path), and sits at position
`pending position + depth`; so the target's logits at a node equal those of running that node's
path sequentially (SpecInfer, Miao et al. 2024; Medusa, Cai et al. 2024). After acceptance the
KV cache is compacted to the pending token plus the accepted path (`compact_keep`).

Acceptance, greedy: walk from the root, following the child whose token is the target's argmax;
the bonus token is the argmax at the last accepted node. Token-identical to greedy.

Acceptance, sampling (lossless multi-candidate verification; SpecInfer's multi-step speculative
sampling with deterministic drafts): at a node with children c1..cm and target distribution p,
accept c1 with probability p(c1); if rejected, remove c1 from p (renormalise) and try c2 against
the residual, and so on; if every child is rejected, the recovered token is drawn from the final
residual. The token leaving a node is therefore distributed exactly as p, whatever the tree.
This holds because the drafts are a deterministic function of the context (a one-hot q).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

import torch

from decbench.decoders.speculative.proposer import Draft, SideBranch
from decbench.sampler import draw

ROOT = -1  # the parent index of nodes that hang under the pending token


@dataclass
class VerifyBlock:
    """The inputs of one verify forward over `[pending] + nodes + side`."""

    ids: torch.Tensor  # [1, 1 + n + m]
    positions: torch.Tensor  # [1, 1 + n + m] absolute positions
    mask: torch.Tensor  # [1, 1 + n + m, 1 + n + m] bool: row may see column (new tokens only)


@dataclass
class TreeVerdict:
    path: list[int]  # accepted node indices, root first
    bonus: int  # the target's token after the path (recovered or bonus)
    recovered: bool  # the bonus was drawn from a residual after its candidates were rejected


class TreeBuilder:
    """Grows a tree of unique sibling tokens (a trie under the pending token)."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.sources: list[str] = []
        self._index: dict[tuple[int, int], int] = {}  # (parent, token) -> node

    def __len__(self) -> int:
        return len(self.tokens)

    def child(self, parent: int, token: int, source: str) -> int:
        """The node for `token` under `parent`, added if new (the first source wins)."""
        key = (parent, token)
        node = self._index.get(key)
        if node is None:
            node = len(self.tokens)
            self._index[key] = node
            self.tokens.append(token)
            self.parents.append(parent)
            self.sources.append(source)
        return node

    def add_path(self, tokens: list[int], source: str, limit: int | None = None) -> int:
        """Add a chain under the root, sharing prefixes; stop once the tree has `limit` nodes.
        Returns how many tokens of the chain are in the tree."""
        parent = ROOT
        for i, token in enumerate(tokens):
            if limit is not None and (parent, token) not in self._index and len(self) >= limit:
                return i
            parent = self.child(parent, token, source)
        return len(tokens)

    def draft(self, side: SideBranch | None = None) -> Draft:
        return Draft(list(self.tokens), None, list(self.parents), list(self.sources), side)


def best_first(probs: list[list[float]], nodes: int) -> list[tuple[int, ...]]:
    """The `nodes` rank paths (r1, ..., rd) with the highest prod_d probs[d][r_d], in the order
    a best-first search picks them, so every path comes after its prefix. probs: [depth][rank],
    each in [0, 1] (a child never outscores its parent)."""
    frontier = [(-p, (r,)) for r, p in enumerate(probs[0])] if probs else []
    heapq.heapify(frontier)
    chosen: list[tuple[int, ...]] = []
    while frontier and len(chosen) < nodes:
        negative, path = heapq.heappop(frontier)
        chosen.append(path)
        if len(path) < len(probs):
            for r, p in enumerate(probs[len(path)]):
                heapq.heappush(frontier, (negative * p, (*path, r)))
    return chosen


# -- shape -----------------------------------------------------------------------------------
def tree_parents(draft: Draft) -> list[int]:
    """[n] parents of the draft's nodes; a chain is the tree -1, 0, 1, ..."""
    if draft.parents is not None:
        return draft.parents
    return list(range(-1, len(draft.tokens) - 1))


def depths(parents: list[int]) -> list[int]:
    """[n] depth of each node (children of the pending token have depth 1)."""
    out: list[int] = []
    for i, parent in enumerate(parents):
        if not ROOT <= parent < i:
            raise ValueError(f"tree node {i} has parent {parent}; parents must come first")
        out.append(1 if parent == ROOT else out[parent] + 1)
    return out


def children(parents: list[int]) -> list[list[int]]:
    """[1 + n] children of the root (index 0) and of each node (index 1 + node), in order."""
    out: list[list[int]] = [[] for _ in range(len(parents) + 1)]
    for node, parent in enumerate(parents):
        out[parent + 1].append(node)
    return out


def ancestor_mask(parents: list[int]) -> torch.Tensor:
    """[n, n] bool: node i may see node j (j is i or one of its ancestors)."""
    n = len(parents)
    depths(parents)  # validates the order
    mask = torch.eye(n, dtype=torch.bool)
    for i, parent in enumerate(parents):
        if parent != ROOT:
            mask[i] |= mask[parent]
    return mask


def prune_depth(draft: Draft, max_depth: int) -> Draft:
    """The draft without nodes deeper than `max_depth` (the engine's token budget)."""
    if draft.parents is None:
        return Draft(draft.tokens[: max(max_depth, 0)], None, None, None, draft.side)
    keep = [i for i, d in enumerate(depths(draft.parents)) if d <= max_depth]
    if len(keep) == len(draft.tokens):
        return draft
    new_index = {old: new for new, old in enumerate(keep)}
    parents = [ROOT if draft.parents[i] == ROOT else new_index[draft.parents[i]] for i in keep]
    sources = [draft.sources[i] for i in keep] if draft.sources else None
    return Draft([draft.tokens[i] for i in keep], None, parents, sources, draft.side)


# -- verify ------------------------------------------------------------------------------------
def flatten(draft: Draft, pending: int, past: int) -> VerifyBlock:
    """Inputs for one forward over the pending token (at position `past`), the tree nodes and
    the side branch, on top of a cache of `past` tokens."""
    parents = tree_parents(draft)
    n = len(parents)
    side = draft.side
    m = len(side.tokens) if side is not None else 0
    size = 1 + n + m
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[:, 0] = True  # everyone sees the pending token
    mask[1 : 1 + n, 1 : 1 + n] = ancestor_mask(parents)
    offsets = [0, *depths(parents)]
    ids = [pending, *draft.tokens]
    if side is not None:
        mask[1 + n :, 1 + n :] = side.mask
        offsets += side.offsets
        ids += side.tokens
    positions = torch.tensor(offsets) + past
    return VerifyBlock(torch.tensor([ids]), positions[None], mask[None])


def path_contexts(tokens: list[int], draft: Draft) -> list[list[int]]:
    """[1 + n] the token context after the root and after each node (for repetition penalty)."""
    parents = tree_parents(draft)
    contexts = [list(tokens)]
    for node, parent in enumerate(parents):
        contexts.append([*contexts[parent + 1], draft.tokens[node]])
    return contexts


def accept_greedy(draft: Draft, targets: list[int]) -> TreeVerdict:
    """targets: [1 + n] the target's argmax after the root and after each node."""
    kids = children(tree_parents(draft))
    path: list[int] = []
    here = ROOT
    while True:
        wanted = targets[here + 1]
        match = next((c for c in kids[here + 1] if draft.tokens[c] == wanted), None)
        if match is None:
            return TreeVerdict(path, wanted, bool(kids[here + 1]))
        path.append(match)
        here = match


TargetProbs = Callable[[int], torch.Tensor]  # row (0 = root, 1 + node) -> [vocab] p
TreeRule = Callable[[Draft, TargetProbs, torch.Generator | None], TreeVerdict]


def accept_sampling(
    draft: Draft, target_probs: TargetProbs, generator: torch.Generator | None
) -> TreeVerdict:
    """Lossless multi-candidate verification with one-hot drafts (see the module docstring)."""
    kids = children(tree_parents(draft))
    path: list[int] = []
    here = ROOT
    while True:
        p = target_probs(here + 1)
        candidates = kids[here + 1]
        if not candidates:
            return TreeVerdict(path, int(draw(p, generator)), False)
        accepted, residual = try_candidates(p, [draft.tokens[c] for c in candidates], generator)
        if accepted is None:
            recovered = draw(residual, generator)
            return TreeVerdict(path, int(recovered), True)
        here = candidates[accepted]
        path.append(here)


def try_candidates(
    p: torch.Tensor,  # [vocab] target distribution at the node
    tokens: list[int],  # [m] distinct candidate tokens, in priority order
    generator: torch.Generator | None,
) -> tuple[int | None, torch.Tensor]:
    """Accept candidate i with probability residual_i(token_i), where residual_i is p with the
    earlier candidates removed and renormalised. Returns (accepted index or None, residual)."""
    residual = p
    for i, token in enumerate(tokens):
        total = residual.sum()
        chance = (residual[token] / total).item() if total > 0 else 0.0
        if torch.rand((), generator=generator).item() < chance:
            return i, residual
        residual = residual.clone()
        residual[token] = 0.0
    total = residual.sum()
    return None, residual / total if total > 0 else p


# -- after acceptance ----------------------------------------------------------------------------
def compact_keep(path: list[int]) -> torch.Tensor:
    """[1 + len(path)] the new-token positions to keep in the cache: pending, then the path."""
    return torch.tensor([0, *[1 + node for node in path]], dtype=torch.long)


def best_branch(draft: Draft, path: list[int]) -> list[int]:
    """The accepted path, continued through first children down to a leaf: the branch a step's
    trace reports as drafted (accepted + the first rejected candidate's line)."""
    kids = children(tree_parents(draft))
    branch = list(path)
    here = path[-1] if path else ROOT
    while kids[here + 1]:
        here = kids[here + 1][0]
        branch.append(here)
    return branch

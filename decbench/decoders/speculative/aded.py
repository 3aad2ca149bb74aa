"""ADED (Liu et al., "Adaptive Draft-Verification for Efficient Large Language Model Decoding",
2024).

Drafts come from a tri-gram table: for each pair of tokens (a, b), weighted successors c. The
table adapts while decoding, approximating the target's own output distribution: it starts from
the prompt's tri-grams, every committed tri-gram adds weight, and so does every prediction the
target makes at a verified tree node off the accepted path (what the target would write after
that node). Each row keeps its `top_k` heaviest successors, as the paper prunes its table.

Drafting balances exploitation and exploration with a Monte Carlo tree search over the table,
as the paper describes: each of `iterations` simulations descends by PUCT (mean rollout value
plus an exploration bonus `exploration * prior * sqrt(N_parent) / (1 + N_child)`, the prior
being the tri-gram probability), expands one node, rolls out to `depth` tokens by sampling the
table and backs up the rollout's score (the summed tri-gram probabilities). The draft tree is
the `nodes` most visited search nodes (a parent is visited at least as often as its children,
so they form a tree). The search has its own seeded RNG, apart from the engine's.

The paper seeds the table from a large corpus (UltraChat, The Stack); decbench has no datastore,
so the table starts from the prompt and learns during decoding.

Lossless: exact longest-path match under greedy (token-identical to greedy); under sampling,
multi-candidate rejection sampling over siblings with one-hot drafts (tree.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.decoders.speculative.tree import TreeBuilder
from decbench.options import option

Pair = tuple[int, int]


@dataclass
class AdedOptions:
    nodes: int = option(16, ge=1)  # draft tree size (at most; sparse tables give fewer)
    depth: int = option(5, ge=1)  # draft depth (tokens after the pending one)
    iterations: int = option(48, ge=1)  # MCTS simulations per step
    exploration: float = option(1.0, ge=0)  # PUCT exploration constant
    top_k: int = option(8, ge=1)  # successors kept per tri-gram context
    text_weight: float = option(1.0, ge=0)  # weight added per committed (or prompt) tri-gram
    # weight added per target prediction off the accepted path
    verify_weight: float = option(0.5, ge=0)
    seed: int = 0  # the search's own RNG


class TrigramTable:
    """(a, b) -> {c: weight}, each row cut to its `top_k` heaviest successors."""

    def __init__(self, top_k: int) -> None:
        self.top_k = top_k
        self.rows: dict[Pair, dict[int, float]] = {}
        self._sorted: dict[Pair, list[tuple[int, float]]] = {}  # cache of successors()

    def __len__(self) -> int:
        return sum(len(row) for row in self.rows.values())

    def add(self, a: int, b: int, c: int, weight: float) -> None:
        row = self.rows.setdefault((a, b), {})
        row[c] = row.get(c, 0.0) + weight
        if len(row) > self.top_k:
            del row[min(row, key=row.__getitem__)]
        self._sorted.pop((a, b), None)

    def add_text(self, tokens: list[int], weight: float) -> None:
        for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False):
            self.add(a, b, c, weight)

    def successors(self, pair: Pair) -> list[tuple[int, float]]:
        """[(token, probability)] heaviest first; empty when the pair was never seen."""
        cached = self._sorted.get(pair)
        if cached is None:
            row = self.rows.get(pair, {})
            total = sum(row.values())
            cached = sorted(((c, w / total) for c, w in row.items()), key=lambda t: -t[1])
            self._sorted[pair] = cached
        return cached


@dataclass
class SearchNode:
    token: int
    pair: Pair  # the tri-gram context after this node: (previous token, token)
    prior: float  # tri-gram probability of `token` after its parent
    depth: int
    parent: SearchNode | None = None
    children: list[SearchNode] | None = None  # None until expanded
    visits: int = 0
    value: float = 0.0  # summed rollout scores

    def puct(self, parent_visits: int, exploration: float) -> float:
        mean = self.value / self.visits if self.visits else 0.0
        return mean + exploration * self.prior * math.sqrt(parent_visits) / (1 + self.visits)


@dataclass
class MonteCarloDrafter:
    table: TrigramTable
    options: AdedOptions
    rng: random.Random = field(default_factory=random.Random)

    def search(self, pair: Pair, depth: int) -> SearchNode:
        """Run the simulations from the context `pair`; returns the search root."""
        root = SearchNode(pair[1], pair, 1.0, 0)
        if not self.table.successors(pair):
            root.children = []
            return root
        for _ in range(self.options.iterations):
            leaf = self.select(root, depth)
            score = self.rollout(leaf, depth)
            node: SearchNode | None = leaf
            while node is not None:
                node.visits += 1
                node.value += score
                node = node.parent
        return root

    def select(self, node: SearchNode, depth: int) -> SearchNode:
        """Descend by PUCT through expanded nodes, then expand the first unexpanded one."""
        while node.depth < depth:
            if node.children is None:
                node.children = [
                    SearchNode(c, (node.pair[1], c), prob, node.depth + 1, node)
                    for c, prob in self.table.successors(node.pair)
                ]
                return node.children[0] if node.children else node
            if not node.children:
                return node
            visits = max(node.visits, 1)
            node = max(node.children, key=lambda c: c.puct(visits, self.options.exploration))
        return node

    def rollout(self, leaf: SearchNode, depth: int) -> float:
        """Mean tri-gram probability over the path to `leaf` and a sampled continuation to
        `depth` tokens (a missing successor scores 0), so values lie in [0, 1]."""
        score, node = 0.0, leaf
        while node.parent is not None:
            score += node.prior
            node = node.parent
        pair = leaf.pair
        for _ in range(depth - leaf.depth):
            successors = self.table.successors(pair)
            if not successors:
                break
            tokens, probs = zip(*successors, strict=True)
            token = self.rng.choices(tokens, probs)[0]
            score += probs[tokens.index(token)]
            pair = (pair[1], token)
        return score / depth

    def draft(self, pair: Pair, depth: int) -> Draft:
        """The `nodes` most visited search nodes, as a tree."""
        root = self.search(pair, depth)
        visited: list[SearchNode] = []
        stack = list(root.children or [])
        while stack:
            node = stack.pop()
            if node.visits:
                visited.append(node)
                stack.extend(node.children or [])
        visited.sort(key=lambda n: (-n.visits, n.depth, -n.prior))
        chosen = visited[: self.options.nodes]
        chosen.sort(key=lambda n: n.depth)  # parents first
        builder = TreeBuilder()
        index: dict[int, int] = {}
        for node in chosen:
            parent = -1 if node.parent is root else index[id(node.parent)]
            index[id(node)] = builder.child(parent, node.token, "trigram")
        return builder.draft()


class AdedProposer:
    def __init__(self, options: AdedOptions, prompt: list[int]) -> None:
        self.options = options
        self.table = TrigramTable(options.top_k)
        self.table.add_text(prompt, options.text_weight)
        self.learned_upto = len(prompt)  # tri-grams ending before this index are in the table
        self.drafter = MonteCarloDrafter(self.table, options, random.Random(options.seed))

    def propose(self, ctx: ProposerContext) -> Draft:
        tokens = ctx.tokens
        if len(tokens) < 2:
            return Draft([])
        depth = min(self.options.depth, ctx.max_tokens)
        return self.drafter.draft((tokens[-2], tokens[-1]), depth)

    def observe(self, feedback: Feedback) -> None:
        """Adapt: committed tri-grams, then the target's predictions off the accepted path."""
        tokens = feedback.tokens
        start = max(self.learned_upto - 2, 0)
        self.table.add_text(tokens[start:], self.options.text_weight)
        self.learned_upto = len(tokens)
        draft = feedback.draft
        if draft is None or draft.parents is None or feedback.logits is None:
            return
        on_path = set(feedback.path or [])
        predictions = feedback.logits[1 : 1 + len(draft.tokens)].argmax(-1).tolist()
        for node, predicted in enumerate(predictions):
            if node in on_path:
                continue  # its prediction was committed and is counted as text
            parent = draft.parents[node]
            before = feedback.pending if parent == -1 else draft.tokens[parent]
            self.table.add(before, draft.tokens[node], predicted, self.options.verify_weight)


@register_decoder
class Aded(PlannedDecoder):
    spec = MethodSpec(
        name="aded",
        summary="ADED: an adaptive tri-gram table drafts a tree by Monte Carlo tree search",
        paper="Liu et al., Adaptive Draft-Verification for Efficient Large Language Model "
        "Decoding (2024)",
        lossless=True,
        lossless_note="longest-path exact match under greedy; multi-candidate rejection "
        "sampling over siblings (one-hot drafts) under sampling",
        supports_tree=True,
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = AdedOptions

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        proposer = AdedProposer(self.options, request.prompt_ids)

        def report() -> dict:
            return {
                "trigram_contexts": len(proposer.table.rows),
                "trigram_entries": len(proposer.table),
            }

        return RowPlan(proposer, report=report)

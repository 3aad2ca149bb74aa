"""Token Recycling (Luo et al., "Turning Trash into Treasure: Accelerating Inference of Large
Language Models with Token Recycling", 2024).

Every target forward scores a whole vocabulary at each position and decoding keeps one token;
Token Recycling keeps the top-k of the others. An adjacency matrix [vocab, k] holds, for each
token, the k most likely successors the target predicted the last time that token was an input
(any verified position: the pending token, accepted and rejected tree nodes alike). Each step
expands a static tree template breadth-first from the pending token: node (parent, rank r) gets
the parent's r-th recycled successor. No draft model, no datastore; the storage is bounded by
vocab x k integers and reported in `stats["proposer"]`.

Beyond the paper, `warm_start` also recycles the prefill's logits, as if the prompt had been
verified, so that a cold matrix drafts from the first step; it costs the LM head over the
prompt once and a transient [prompt, vocab] tensor, hence the cap WARM_START_MAX.

The template is the static tree that maximises the expected accepted length when the rank-r
candidate is accepted with probability `RANK_ACCEPT ** (r + 1)` (the shape of the paper's
template: deep along rank 0, wide near the root), cut to `nodes` nodes; the paper verifies 80
nodes on a GPU, a CPU wants far fewer. Unknown successors (rows never written) are pruned.

Lossless: exact longest-path match under greedy (token-identical to greedy); under sampling,
multi-candidate rejection sampling over siblings with one-hot drafts (tree.py), which keeps the
target's distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.errors import ConfigError
from decbench.options import option

RANK_ACCEPT = 0.45  # prior used only to shape the static template
UNKNOWN = -1  # an adjacency entry never written
WARM_START_MAX = 1024  # longest prompt whose prefill logits ([n, vocab] floats) are recycled


@dataclass
class RecyclingOptions:
    k: int = option(8, ge=1)  # successors kept per token (adjacency matrix width)
    nodes: int = option(8, ge=1)  # tree template size (the paper uses 80 on a GPU; a CPU wants few)
    max_depth: int = option(6, ge=1)  # deepest template level
    persist: bool = True  # keep the matrix across requests (the paper's hot start)
    warm_start: bool = True  # also recycle the prefill's logits (prompts up to WARM_START_MAX)


@dataclass
class Template:
    """A static draft tree in breadth-first order: node i is the `ranks[i]`-th successor of
    node `parents[i]` (-1 = the pending token)."""

    parents: list[int]  # [n]
    ranks: list[int]  # [n]
    levels: list[tuple[int, int]]  # [depth] (start, end) node range of each depth


def build_template(nodes: int, k: int, max_depth: int) -> Template:
    """The `nodes` tree nodes with the highest prior path probability, breadth-first."""
    prior = [RANK_ACCEPT ** (r + 1) for r in range(k)]  # the same at every depth
    chosen = tree.best_first([prior] * max_depth, nodes)
    chosen.sort(key=lambda path: (len(path), path))  # breadth-first, rank order within a level
    index = {path: i for i, path in enumerate(chosen)}
    parents = [index[path[:-1]] if len(path) > 1 else -1 for path in chosen]
    levels = []
    for depth in range(1, max((len(p) for p in chosen), default=0) + 1):
        members = [i for i, path in enumerate(chosen) if len(path) == depth]
        levels.append((members[0], members[-1] + 1))
    return Template(parents, [path[-1] for path in chosen], levels)


class AdjacencyMatrix:
    """[vocab, k] recycled successor candidates of every token (-1 = not seen yet)."""

    def __init__(self, vocab: int, k: int) -> None:
        self.table = torch.full((vocab, k), UNKNOWN, dtype=torch.int32)  # [vocab, k]
        self.updates = 0

    @property
    def storage_bytes(self) -> int:
        return self.table.element_size() * self.table.nelement()

    def update(self, tokens: torch.Tensor, logits: torch.Tensor) -> None:
        """tokens: [n] inputs of a forward; logits: [n, vocab] its outputs at those inputs."""
        k = self.table.shape[1]
        top = logits.topk(k, dim=-1).indices  # on the target's device
        self.table[tokens] = top.to(device=self.table.device, dtype=torch.int32)
        self.updates += 1

    def stats(self) -> dict:
        vocab, k = self.table.shape
        return {
            "adjacency_shape": [vocab, k],
            "adjacency_bytes": self.storage_bytes,
            "rows_filled": int((self.table[:, 0] != UNKNOWN).sum()),
        }


class RecyclingProposer:
    def __init__(self, matrix: AdjacencyMatrix, template: Template) -> None:
        self.matrix = matrix
        self.template = template
        self.parents = torch.tensor(template.parents, dtype=torch.long)  # [n]
        self.ranks = torch.tensor(template.ranks, dtype=torch.long)  # [n]

    def propose(self, ctx: ProposerContext) -> Draft:
        tokens = self.expand(ctx.tokens[-1])
        return prune_unknown(tokens, self.template.parents)

    def expand(self, root: int) -> torch.Tensor:
        """[n] template tokens, level by level: one gather per depth."""
        table = self.matrix.table
        tokens = torch.full((len(self.template.parents),), UNKNOWN, dtype=torch.int32)
        for depth, (start, end) in enumerate(self.template.levels):
            if depth == 0:
                parent_tokens = torch.full((end - start,), root, dtype=torch.int32)
            else:
                parent_tokens = tokens[self.parents[start:end]]
            known = parent_tokens != UNKNOWN
            rows = table[parent_tokens.clamp_min(0).long(), self.ranks[start:end]]
            tokens[start:end] = torch.where(known, rows, UNKNOWN)
        return tokens

    def observe(self, feedback: Feedback) -> None:
        """Recycle the top-k of every verified position: the pending token and each node."""
        if feedback.logits is None or feedback.draft is None:
            return
        inputs = [feedback.pending, *feedback.draft.tokens]
        rows = feedback.logits[: len(inputs)]
        self.matrix.update(torch.tensor(inputs, dtype=torch.long), rows)


def prune_unknown(tokens: torch.Tensor, parents: list[int]) -> Draft:
    """The template without unknown nodes (their subtrees are unknown too)."""
    values = tokens.tolist()
    keep: dict[int, int] = {}
    out_tokens: list[int] = []
    out_parents: list[int] = []
    for node, token in enumerate(values):
        parent = parents[node]
        if token == UNKNOWN or (parent != -1 and parent not in keep):
            continue
        keep[node] = len(out_tokens)
        out_tokens.append(token)
        out_parents.append(-1 if parent == -1 else keep[parent])
    return Draft(out_tokens, None, out_parents, ["adjacency"] * len(out_tokens))


@register_decoder
class TokenRecycling(PlannedDecoder):
    spec = MethodSpec(
        name="recycling",
        summary="token recycling: a tree from each token's recycled top-k successors",
        paper="Luo et al., Turning Trash into Treasure: Accelerating Inference of Large "
        "Language Models with Token Recycling (2024)",
        lossless=True,
        lossless_note="longest-path exact match under greedy; multi-candidate rejection "
        "sampling over siblings (one-hot drafts) under sampling",
        supports_tree=True,
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = RecyclingOptions

    def __init__(self, target: ModelRunner, options: RecyclingOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        if options.k > target.vocab_size:  # needs the model: the declared range is k >= 1
            raise ConfigError(f"method.k must be <= {target.vocab_size}, got {options.k}")
        self.template = build_template(options.nodes, options.k, options.max_depth)
        self.matrix = AdjacencyMatrix(target.vocab_size, options.k)

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        """With `persist` the rows of a batch share (and all update) the one matrix."""
        if not self.options.persist:
            self.matrix = AdjacencyMatrix(self.target.vocab_size, self.options.k)
        matrix = self.matrix
        warm = self.options.warm_start and len(request.prompt_ids) <= WARM_START_MAX

        def report() -> dict:
            return {**matrix.stats(), "warm_started": warm}

        proposer = RecyclingProposer(matrix, self.template)
        return RowPlan(proposer, observe_prefill=warm, report=report)

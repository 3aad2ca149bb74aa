"""A draft model that drafts trees: the draft's distribution q after the context and after any
set of tree nodes, for the multi-draft methods (SpecTr, RSD).

The draft's KV cache holds the committed tokens only. To get q after tree nodes, the whole
tree drafted so far runs in one forward under its ancestor mask (each node sees the context and
its own path), then the cache is cropped back to the context. One forward per tree level, as
many as a chain draft of the same depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.proposer import Draft
from decbench.sampler import target_distribution
from decbench.settings import SamplingSettings


@dataclass
class DraftTree:
    """A tree draft plus what its verification rule needs from the draft model."""

    draft: Draft  # tokens and parents, topological order
    q: dict[int, torch.Tensor]  # node (tree.ROOT for the root) -> [vocab] the draft's q after it
    tries: dict[int, list[int]]  # node -> child nodes in the order the rule must try them


class TreeDrafter:
    """The draft model's cache management for tree drafting."""

    def __init__(self, draft: ModelRunner) -> None:
        self.draft = draft
        self.cached: list[int] = []  # tokens in the draft's KV cache
        draft.reset()

    def root_logits(self, tokens: list[int]) -> torch.Tensor:
        """Roll the cache back to its common prefix with `tokens`, feed the rest, and return
        the draft's logits after the whole context ([vocab])."""
        keep = 0
        limit = min(len(self.cached), len(tokens) - 1)
        while keep < limit and self.cached[keep] == tokens[keep]:
            keep += 1
        self.draft.crop(keep)
        feed = tokens[keep:]
        self.cached = self.cached[:keep] + feed
        return self.draft.forward(torch.tensor([feed]), all_logits=False).logits[0, -1]

    def node_logits(self, tokens: list[int], parents: list[int], nodes: list[int]) -> torch.Tensor:
        """[len(nodes), vocab] the draft's logits after each of `nodes` of the tree given by
        `tokens`/`parents`; the cache is left holding the context only."""
        return tree_logits(self.draft, tokens, parents, nodes)


def tree_logits(
    runner: ModelRunner,
    tokens: list[int],  # [n] tree nodes in topological order
    parents: list[int],  # [n] parent of each node (tree.ROOT: hangs under the cached context)
    nodes: list[int],  # which nodes' logits to return
) -> torch.Tensor:
    """[len(nodes), vocab] the runner's logits after each of `nodes`, from one forward of the
    whole tree under its ancestor mask, placed after everything in the cache; the cache is
    cropped back to what it held."""
    context = runner.cache_len
    positions = torch.tensor(tree.depths(parents)) - 1 + context
    mask = tree.ancestor_mask(parents)
    out = runner.forward(torch.tensor([tokens]), positions[None], mask[None])
    runner.crop(context)
    return out.logits[0, nodes]


def draft_probs(
    logits: torch.Tensor,  # [n, vocab]
    sampling: SamplingSettings,
    contexts: list[list[int]],  # [n] token contexts, only read under a repetition penalty
) -> torch.Tensor:
    """The draft's q with the target's sampler settings (the same warping keeps it lossless)."""
    penalized = sampling.repetition_penalty != 1.0
    return target_distribution(logits, sampling, contexts if penalized else [])


def node_contexts(
    tokens: list[int], draft_tokens: list[int], parents: list[int]
) -> list[list[int]]:
    """[n] the token context after each node (for the repetition penalty)."""
    return tree.path_contexts(tokens, Draft(draft_tokens, None, parents))[1:]

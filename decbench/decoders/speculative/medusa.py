"""Medusa (Cai et al., "Medusa: Simple LLM Inference Acceleration Framework with Multiple
Decoding Heads", 2024).

K small heads on the target's last hidden state guess the tokens 2..K+1 positions ahead (the
target's own LM head gives the next one). Each step the heads read the hidden state of the last
accepted token, which the previous verify forward already computed, so drafting costs K residual
blocks and one small projection, no extra model. Head d's top-k tokens fill depth d of a
candidate tree. The paper uses a static tree calibrated on head accuracies; here the tree is
grown best-first by the product of the heads' probabilities along each path (the dynamic-tree
idea of EAGLE-2), up to `nodes` nodes, so it adapts to how sure the heads are at each step.

The heads are trained by `decbench distill --kind medusa` (decbench.drafts.medusa); the default
model ships with a set (alias `smollm2-135m-medusa`).

Acceptance: `acceptance = "exact"` (default) is lossless: longest-path exact match under greedy,
multi-candidate rejection sampling over siblings (one-hot drafts) under sampling.
`acceptance = "typical"` is the paper's typical acceptance (typical.py): LOSSY under sampling
(it does not preserve the target's distribution); greedy stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.capabilities import HIDDEN_STATES, TORCH_MODEL
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext, last_row
from decbench.decoders.speculative.typical import typical_rule
from decbench.drafts.medusa import MedusaHeads, load_heads
from decbench.drafts.stored import check_fits
from decbench.options import option

ACCEPTANCE = ("exact", "typical")


@dataclass
class MedusaOptions:
    heads: str = "smollm2-135m-medusa"  # shipped alias or a folder from `decbench distill`
    top_k: int = option(2, ge=1)  # candidates per head
    nodes: int = option(4, ge=1)  # tree size (the paper verifies 64 on a GPU; a CPU wants few)
    # exact (lossless) or typical (lossy under sampling)
    acceptance: str = option("exact", choices=ACCEPTANCE)
    posterior_threshold: float = option(0.09, gt=0, le=1)  # typical acceptance: epsilon
    # typical acceptance: delta (the paper: sqrt(epsilon))
    posterior_alpha: float = option(0.3, gt=0)


class MedusaProposer:
    wants_hidden = True  # the engine passes the target's last hidden states in every feedback

    def __init__(self, heads: MedusaHeads, rows: torch.Tensor, options: MedusaOptions) -> None:
        self.heads = heads
        self.rows = rows  # [v', hidden] LM head rows the heads score
        self.options = options
        self.hidden: torch.Tensor | None = None  # [hidden] at the last accepted token

    def observe(self, feedback: Feedback) -> None:
        if feedback.hidden is not None:
            self.hidden = feedback.hidden[last_row(feedback)]

    def propose(self, ctx: ProposerContext) -> Draft:
        depth = min(len(self.heads.blocks), ctx.max_tokens)
        if self.hidden is None or depth < 1:
            return Draft([])
        with torch.inference_mode():
            logits = self.heads(self.hidden.to(self.rows.dtype), self.rows)[:depth]  # [d, v']
            top = logits.float().softmax(-1).topk(self.options.top_k, dim=-1)
        tokens = self.heads.token_ids(top.indices).tolist()  # [d][top_k]
        return grow_tree(top.values.tolist(), tokens, self.options.nodes)


def grow_tree(probs: list[list[float]], tokens: list[list[int]], nodes: int) -> Draft:
    """Best-first tree: a path of ranks (r1, ..., rd) scores prod_d probs[d][r_d]; the `nodes`
    best paths whose prefixes are all in the tree, in topological order."""
    paths = tree.best_first(probs, nodes)
    index = {path: node for node, path in enumerate(paths)}
    return Draft(
        [tokens[len(path) - 1][path[-1]] for path in paths],
        None,
        [index[path[:-1]] if len(path) > 1 else tree.ROOT for path in paths],
        [f"head{len(path)}" for path in paths],
    )


@register_decoder
class Medusa(PlannedDecoder):
    spec = MethodSpec(
        requires=frozenset({HIDDEN_STATES, TORCH_MODEL}),
        name="medusa",
        summary="Medusa heads on the target's hidden state draft a tree, verified in one forward",
        paper="Cai et al., Medusa: Simple LLM Inference Acceleration Framework with Multiple "
        "Decoding Heads (2024)",
        lossless=True,
        lossless_note="acceptance = exact: longest-path exact match under greedy, multi-candidate "
        "rejection sampling under sampling; acceptance = typical is LOSSY under sampling",
        lossy_option='acceptance = "typical" (under sampling)',
        supports_tree=True,
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = MedusaOptions

    def __init__(self, target: ModelRunner, options: MedusaOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        from decbench.models import artifact_path

        heads, record = load_heads(artifact_path(options.heads), target.model.dtype)
        weight = target.model.get_output_embeddings().weight.detach()  # [vocab, hidden]
        hidden, subset = heads.blocks[0].weight.shape[1], heads.subset
        check_fits("method.heads", options.heads, hidden, subset, record, target.name, weight)
        self.heads = heads.to(target.device)
        self.rows = heads.rows(weight).to(target.device)
        self.record = record
        self.options.top_k = min(options.top_k, self.rows.shape[0])

    @classmethod
    def is_lossless(cls, options: MedusaOptions) -> bool:
        return options.acceptance == "exact"

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        proposer = MedusaProposer(self.heads, self.rows, self.options)
        rule = tree.accept_sampling
        if self.options.acceptance == "typical":
            rule = typical_rule(self.options.posterior_threshold, self.options.posterior_alpha)
        return RowPlan(proposer, tree_rule=rule, report=self._report)

    def _report(self) -> dict:
        return {
            "heads": len(self.heads.blocks),
            "vocab_subset": None if self.heads.subset is None else len(self.heads.subset),
            "heads_target": self.record.get("target"),
            "acceptance": self.options.acceptance,
        }

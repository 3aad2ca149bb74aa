"""Recursive Speculative Decoding, constant branching (RSD-C; Jeon et al., "Recursive
Speculative Decoding: Accelerating LLM Inference via Sampling Without Replacement", 2024).

The draft model builds a tree whose siblings are sampled WITHOUT replacement: node children
come from a Gumbel-top-b draw on the draft's distribution q there (log q + Gumbel noise, the b
largest, in decreasing order), with `branches[d]` children per node at depth d. The tree is
verified in one target forward, then walked by recursive rejection sampling: at a node with
children x_1..x_m (in draw order), p_1 = p and q_1 = q; accept x_i with probability
min(1, p_i(x_i) / q_i(x_i)); on rejection p_{i+1} = norm(max(0, p_i - q_i)) and q_{i+1} = q_i
without x_i, renormalised (the law of the next draw without replacement); once every child is
rejected the recovered token is drawn from p_{m+1}. Each stage is a speculative-sampling step
whose draft x_i follows q_i given the earlier draws, so the token leaving a node follows p
exactly. `budget` caps the tree's nodes (the target tokens per verify beyond the pending one),
keeping the first nodes in breadth-first order, so each node keeps a prefix of its draws.
LOSSLESS: exact in distribution under sampling; at temperature 0 the children are the draft's
top-b tokens and the engine's exact match keeps the output token-identical to greedy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.draft_model import load_draft
from decbench.decoders.speculative.engine import run_speculative
from decbench.decoders.speculative.multi_draft import (
    DraftTree,
    TreeDrafter,
    draft_probs,
    node_contexts,
)
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.errors import ConfigError
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import draw, penalize


@dataclass
class RSDOptions:
    draft: str = "smollm2-135m-student"  # model name/folder sharing the tokenizer, or self:...
    branches: list[int] = option([3, 2, 1], ge=1)  # children per node, by depth
    # most tree nodes (target tokens per step besides the pending one); 0 = all
    budget: int = option(0, ge=0)

    def validate(self) -> None:
        if not self.branches:
            raise ConfigError("method.branches needs one or more widths >= 1, got []")


# -- recursive rejection sampling ----------------------------------------------------------------
def rrs_step(
    p: torch.Tensor, q: torch.Tensor, token: int
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """One stage at draft `token` ~ q: (acceptance probability, p after a rejection, q for the
    next draw without replacement). p, q: [vocab]."""
    q_token = q[token].item()
    chance = min(1.0, p[token].item() / q_token) if q_token > 0 else 0.0
    residual = (p - q).clamp_min(0.0)
    total = residual.sum()
    p_next = residual / total if total > 0 else p  # p == q: a rejection has probability 0
    q_next = q.clone()
    q_next[token] = 0.0
    left = q_next.sum()
    return chance, p_next, (q_next / left if left > 0 else q_next)


def rrs_select(
    p: torch.Tensor,  # [vocab] target distribution
    q: torch.Tensor,  # [vocab] draft distribution the children were drawn from
    tokens: list[int],  # [m] children in draw order (sampled without replacement)
    generator: torch.Generator | None,
    step=rrs_step,
) -> tuple[int | None, torch.Tensor]:
    """Returns (index of the accepted child or None, the distribution to recover from)."""
    for i, token in enumerate(tokens):
        chance, p_next, q_next = step(p, q, token)
        if torch.rand((), generator=generator).item() < chance:
            return i, p
        p, q = p_next, q_next
    return None, p


class TreeSource(Protocol):
    """A proposer that keeps its latest tree draft with the draft's q at each node."""

    last: DraftTree | None


def rsd_rule(source: TreeSource, step=rrs_step) -> tree.TreeRule:
    """The tree rule for `source`'s latest draft: recursive rejection sampling down the tree,
    each node's children tried in `tries` order (the order they were drawn without
    replacement)."""

    def accept(
        draft: Draft, target_probs: tree.TargetProbs, generator: torch.Generator | None
    ) -> tree.TreeVerdict:
        drafted = source.last
        if drafted is None or drafted.draft is not draft:
            raise RuntimeError("the verified draft is not the RSD proposer's latest")
        path: list[int] = []
        here = tree.ROOT
        while True:
            p = target_probs(here + 1)
            tries = drafted.tries.get(here, [])
            if not tries:
                return tree.TreeVerdict(path, int(draw(p, generator)), False)
            q = drafted.q[here].to(p.device)
            tokens = [draft.tokens[c] for c in tries]
            chosen, residual = rrs_select(p, q, tokens, generator, step)
            if chosen is None:
                return tree.TreeVerdict(path, int(draw(residual, generator)), True)
            here = tries[chosen]
            path.append(here)

    return accept


def gumbel_top(
    scores: torch.Tensor,  # [vocab] log q (sampling) or logits (greedy)
    b: int,
    generator: torch.Generator | None,
) -> list[int]:
    """The b largest of scores + Gumbel noise (no noise without a generator), largest first:
    a draw of b tokens without replacement from softmax(scores). Never a -inf token."""
    b = min(b, int(torch.isfinite(scores).sum().item()))
    if generator is not None:
        uniform = torch.rand(scores.shape, generator=generator).clamp(1e-20, 1.0)
        scores = scores - (-uniform.log()).log().to(scores.device)
    return torch.topk(scores, b).indices.tolist()


# -- drafting ------------------------------------------------------------------------------------
def node_distribution(
    ctx: ProposerContext,
    builder: tree.TreeBuilder,
    node: int,
    logits: torch.Tensor,  # [vocab] the draft's logits after `node`
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log q [vocab], q [vocab] or None) at a tree node. Sampling: the draft's q under the
    target's sampler settings. Greedy: None and the log-softmax of the penalised logits, whose
    ordering is the draft's greedy ranking."""
    context: list[int] = []
    if ctx.sampling.repetition_penalty != 1.0:
        if node == tree.ROOT:
            context = list(ctx.tokens)
        else:
            context = node_contexts(ctx.tokens, builder.tokens, builder.parents)[node]
    if ctx.sampling.greedy:
        contexts = [context] if context else []
        scores = penalize(logits[None], contexts, ctx.sampling.repetition_penalty)[0]
        return scores.float().log_softmax(-1), None
    q = draft_probs(logits[None], ctx.sampling, [context])[0]
    return q.log(), q


def run_rsd(decoder: Decoder, proposer: TreeSource, request: Request) -> GenerationResult:
    """The speculative engine with `proposer`'s tree verified by recursive rejection sampling."""
    rule = rsd_rule(proposer)
    return run_speculative(
        decoder.spec.name, decoder.options, decoder.target, proposer, request, tree_rule=rule
    )


# -- proposer ------------------------------------------------------------------------------------
class RSDProposer:
    def __init__(self, draft: ModelRunner, options: RSDOptions) -> None:
        self.drafter = TreeDrafter(draft)
        self.options = options
        self.last: DraftTree | None = None

    def propose(self, ctx: ProposerContext) -> Draft:
        branches = self.options.branches[: max(ctx.max_tokens, 0)]
        budget = self.options.budget or 1 << 30
        builder = tree.TreeBuilder()
        q: dict[int, torch.Tensor] = {}
        tries: dict[int, list[int]] = {}
        logits = {tree.ROOT: self.drafter.root_logits(ctx.tokens)} if branches else {}
        level = [tree.ROOT]
        for depth, width in enumerate(branches):
            below: list[int] = []
            for here in level:
                log_q, q_here = node_distribution(ctx, builder, here, logits[here])
                if q_here is not None:
                    q[here] = q_here
                tokens = gumbel_top(log_q, width, ctx.generator if q_here is not None else None)
                tokens = tokens[: max(budget - len(builder), 0)]
                nodes = [builder.child(here, token, "rsd") for token in tokens]
                tries[here] = nodes
                below += nodes
            if not below or depth == len(branches) - 1 or len(builder) >= budget:
                break
            rows = self.drafter.node_logits(builder.tokens, builder.parents, below)
            logits.update(zip(below, rows, strict=True))
            level = below
        draft = builder.draft()
        self.last = DraftTree(draft, q, tries)
        return draft

    def observe(self, feedback: Feedback) -> None:
        pass


@register_decoder
class RecursiveSpeculativeDecoding(Decoder):
    spec = MethodSpec(
        name="rsd",
        summary="a draft tree sampled without replacement, verified by recursive rejection sampling",
        paper=(
            "Jeon et al., Recursive Speculative Decoding: Accelerating LLM Inference via "
            "Sampling Without Replacement (2024)"
        ),
        lossless=True,
        lossless_note="recursive rejection sampling keeps the target's distribution; exact match under greedy",
        needs_draft=True,
        emits_draft_probs=True,
        supports_tree=True,
        drafts=True,
        constraints=True,
    )
    Options = RSDOptions

    def __init__(self, target: ModelRunner, options: RSDOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.draft = load_draft(options.draft, target, ctx)

    def generate(self, request: Request) -> GenerationResult:
        return run_rsd(self, RSDProposer(self.draft, self.options), request)

"""SpecTr (Sun et al., "SpecTr: Fast Speculative Decoding via Optimal Transport", NeurIPS 2023).

The draft model samples k i.i.d. continuations of `depth` tokens; their trie is verified in one
tree forward. At each tree level the paper's k-sequential selection (K-SEQ, its Algorithm 2, a
(1 - 1/e)-optimal approximation of the optimal-transport coupling between k draft draws and one
target token) picks the next token: with p the target and q the draft distribution there and
X_1..X_k the draws (i.i.d. q, in draw order), accept X_i with probability
min(1, p(X_i) / (gamma * q(X_i))); if all k are rejected, draw from the residual

    p_res(x) ∝ max(0, p(x) - min(q(x), p(x)/gamma) * (1 - (1 - beta)^k) / beta),
    beta = sum_x min(q(x), p(x)/gamma).

Any gamma in [1, k] with 1 - (1 - beta)^k <= gamma * beta keeps the output distributed exactly
as p (the residual is then non-negative and holds the missing mass (1 - beta)^k); we take the
smallest such gamma, found by bisection (gamma = 1 at k = 1: plain speculative sampling).
After an accepted token, the draws that continue are those of the sequences through it: given
their prefix they are again i.i.d. from the draft, so the next level runs K-SEQ with their
number. LOSSLESS: exact in distribution under sampling; at temperature 0 the k draws collapse
to the draft's greedy chain and the engine's exact match keeps the output token-identical.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

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
from decbench.options import option
from decbench.results import GenerationResult
from decbench.sampler import draw, greedy_tokens


@dataclass
class SpecTrOptions:
    draft: str = "smollm2-135m-student"  # model name/folder sharing the tokenizer, or self:...
    k: int = option(4, ge=1)  # i.i.d. draft sequences per step
    depth: int = option(3, ge=1)  # tokens per draft sequence


# -- K-SEQ ---------------------------------------------------------------------------------------
def kseq_gamma(p: torch.Tensor, q: torch.Tensor, k: int, steps: int = 40) -> float:
    """The smallest gamma in [1, k] with 1 - (1 - beta)^k <= gamma * beta (bisection). p, q:
    [vocab]."""

    def valid(gamma: float) -> bool:
        beta = torch.minimum(q, p / gamma).sum().item()
        return 1.0 - (1.0 - beta) ** k <= gamma * beta + 1e-12

    if k <= 1 or valid(1.0):
        return 1.0
    lo, hi = 1.0, float(k)
    for _ in range(steps):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if valid(mid) else (mid, hi)
    return hi


def kseq_plan(p: torch.Tensor, q: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """([vocab] acceptance probability of a draw of each token, [vocab] residual) for K-SEQ with
    k draws from q against p."""
    gamma = kseq_gamma(p, q, k)
    overlap = torch.minimum(q, p / gamma)  # [vocab]
    beta = overlap.sum()
    accept = torch.where(q > 0, (p / (gamma * q)).clamp(max=1.0), torch.zeros_like(p))
    if beta <= 0:
        return accept, p
    residual = (p - overlap * (1 - (1 - beta) ** k) / beta).clamp_min(0.0)
    total = residual.sum()
    return accept, (residual / total if total > 0 else p)


def kseq_select(
    p: torch.Tensor,  # [vocab] target distribution
    q: torch.Tensor,  # [vocab] draft distribution the draws came from
    tokens: list[int],  # [k] the draws, in draw order (repeats allowed)
    generator: torch.Generator | None,
) -> tuple[int | None, torch.Tensor]:
    """Try the draws in order; returns (index of the accepted draw or None, residual)."""
    accept, residual = kseq_plan(p, q, len(tokens))
    for i, token in enumerate(tokens):
        if torch.rand((), generator=generator).item() < accept[token].item():
            return i, residual
    return None, residual


def spectr_rule(source: SpecTrProposer, select=kseq_select) -> tree.TreeRule:
    """The tree rule for `source`'s latest draft: K-SEQ at each level of the accepted path."""

    def accept(
        draft: Draft, target_probs: tree.TargetProbs, generator: torch.Generator | None
    ) -> tree.TreeVerdict:
        drafted = source.last
        if drafted is None or drafted.draft is not draft:
            raise RuntimeError("spectr: the verified draft is not the proposer's latest")
        path: list[int] = []
        here = tree.ROOT
        while True:
            p = target_probs(here + 1)
            tries = drafted.tries.get(here, [])
            if not tries:
                return tree.TreeVerdict(path, int(draw(p, generator)), False)
            q = drafted.q[here].to(p.device)
            chosen, residual = select(p, q, [draft.tokens[c] for c in tries], generator)
            if chosen is None:
                return tree.TreeVerdict(path, int(draw(residual, generator)), True)
            here = tries[chosen]
            path.append(here)

    return accept


# -- proposer ------------------------------------------------------------------------------------
class SpecTrProposer:
    def __init__(self, draft: ModelRunner, options: SpecTrOptions) -> None:
        self.drafter = TreeDrafter(draft)
        self.options = options
        self.last: DraftTree | None = None

    def propose(self, ctx: ProposerContext) -> Draft:
        depth = min(self.options.depth, ctx.max_tokens)
        if depth <= 0:
            self.last = None
            return Draft([])
        sampling = ctx.sampling
        k = 1 if sampling.greedy else self.options.k  # greedy draws are all the same chain
        builder = tree.TreeBuilder()
        logits = {tree.ROOT: self.drafter.root_logits(ctx.tokens)}  # node -> [vocab]
        q: dict[int, torch.Tensor] = {}
        tries: dict[int, list[int]] = defaultdict(list)
        heads = [tree.ROOT] * k  # the node each sequence has reached
        for level in range(depth):
            for i, here in enumerate(heads):
                context = self._context(ctx, builder, here)
                if sampling.greedy:
                    token = greedy_tokens(logits[here][None], sampling, [context])[0]
                else:
                    if here not in q:
                        q[here] = draft_probs(logits[here][None], sampling, [context])[0]
                    token = int(draw(q[here], ctx.generator))
                heads[i] = builder.child(here, token, "spectr")
                tries[here].append(heads[i])
            if level < depth - 1:
                new = sorted(set(heads))
                rows = self.drafter.node_logits(builder.tokens, builder.parents, new)
                logits.update(zip(new, rows, strict=True))
        draft = builder.draft()
        self.last = DraftTree(draft, q, dict(tries))
        return draft

    @staticmethod
    def _context(ctx: ProposerContext, builder: tree.TreeBuilder, node: int) -> list[int]:
        if ctx.sampling.repetition_penalty == 1.0:
            return []
        if node == tree.ROOT:
            return list(ctx.tokens)
        return node_contexts(ctx.tokens, builder.tokens, builder.parents)[node]

    def observe(self, feedback: Feedback) -> None:
        pass


@register_decoder
class SpecTr(Decoder):
    spec = MethodSpec(
        name="spectr",
        summary="k i.i.d. draft sequences verified as one tree with SpecTr's K-SEQ selection",
        paper="Sun et al., SpecTr: Fast Speculative Decoding via Optimal Transport (2023)",
        lossless=True,
        lossless_note="K-SEQ keeps the target's distribution; exact match under greedy",
        needs_draft=True,
        emits_draft_probs=True,
        supports_tree=True,
        drafts=True,
        constraints=True,
    )
    Options = SpecTrOptions

    def __init__(self, target: ModelRunner, options: SpecTrOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.draft = load_draft(options.draft, target, ctx)

    def generate(self, request: Request) -> GenerationResult:
        proposer = SpecTrProposer(self.draft, self.options)
        return run_speculative(
            self.spec.name,
            self.options,
            self.target,
            proposer,
            request,
            tree_rule=spectr_rule(proposer),
        )

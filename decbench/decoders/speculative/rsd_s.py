"""Recursive Speculative Decoding with stochastic beam search (RSD-S; Jeon et al., "Recursive
Speculative Decoding: Accelerating LLM Inference via Sampling Without Replacement", 2024).

The draft tree is grown by stochastic beam search (Kool et al., "Stochastic Beams and Where to
Find Them: The Gumbel-Top-k Trick for Sampling Sequences Without Replacement", 2019): every
partial sequence carries its cumulative draft log-probability phi and a perturbed score G. A
child's perturbed score is a Gumbel at phi_child conditioned on the maximum over its siblings
being the parent's G (the truncation trick), so G is consistent down the tree and the `beam`
children of largest G at each depth are a draw of `beam` sequences without replacement from the
draft's sequence law. Every depth's beam stays in the tree (`beam` nodes per level, `depth`
levels), and the tree is verified by RSD-C's recursive rejection sampling (rsd.py), each node's
children tried in decreasing G.

Why that verification stays exact: among one parent's children, the order by G is a draw
without replacement from q at the parent, and given the earlier children, the identity of the
next child is independent of its score (the max and argmax of Gumbels truncated at a common
bound are independent). Whether that child survives the beam cut depends only on scores, so
the children in the tree are a prefix of a without-replacement draw whose length tells nothing
about the next child's token: exactly what recursive rejection sampling needs. `budget` caps
the nodes by keeping the highest-G nodes of the last level reached, a narrower beam there.
LOSSLESS: exact in distribution under sampling; at temperature 0 the tree is a deterministic
beam search of the draft and the engine's exact match keeps the output token-identical to greedy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree
from decbench.decoders.speculative.draft_model import load_draft
from decbench.decoders.speculative.multi_draft import DraftTree, TreeDrafter
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.decoders.speculative.rsd import node_distribution, run_rsd
from decbench.options import option
from decbench.results import GenerationResult


@dataclass
class RSDSOptions:
    draft: str = "smollm2-135m-student"  # model name/folder sharing the tokenizer, or self:...
    beam: int = option(3, ge=1)  # sequences kept at each depth (nodes per tree level)
    depth: int = option(3, ge=1)  # tree levels (draft tokens per path)
    # most tree nodes (target tokens per step besides the pending one); 0 = all
    budget: int = option(0, ge=0)


# -- stochastic beam search ----------------------------------------------------------------------
@dataclass
class Beam:
    node: int  # tree node ending this partial sequence (tree.ROOT: the empty sequence)
    score: float  # phi: cumulative draft log-probability of the sequence
    perturbed: float  # G: its perturbed score (phi plus consistent Gumbel noise)


def truncated_gumbels(
    bound: float,
    perturbed: torch.Tensor,  # [vocab] phi_child + independent Gumbel(0) noise
) -> torch.Tensor:
    """[vocab] the same Gumbels conditioned on their maximum being `bound` (Kool et al. 2019;
    the numerically stable form of their appendix): -log(e^-bound - e^-Z + e^-g)."""
    top = perturbed.max()
    log1mexp = torch.log1p(-torch.exp(perturbed - top))  # log(1 - e^(g - Z)), -inf at the max
    gap = bound - perturbed + log1mexp
    return bound - gap.clamp_min(0.0) - torch.log1p(torch.exp(-gap.abs()))


def beam_step(
    beams: list[Beam],
    log_q: torch.Tensor,  # [len(beams), vocab] the draft's log q after each beam's sequence
    width: int,
    generator: torch.Generator | None,
    truncate=truncated_gumbels,
) -> list[tuple[int, int, Beam]]:
    """The `width` children of all beams with the largest perturbed score, largest first, as
    (beam index, token, child beam with node unset). Without a generator there is no noise: a
    plain beam search by cumulative log-probability. Never a child of log q = -inf."""
    log_q = log_q.double().cpu()  # the generator and the beam scores live on the CPU
    scores = log_q + torch.tensor([b.score for b in beams], dtype=torch.float64)[:, None]
    perturbed = scores
    if generator is not None:
        uniform = torch.rand(scores.shape, generator=generator, dtype=torch.float64)
        noisy = scores - (-uniform.clamp(1e-300, 1.0).log()).log()
        perturbed = torch.stack(
            [truncate(b.perturbed, row) for b, row in zip(beams, noisy, strict=True)]
        )
    perturbed = perturbed.masked_fill(~torch.isfinite(scores), float("-inf"))
    width = min(width, int(torch.isfinite(perturbed).sum().item()))
    best = torch.topk(perturbed.flatten(), width).indices.tolist()
    vocab, scores, perturbed = log_q.shape[1], scores.flatten(), perturbed.flatten()
    return [
        (i // vocab, i % vocab, Beam(tree.ROOT, scores[i].item(), perturbed[i].item()))
        for i in best
    ]


# -- proposer ------------------------------------------------------------------------------------
class RSDSProposer:
    def __init__(self, draft: ModelRunner, options: RSDSOptions) -> None:
        self.drafter = TreeDrafter(draft)
        self.options = options
        self.last: DraftTree | None = None

    def propose(self, ctx: ProposerContext) -> Draft:
        depth = min(self.options.depth, max(ctx.max_tokens, 0))
        budget = self.options.budget or 1 << 30
        builder = tree.TreeBuilder()
        q: dict[int, torch.Tensor] = {}
        tries: dict[int, list[int]] = {}
        beams = [Beam(tree.ROOT, 0.0, 0.0)]
        logits = self.drafter.root_logits(ctx.tokens)[None] if depth else None
        sampled = not ctx.sampling.greedy
        for level in range(depth):
            rows = []
            for beam, row in zip(beams, logits, strict=True):
                log_q, q_here = node_distribution(ctx, builder, beam.node, row)
                if q_here is not None:
                    q[beam.node] = q_here
                rows.append(log_q)
            width = min(self.options.beam, budget - len(builder))
            chosen = beam_step(beams, torch.stack(rows), width, ctx.generator if sampled else None)
            for parent, token, child in chosen:  # largest G first: each parent's draw order
                child.node = builder.child(beams[parent].node, token, "rsd-s")
                tries.setdefault(beams[parent].node, []).append(child.node)
            beams = [child for _, _, child in chosen]
            if not beams or level == depth - 1 or len(builder) >= budget:
                break
            nodes = [beam.node for beam in beams]
            logits = self.drafter.node_logits(builder.tokens, builder.parents, nodes)
        draft = builder.draft()
        self.last = DraftTree(draft, q, tries)
        return draft

    def observe(self, feedback: Feedback) -> None:
        pass


@register_decoder
class RecursiveSpeculativeBeam(Decoder):
    spec = MethodSpec(
        name="rsd-s",
        summary="a draft tree grown by stochastic beam search, verified by recursive rejection sampling",
        paper=(
            "Jeon et al., Recursive Speculative Decoding: Accelerating LLM Inference via "
            "Sampling Without Replacement (2024); Kool et al., Stochastic Beams and Where to "
            "Find Them (2019)"
        ),
        lossless=True,
        lossless_note="recursive rejection sampling keeps the target's distribution; exact match under greedy",
        needs_draft=True,
        emits_draft_probs=True,
        supports_tree=True,
        drafts=True,
        constraints=True,
    )
    Options = RSDSOptions

    def __init__(self, target: ModelRunner, options: RSDSOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.draft = load_draft(options.draft, target, ctx)

    def generate(self, request: Request) -> GenerationResult:
        return run_rsd(self, RSDSProposer(self.draft, self.options), request)

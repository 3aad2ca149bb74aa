"""SAM decoding's hybrid (Hu et al., "SAM Decoding: Speculative Decoding via Suffix Automaton",
2024; with EAGLE-2, Li et al. 2024): retrieval when the suffix match is long, the EAGLE draft
layer otherwise.

Each step the suffix automata (sam.py) report the longest suffix match. At least `min_match`
tokens long, its continuation is drafted as a chain of up to `k` tokens (text that repeats
tends to repeat at length, beyond what a one-layer draft guesses); shorter, the EAGLE-2 tree
(eagle2.py) is drafted instead. The EAGLE draft observes every verify forward either way, so
its cache follows the committed text whichever source drafted. `top_k = 1` makes the model
side EAGLE's chain (a one-node-wide tree of `depth` tokens).

Lossless: exact match under greedy; under sampling, chains are one-hot drafts for rejection
sampling and trees use the multi-candidate rule for one-hot drafts (both deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative import tree_size
from decbench.decoders.speculative.eagle2 import (
    Eagle2Options,
    Eagle2Proposer,
    largest_tree,
    load_chain_parts,
)
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.decoders.speculative.sam import load_datastore
from decbench.decoders.speculative.suffix_automaton import StaticAutomaton, StreamMatcher
from decbench.drafts.eagle import EagleChain
from decbench.options import option


@dataclass
class SamEagleOptions:
    draft: str = "smollm2-135m-eagle"  # EAGLE draft: shipped alias or a `distill` folder
    k: int = option(6, ge=1)  # retrieval draft tokens per step (at most)
    min_match: int = option(4, ge=1)  # retrieve when the suffix match is at least this long
    datastore: str = ""  # corpus text file (built once, cached) or a built .npz; "" = none
    top_k: int = option(4, ge=1)  # EAGLE-2: children per expanded node, nodes expanded per depth
    depth: int = option(4, ge=1)  # EAGLE-2: tree depth
    # EAGLE-2: tree nodes verified, or "auto" (from the verify cost)
    nodes: int | str = option(8, ge=1, choices=("auto",))


class SamEagleProposer:
    wants_hidden = True  # for the EAGLE draft

    def __init__(
        self, matcher: StreamMatcher, model: Eagle2Proposer, k: int, min_match: int
    ) -> None:
        self.matcher = matcher
        self.model = model
        self.k, self.min_match = k, min_match
        self.retrieved = 0  # steps drafted by retrieval
        self.modelled = 0  # steps drafted by the EAGLE draft

    def propose(self, ctx: ProposerContext) -> Draft:
        self.matcher.update(ctx.tokens)
        match = self.matcher.best()
        if match.length >= self.min_match:
            tokens = match.continuation(min(self.k, ctx.max_tokens))
            if tokens:
                self.retrieved += 1
                source = "sam-static" if match is self.matcher.static else "sam"
                return Draft(tokens, None, None, [source] * len(tokens))
        self.modelled += 1
        return self.model.propose(ctx)

    def observe(self, feedback: Feedback) -> None:
        self.model.observe(feedback)


@register_decoder
class SamEagle(PlannedDecoder):
    spec = MethodSpec(
        name="sam-eagle",
        summary="suffix-automaton retrieval when the match is long, EAGLE-2 trees otherwise",
        paper="Hu et al., SAM Decoding: Speculative Decoding via Suffix Automaton (2024); Li et "
        "al., EAGLE-2: Faster Inference of Language Models with Dynamic Draft Trees (2024)",
        lossless=True,
        lossless_note="exact match under greedy; one-hot rejection sampling (chains) and "
        "multi-candidate rejection sampling (trees) under sampling",
        supports_tree=True,
        drafts=True,
        constraints=True,
    )
    Options = SamEagleOptions

    def __init__(self, target: ModelRunner, options: SamEagleOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.static: StaticAutomaton | None = load_datastore(options.datastore, target)
        self.draft, self.embed, self.rows, self.record = load_chain_parts(target, options.draft)
        self.costs = tree_size.VerifyCosts(target) if options.nodes == "auto" else None

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        o = self.options
        tree_options = Eagle2Options(o.draft, o.top_k, o.depth, o.nodes)
        sizer = tree_size.TreeSizer(o.nodes, self.costs, request.prompt_ids)
        sizer.start(largest_tree(o.top_k, o.depth))
        model = Eagle2Proposer(EagleChain(self.draft, self.embed, self.rows), tree_options, sizer)
        proposer = SamEagleProposer(StreamMatcher(self.static), model, o.k, o.min_match)

        def report() -> dict:
            return {
                "retrieval_steps": proposer.retrieved,
                "model_steps": proposer.modelled,
                "datastore_tokens": None if self.static is None else len(self.static.text),
                "tree_size": sizer.report(),
            }

        return RowPlan(proposer, report=report)

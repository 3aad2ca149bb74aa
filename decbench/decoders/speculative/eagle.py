"""EAGLE (Li et al., "EAGLE: Speculative Sampling Requires Rethinking Feature Uncertainty", ICML
2024): a one-layer draft that extrapolates the target's last hidden state (decbench.drafts.eagle).

The target's verify forward already yields its features at the accepted positions; the draft
appends them to its own small cache, paired with the token each one chose, and chains k guesses
from there, feeding its predicted features back in. Each guess costs one decoder layer and the
LM head rows of the draft's vocabulary, about 1/30 of a target step for the default model.

The paper drafts a static tree (EAGLE-2: a dynamic one) for GPU verification of dozens of
tokens; a CPU verify of more than ~4 tokens costs twice a decode step (README "Decode
kernels"), so this drafts a chain of `k` tokens.

Lossless: greedy accepts by exact match; under sampling the greedy guesses are a one-hot draft
(q(x) = 1) for rejection sampling, which preserves the target's distribution.

The draft is trained by `decbench distill --kind eagle`; the default model ships with one
(alias `smollm2-135m-eagle`).
"""

from __future__ import annotations

from dataclasses import dataclass

from decbench.backends import kernels
from decbench.backends.capabilities import HIDDEN_STATES, TORCH_MODEL
from decbench.backends.runner import ModelRunner
from decbench.decoders.base import MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext, last_row
from decbench.drafts.eagle import EagleChain, EagleDraft, load_eagle
from decbench.drafts.stored import check_fits
from decbench.options import option


@dataclass
class EagleOptions:
    draft: str = "smollm2-135m-eagle"  # shipped alias or a folder from `decbench distill`
    # chain length (4 verified tokens: longer verify forwards cost much more on CPU)
    k: int = option(3, ge=1)


class EagleProposer:
    wants_hidden = True  # the engine passes the target's last hidden states in every feedback

    def __init__(self, chain: EagleChain, k: int) -> None:
        self.chain = chain
        self.k = k

    def observe(self, feedback: Feedback) -> None:
        """Append a draft row (f_i, x_{i+1}) for every position whose feature the target has now
        computed: the accepted rows of this forward (all prompt rows after the prefill)."""
        if feedback.hidden is None:
            return
        rows = feedback.hidden[: last_row(feedback) + 1]  # [accepted + 1, hidden] (chains only)
        new = len(feedback.tokens) - 1 - self.chain.length  # rows the chain lacks
        rows = rows[len(rows) - new :] if new < len(rows) else rows
        self.chain.extend(rows, feedback.tokens[len(feedback.tokens) - len(rows) :])

    def propose(self, ctx: ProposerContext) -> Draft:
        k = min(self.k, ctx.max_tokens)
        if self.chain.last is None or k < 1 or self.chain.length != len(ctx.tokens) - 1:
            return Draft([])
        return Draft(self.chain.chain(k))


@register_decoder
class Eagle(PlannedDecoder):
    spec = MethodSpec(
        requires=frozenset({HIDDEN_STATES, TORCH_MODEL}),
        name="eagle",
        summary="a one-layer draft extrapolates the target's features and chains guesses",
        paper="Li et al., EAGLE: Speculative Sampling Requires Rethinking Feature Uncertainty "
        "(ICML 2024)",
        lossless=True,
        lossless_note="exact match under greedy; rejection sampling of a one-hot draft under "
        "sampling",
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = EagleOptions

    def __init__(self, target: ModelRunner, options: EagleOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        from decbench.models import artifact_path

        draft, record = load_eagle(artifact_path(options.draft), target.model.dtype)
        embed = target.model.get_input_embeddings().weight.detach()  # [vocab, hidden]
        weight = target.model.get_output_embeddings().weight.detach()
        hidden, subset = draft.shape.hidden, draft.subset
        check_fits("method.draft", options.draft, hidden, subset, record, target.name, weight)
        self.draft: EagleDraft = draft.to(target.device)
        if kernels.in_use(target.model) == "decbench":  # the draft decodes one row at a time too
            kernels.install(self.draft)
        self.embed = embed
        self.rows = draft.rows(weight).to(target.device)
        self.record = record

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        """Each row chains on its own draft cache (EagleChain); the drafts run one row at a
        time."""
        proposer = EagleProposer(EagleChain(self.draft, self.embed, self.rows), self.options.k)
        return RowPlan(proposer, report=self._report)

    def _report(self) -> dict:
        return {
            "vocab_subset": None if self.draft.subset is None else len(self.draft.subset),
            "draft_target": self.record.get("target"),
        }

"""Greedy decoding: the argmax token at every step. The reference every lossless method is
checked against; token-identical to transformers' `generate(do_sample=False)`."""

from __future__ import annotations

from decbench.decoders.autoregressive import decode_autoregressive
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.batch_engine import NoDraft
from decbench.decoders.speculative.engine import RowPlan
from decbench.results import GenerationResult


@register_decoder
class Greedy(Decoder):
    spec = MethodSpec(
        name="greedy",
        summary="argmax at every step, one target forward per token (the baseline)",
        paper="",
        lossless=True,
        lossless_note="is the reference: token-identical to HF generate(do_sample=False)",
        samples=False,
        constraints=True,
        batches=True,
    )

    def generate(self, request: Request) -> GenerationResult:
        return decode_autoregressive(self.spec.name, self.options, self.target, request)

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        """In a batch: the speculative loop with an empty draft, one token per forward."""
        return RowPlan(NoDraft())

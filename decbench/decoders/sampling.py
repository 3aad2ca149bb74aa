"""Ancestral sampling with temperature, top-k, top-p (Holtzman et al., "The Curious Case of
Neural Text Degeneration", 2020), min-p (Nguyen et al., "Turning Up the Heat: Min-p Sampling",
2024), typical-p (Meister et al., "Locally Typical Sampling", 2023) and a CTRL repetition penalty
(Keskar et al. 2019). The sampling reference; seeded runs are reproducible."""

from __future__ import annotations

from decbench.decoders.autoregressive import decode_autoregressive
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.batch_engine import NoDraft
from decbench.decoders.speculative.engine import RowPlan
from decbench.results import GenerationResult


@register_decoder
class Sample(Decoder):
    spec = MethodSpec(
        name="sample",
        summary="ancestral sampling with the [sampling] settings, one forward per token",
        paper="Holtzman et al., The Curious Case of Neural Text Degeneration (2020)",
        lossless=True,
        lossless_note="is the sampling reference: draws from the warped target distribution",
        argmax=False,
        constraints=True,
        batches=True,
    )

    def generate(self, request: Request) -> GenerationResult:
        return decode_autoregressive(self.spec.name, self.options, self.target, request)

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        """In a batch: the speculative loop with an empty draft, one draw per forward."""
        return RowPlan(NoDraft())

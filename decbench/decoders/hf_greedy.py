"""Reference: transformers' own greedy `generate(do_sample=False)` (Wolf et al., "Transformers:
State-of-the-Art Natural Language Processing", 2020).

For comparison only: `decbench compare --method greedy --method hf-greedy` measures decbench's
loop against transformers' on identical prompts and stop rules. Lossless: it is greedy decoding,
token-identical to decbench's `greedy` (tested)."""

from __future__ import annotations

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.hf_common import run_reference
from decbench.decoders.registry import register_decoder
from decbench.results import GenerationResult


@register_decoder
class HFGreedy(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="hf-greedy",
        summary="reference: transformers' generate(do_sample=False), to measure greedy against",
        paper="Wolf et al., Transformers: State-of-the-Art Natural Language Processing (2020)",
        lossless=True,
        lossless_note="is greedy decoding: token-identical to decbench's greedy (tested)",
        samples=False,
        reference=True,
    )

    def generate(self, request: Request) -> GenerationResult:
        return run_reference(self.spec.name, self.options, self.target, request)

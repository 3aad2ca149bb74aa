"""Reference: transformers' own ancestral sampling, `generate(do_sample=True)` with the profile's
temperature, top-k, top-p, min-p, typical-p and repetition penalty (Holtzman et al., "The
Curious Case of Neural Text Degeneration", 2020; the implementation of Wolf et al. 2020).

For comparison only. Lossless: it draws from the warped target distribution, as decbench's
`sample` does, but from torch's global RNG (seeded with sampling.seed before each request), so
the two are equal in distribution, not token for token."""

from __future__ import annotations

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.hf_common import run_reference
from decbench.decoders.registry import register_decoder
from decbench.results import GenerationResult


@register_decoder
class HFSample(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="hf-sample",
        summary="reference: transformers' generate(do_sample=True) with the [sampling] settings",
        paper="Holtzman et al., The Curious Case of Neural Text Degeneration (2020)",
        lossless=True,
        lossless_note="is the sampling reference: draws from the warped target distribution "
        "(its RNG stream differs from decbench's sample)",
        argmax=False,
        reference=True,
    )

    def generate(self, request: Request) -> GenerationResult:
        return run_reference(self.spec.name, self.options, self.target, request)

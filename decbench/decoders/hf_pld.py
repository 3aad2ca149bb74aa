"""Reference: transformers' prompt lookup decoding, `generate(prompt_lookup_num_tokens=k)`
(Saxena, "Prompt Lookup Decoding", 2023, as implemented in transformers).

For comparison with decbench's `pld` on identical prompts. transformers matches the last
`max_ngram` down to 1 tokens and proposes up to `k` tokens that followed the match. Lossless:
under greedy the target's argmax decides every token (token-identical to greedy, tested); under
sampling transformers samples each verified position from the target and keeps draft tokens
only while they equal those samples."""

from __future__ import annotations

from dataclasses import dataclass

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.hf_common import run_reference
from decbench.decoders.registry import register_decoder
from decbench.options import option
from decbench.results import GenerationResult


@dataclass
class HFPromptLookupOptions:
    k: int = option(10, ge=1)  # prompt_lookup_num_tokens: draft tokens per step (at most)
    max_ngram: int = option(3, ge=1)  # max_matching_ngram_size: longest suffix to match


@register_decoder
class HFPromptLookup(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="hf-pld",
        summary="reference: transformers' prompt lookup decoding (prompt_lookup_num_tokens)",
        paper="Saxena, Prompt Lookup Decoding (2023), transformers' implementation",
        lossless=True,
        lossless_note="token-identical to greedy under greedy (tested); under sampling keeps "
        "drafts only where they equal the target's own samples (transformers' claim, not "
        "tested by decbench)",
        drafts=True,
        reference=True,
    )
    Options = HFPromptLookupOptions

    def generate(self, request: Request) -> GenerationResult:
        return run_reference(
            self.spec.name,
            self.options,
            self.target,
            request,
            decode_phase="verify",
            prompt_lookup_num_tokens=self.options.k,
            max_matching_ngram_size=self.options.max_ngram,
        )

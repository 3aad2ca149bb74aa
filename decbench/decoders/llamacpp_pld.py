"""Reference: llama-cpp-python's prompt lookup decoding, `Llama(draft_model=
LlamaPromptLookupDecoding(...))` (Saxena, "Prompt Lookup Decoding", 2023, as implemented in
llama-cpp-python).

For comparison with decbench's `pld` on backend llama.cpp. llama-cpp-python matches the last
`max_ngram` down to 1 tokens (the earliest match wins) and proposes up to `k` tokens that
followed it; its Llama keeps the logits of every evaluated token when it has a draft model.
Lossless: the greedy sampler decides every token; token-identical to greedy up to llama.cpp's
batch-size-dependent logits (tested)."""

from __future__ import annotations

from dataclasses import dataclass

from decbench.backends.capabilities import LLAMA_CPP
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.llamacpp_common import open_llama, run_llama_reference
from decbench.decoders.registry import register_decoder
from decbench.options import option
from decbench.results import GenerationResult


@dataclass
class LlamaCppPromptLookupOptions:
    k: int = option(10, ge=1)  # num_pred_tokens: draft tokens per step (at most)
    # max_ngram_size: longest suffix to match (llama-cpp-python's default)
    max_ngram: int = option(2, ge=1)


@register_decoder
class LlamaCppPromptLookup(Decoder):
    spec = MethodSpec(
        name="llamacpp-pld",
        summary="reference: llama-cpp-python's prompt lookup decoding, backend llama.cpp",
        paper="Saxena, Prompt Lookup Decoding (2023), llama-cpp-python's implementation",
        lossless=True,
        lossless_note="greedy sampler on every position: token-identical to greedy up to "
        "llama.cpp's batch-size-dependent logits (tested)",
        drafts=True,
        samples=False,
        reference=True,
        requires=frozenset({LLAMA_CPP}),
    )
    Options = LlamaCppPromptLookupOptions

    def __init__(self, target, options: LlamaCppPromptLookupOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        lookup = LlamaPromptLookupDecoding(
            max_ngram_size=options.max_ngram, num_pred_tokens=options.k
        )
        self.llama = open_llama(target, draft_model=lookup)

    def generate(self, request: Request) -> GenerationResult:
        return run_llama_reference(
            self.spec.name, self.options, self.target, self.llama, request, decode_phase="verify"
        )

"""Reference: llama.cpp's own greedy decoding, llama-cpp-python's `Llama.generate` with its greedy
sampler (Gerganov et al., llama.cpp, 2023; llama-cpp-python, Betlen, 2023).

For comparison only, on backend llama.cpp: `decbench compare --method llamacpp-greedy --method
greedy --set backend.name=llama.cpp` measures decbench's loop against llama-cpp-python's on the
same GGUF, prompts and stop rules. Lossless: it is greedy decoding; token-identical to decbench's
`greedy` on the same backend (tested)."""

from __future__ import annotations

from decbench.backends.capabilities import LLAMA_CPP
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.llamacpp_common import open_llama, run_llama_reference
from decbench.decoders.registry import register_decoder
from decbench.results import GenerationResult


@register_decoder
class LlamaCppGreedy(Decoder):
    spec = MethodSpec(
        name="llamacpp-greedy",
        summary="reference: llama.cpp's own greedy generate (llama-cpp-python), backend llama.cpp",
        paper="Gerganov et al., llama.cpp (2023); Betlen, llama-cpp-python (2023)",
        lossless=True,
        lossless_note="is greedy decoding: token-identical to decbench's greedy on llama.cpp "
        "(tested)",
        samples=False,
        reference=True,
        requires=frozenset({LLAMA_CPP}),
    )

    def __init__(self, target, options, ctx) -> None:
        super().__init__(target, options, ctx)
        self.llama = open_llama(target)

    def generate(self, request: Request) -> GenerationResult:
        return run_llama_reference(self.spec.name, self.options, self.target, self.llama, request)

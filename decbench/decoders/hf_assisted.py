"""Reference: transformers' assisted generation, `generate(assistant_model=draft)` (Leviathan et
al., "Fast Inference from Transformers via Speculative Decoding", 2023; Gante, "Assisted
Generation: a new direction toward low-latency text generation", 2023).

For comparison with decbench's `speculative` on the same draft: `draft` takes the same values
(a model sharing the target's tokenizer, or `self:layers=N`). K is transformers'
`num_assistant_tokens` with its `constant`, `heuristic` or `heuristic_transient` schedule, and
`confidence` its `assistant_confidence_threshold` (0 = off; transformers' own default is 0.4).
The assistant's generation settings are reset before every request, so requests do not
influence each other. Lossless: token-identical to greedy under greedy (tested); under sampling
transformers applies speculative sampling with the assistant's probabilities."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from decbench.backends.capabilities import TORCH_MODEL
from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.hf_common import run_reference
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.draft_model import load_draft
from decbench.options import option
from decbench.results import GenerationResult

SCHEDULES = ("constant", "heuristic", "heuristic_transient")


@dataclass
class HFAssistedOptions:
    draft: str = "self:layers=8"  # model name/folder, or self:layers=N
    k: int = option(4, ge=1)  # num_assistant_tokens (the starting value under a heuristic schedule)
    # constant | heuristic | heuristic_transient
    schedule: str = option("constant", choices=SCHEDULES)
    confidence: float = option(0.0, ge=0, lt=1)  # assistant_confidence_threshold; 0 = off


@register_decoder
class HFAssisted(Decoder):
    spec = MethodSpec(
        requires=frozenset({TORCH_MODEL}),
        name="hf-assisted",
        summary="reference: transformers' assisted generation with a draft (assistant_model)",
        paper="Leviathan et al., Fast Inference from Transformers via Speculative Decoding "
        "(2023), transformers' implementation",
        lossless=True,
        lossless_note="token-identical to greedy under greedy (tested); speculative sampling "
        "with the assistant's probabilities under sampling (transformers' claim, not tested "
        "by decbench)",
        needs_draft=True,
        emits_draft_probs=True,
        drafts=True,
        reference=True,
    )
    Options = HFAssistedOptions

    def __init__(self, target, options: HFAssistedOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.draft = load_draft(options.draft, target, ctx)

    def generate(self, request: Request) -> GenerationResult:
        self._reset_assistant()
        return run_reference(
            self.spec.name,
            self.options,
            self.target,
            request,
            decode_phase="verify",
            assistant=self.draft,
        )

    def _reset_assistant(self) -> None:
        """transformers reads K and its schedule from the assistant's own generation config and
        writes the adapted K back into it. A self-draft shares the target's config object, so
        give the draft a private copy, freshly set for each request."""
        config = copy.deepcopy(self.target.model.generation_config)
        config.num_assistant_tokens = self.options.k
        config.num_assistant_tokens_schedule = self.options.schedule
        config.assistant_confidence_threshold = self.options.confidence
        self.draft.model.generation_config = config

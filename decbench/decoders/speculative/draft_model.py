"""Draft-model speculative decoding (Leviathan et al., "Fast Inference from Transformers via
Speculative Decoding", 2023; Chen et al., "Accelerating Large Language Model Decoding with
Speculative Sampling", 2023).

A small draft model proposes k tokens autoregressively; the target verifies them in one forward.
K may adapt: `schedule = "heuristic"` grows K by 2 after a fully accepted draft and shrinks it by
1 otherwise (as transformers' assisted generation does), and `p_min` stops drafting when the
draft's top probability falls under it (llama.cpp `--draft-p-min`; the idea of SpecDec++ and
DEL). Lossless: exact match under greedy, rejection sampling with the draft's q under sampling.

`draft` is a model name or folder sharing the target's tokenizer, or `self:layers=N`: the
target's own first N layers plus its LM head, which needs no second model at all, or
`self:int8` / `self:int4`: a quantized copy of the target (decbench.quant), made in memory.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch

from decbench.backends.capabilities import BACKENDS, TORCH_MODEL
from decbench.backends.derive import truncated_runner
from decbench.backends.runner import ModelRunner, fork_runner
from decbench.decoders.base import DecoderContext, MethodSpec, Request
from decbench.decoders.registry import register_decoder
from decbench.decoders.speculative.engine import PlannedDecoder, RowPlan
from decbench.decoders.speculative.proposer import Draft, Feedback, ProposerContext
from decbench.errors import ConfigError
from decbench.options import option
from decbench.sampler import draw, greedy_tokens, target_distribution

SCHEDULES = ("constant", "heuristic")


@dataclass
class DraftModelOptions:
    draft: str = "self:layers=8"  # model name/folder, self:layers=N, self:int8 or self:int4
    k: int = 4  # draft tokens per step (the starting value under the heuristic schedule)
    schedule: str = option("constant", choices=SCHEDULES)  # constant | heuristic (adaptive K)
    k_min: int = option(1, ge=1)  # bounds for the adaptive schedule
    k_max: int = 12
    # stop drafting when the draft's top probability is below this; 0 = off
    p_min: float = option(0.0, ge=0, lt=1)

    def validate(self) -> None:
        if not self.k_min <= self.k <= self.k_max:
            raise ConfigError(
                f"method.k needs 1 <= k_min <= k <= k_max, got "
                f"{self.k_min} <= {self.k} <= {self.k_max}"
            )


class DraftModelProposer:
    def __init__(self, draft: ModelRunner, options: DraftModelOptions) -> None:
        self.draft = draft
        self.options = options
        self.k = options.k
        self.cached: list[int] = []  # tokens in the draft's KV cache
        draft.reset()

    def propose(self, ctx: ProposerContext) -> Draft:
        k = min(self.k, ctx.max_tokens)
        if k <= 0:
            return Draft([])
        logits = self._catch_up(ctx.tokens)
        sampling = ctx.sampling
        drafted: list[int] = []
        rows: list[torch.Tensor] = []
        for i in range(k):
            contexts = [ctx.tokens + drafted] if sampling.repetition_penalty != 1.0 else []
            if sampling.greedy:
                token = greedy_tokens(logits, sampling, contexts)[0]
                confidence = logits.softmax(-1).max().item() if self.options.p_min else 1.0
            else:
                q = target_distribution(logits, sampling, contexts)[0]
                token = int(draw(q, ctx.generator).item())
                confidence = q.max().item()
            if i > 0 and confidence < self.options.p_min:
                break
            drafted.append(token)
            if not sampling.greedy:
                rows.append(q)
            if i < k - 1:
                logits = self.draft.forward(torch.tensor([[token]]), all_logits=False).logits[0]
                self.cached.append(token)
        return Draft(drafted, torch.stack(rows) if rows else None)

    def _catch_up(self, tokens: list[int]) -> torch.Tensor:
        """Roll the draft cache back to its common prefix with `tokens`, feed the rest, and return
        the draft's logits for the next position ([1, vocab])."""
        keep = 0
        limit = min(len(self.cached), len(tokens) - 1)
        while keep < limit and self.cached[keep] == tokens[keep]:
            keep += 1
        self.draft.crop(keep)
        feed = tokens[keep:]
        self.cached = self.cached[:keep] + feed
        return self.draft.forward(torch.tensor([feed]), all_logits=False).logits[0]

    def observe(self, feedback: Feedback) -> None:
        if self.options.schedule != "heuristic" or feedback.drafted == 0:
            return
        if feedback.accepted == feedback.drafted:
            self.k = min(self.k + 2, self.options.k_max)
        else:
            self.k = max(self.k - 1, self.options.k_min)


def check_draft_name(spec: str) -> None:
    """Refuse a method.draft that can name no model, before anything loads: an empty name, or a
    `self:` form that is not one (run.check_profile asks this of every needs_draft method)."""
    if not spec.strip():
        raise ConfigError(
            "method.draft is empty; give a draft model name or folder, self:layers=N, "
            f"{' or '.join(SELF_QUANTIZED)}"
        )
    self_form = spec.startswith("self:") and spec not in SELF_QUANTIZED
    if self_form and not re.fullmatch(r"self:layers=\d+", spec):
        raise ConfigError(
            f"method.draft: unknown self-draft '{spec}' "
            f"(expected self:layers=N, {', '.join(SELF_QUANTIZED)})"
        )


def load_draft(spec: str, target: ModelRunner, ctx: DecoderContext) -> ModelRunner:
    """`self:layers=N` derives a draft from the target; anything else loads a model by name."""
    if spec.startswith("self:") and TORCH_MODEL not in BACKENDS[target.backend]:
        raise ConfigError(
            f"method.draft '{spec}' is made from the target's torch model, which backend "
            f"'{target.backend}' lacks; give a draft model by name (on llama.cpp: a .gguf path, "
            f"or NAME@q4_0 for a copy quantized by llama.cpp)"
        )
    check_draft_name(spec)
    if spec in SELF_QUANTIZED:
        return quantized_self_draft(target, SELF_QUANTIZED[spec])
    if spec.startswith("self:"):
        return truncated_runner(target, int(spec.removeprefix("self:layers=")))
    draft = ctx.load_model(spec)
    check_same_vocabulary(target, draft)
    return draft


# quantized copies of the target, made in memory (decbench.quant); lossless because the target
# verifies every token. self:int8 is torch's int8-dynamic on CPU, quanto int8 weights elsewhere.
SELF_QUANTIZED = {"self:int8": "int8", "self:int4": "int4-weight"}


def quantized_self_draft(target: ModelRunner, scheme_name: str) -> ModelRunner:
    from decbench.quant.schemes import get_scheme, quantize_in_memory

    if scheme_name == "int8":
        scheme_name = "int8-dynamic" if target.device.type == "cpu" else "int8-weight"
    model = quantize_in_memory(copy.deepcopy(target.model), get_scheme(scheme_name))
    return ModelRunner(model, target.tokenizer, name=f"{target.name}[{scheme_name}]")


def check_same_vocabulary(target: ModelRunner, draft: ModelRunner) -> None:
    """Speculation compares token ids, so the draft must share the target's tokenizer."""
    if target.tokenizer is not None and draft.tokenizer is not None:
        same = target.tokenizer.get_vocab() == draft.tokenizer.get_vocab()
    else:
        same = target.vocab_size == draft.vocab_size
    if not same:
        raise ConfigError(
            f"method.draft: draft '{draft.name}' does not share the target's tokenizer "
            f"('{target.name}'); speculative decoding needs identical vocabularies"
        )


@register_decoder
class SpeculativeDecoding(PlannedDecoder):
    spec = MethodSpec(
        name="speculative",
        summary="a draft model proposes k tokens, the target verifies them in one forward",
        paper="Leviathan et al., Fast Inference from Transformers via Speculative Decoding (2023)",
        lossless=True,
        lossless_note="exact match under greedy; rejection sampling with q under sampling",
        needs_draft=True,
        emits_draft_probs=True,
        drafts=True,
        constraints=True,
        batches=True,
    )
    Options = DraftModelOptions

    def __init__(self, target: ModelRunner, options: DraftModelOptions, ctx) -> None:
        super().__init__(target, options, ctx)
        self.draft = load_draft(options.draft, target, ctx)
        self.row_drafts: list[ModelRunner] = [self.draft]  # one draft cache per batch row

    def plan(self, request: Request, row: int = 0) -> RowPlan:
        """Each batch row drafts on its own cache over the same draft weights (fork_runner);
        the drafts run one row at a time."""
        while len(self.row_drafts) <= row:
            self.row_drafts.append(fork_runner(self.draft))
        return RowPlan(DraftModelProposer(self.row_drafts[row], self.options))

"""The conformance harness every registered lossless method runs through (test_conformance.py).

A method is covered by being registered: `build` makes it with its default options on any tiny
runner. A method that needs trained parts (a draft model, Medusa heads, an EAGLE layer) names
them once in PARTS, made for the runner at hand, so the same checks run on every runner family.
Per-method test files call `assert_equals_greedy` for their option variants instead of copying
the loop."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, DecoderContext
from decbench.decoders.registry import all_decoders
from decbench.results import GenerationResult
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    repetitive_prompts,
    runner_for,
    tiny_llama,
)

PROMPTS = repetitive_prompts(3, seed=21)
LENGTHS = (1, 7, 24)


def lossless_methods() -> list[type[Decoder]]:
    """Every registered method that claims to be lossless and runs on a transformers runner,
    except the reference rows (they wrap an engine's own generate and are tested against it)."""
    return [
        cls
        for cls in all_decoders()
        if cls.spec.lossless
        and not cls.spec.reference
        and not cls.spec.diffusion
        and "a llama.cpp context" not in cls.spec.requires
        and cls.spec.argmax  # not `sample`: lossless under sampling, refuses temperature 0
    ]


def draft_ctx(runner: ModelRunner, _folder: Path) -> tuple[dict, DecoderContext]:
    """A second tiny model with the target's vocabulary, served for any draft name (the
    default self:layers=8 of `speculative` is deeper than a tiny target)."""
    draft = runner_for(tiny_llama(seed=7, vocab=runner.vocab_size))
    return {"draft": "tiny-draft"}, DecoderContext(load_model=lambda _name: draft)


def eagle_parts(runner: ModelRunner, folder: Path) -> tuple[dict, DecoderContext]:
    from tests.test_eagle import eagle_folder, shape_of

    return {"draft": str(eagle_folder(folder, shape_of(runner)))}, no_models_ctx()


def medusa_parts(runner: ModelRunner, folder: Path) -> tuple[dict, DecoderContext]:
    from tests.test_medusa import heads_folder

    hidden = runner.model.config.hidden_size
    return {"heads": str(heads_folder(folder, hidden))}, no_models_ctx()


# method -> (runner, scratch folder) -> (option overrides, decoder context)
PARTS: dict[str, Callable[[ModelRunner, Path], tuple[dict, DecoderContext]]] = {
    "speculative": draft_ctx,
    "spectr": draft_ctx,
    "rsd": draft_ctx,
    "rsd-s": draft_ctx,
    "medusa": medusa_parts,
    "eagle": eagle_parts,
    "eagle2": eagle_parts,
    "sam-eagle": eagle_parts,
}


def build(cls: type[Decoder], runner: ModelRunner, folder: Path, **options) -> Decoder:
    overrides, ctx = PARTS.get(cls.spec.name, lambda _r, _f: ({}, no_models_ctx()))(runner, folder)
    return cls(runner, dataclasses.replace(cls.Options(), **overrides, **options), ctx)


def assert_equals_greedy(
    decoder: Decoder,
    runner: ModelRunner,
    prompts: list[list[int]] = PROMPTS,
    lengths: tuple[int, ...] = LENGTHS,
) -> list[GenerationResult]:
    """The decoder's tokens equal greedy's for every prompt and length (greedy's output for n
    tokens is the first n of its longest run), and its step trace accounts for every token.
    Returns the results for method-specific checks."""
    results = []
    for prompt in prompts:
        longest = greedy_ids(runner, prompt, max(lengths))
        for n in lengths:
            result = decoder.generate(make_request(prompt, n))
            assert result.token_ids == longest[:n], (decoder.spec.name, prompt, n)
            assert sum(s.emitted for s in result.steps) == len(result.token_ids)
            results.append(result)
    return results


# -- sampling: the method's tokens follow the target's distribution ------------------------------
SAMPLING_OPTIONS = {"recycling": {"k": 4}}  # its default k = 8 exceeds the 5-token vocabulary
SAMPLED = 2000  # seeded generations per method


def sampling_methods() -> list[type[Decoder]]:
    """The lossless methods that sample (every one but greedy-only methods), and `sample`."""
    samplers = [
        c for c in all_decoders() if not c.spec.argmax and c.spec.lossless and not c.spec.reference
    ]
    return [cls for cls in lossless_methods() if cls.spec.samples] + samplers


def peaked_target(seed: int = 0, layers: int = 2) -> ModelRunner:
    """A 5-token tiny target with opinionated (not near-uniform) next-token distributions; two
    layers, so that self-drafting methods (del) have a layer to exit at."""
    from tests.test_lossless_sampling import VOCAB

    model = tiny_llama(seed=seed, vocab=VOCAB, layers=layers)
    with torch.no_grad():
        model.lm_head.weight.mul_(12.0)
    model.generation_config.eos_token_id = None
    return runner_for(model)


def sampled_joint(decoder: Decoder, samples: int = SAMPLED) -> tuple[torch.Tensor, int]:
    """Counts of (t2, t3, t4) over seeded 4-token generations of the sampling test's prompt
    (tests/test_lossless_sampling.py: exact_joint is the law they must follow), and how many
    draft tokens the method accepted on the way (zero would make the check vacuous)."""
    from tests.test_lossless_sampling import PROMPT, SETTINGS, VOCAB

    counts, accepted = torch.zeros(VOCAB**3), 0
    for seed in range(samples):
        settings = dataclasses.replace(SETTINGS, seed=seed)
        result = decoder.generate(make_request(PROMPT, 4, settings))
        t2, t3, t4 = result.token_ids[1:4]
        counts[(t2 * VOCAB + t3) * VOCAB + t4] += 1
        accepted += sum(step.accepted for step in result.steps)
    return counts, accepted


# -- batch > 1 ----------------------------------------------------------------------------------
BATCH_PROMPTS = [PROMPTS[0], PROMPTS[1][:5], PROMPTS[2] + PROMPTS[0]]  # 3 different lengths
BATCH_LENGTHS = (20, 7, 24)  # and different budgets: rows finish at different steps


def batching_methods() -> list[type[Decoder]]:
    """Every registered method that declares `batches` (sample included: it samples)."""
    return [cls for cls in all_decoders() if cls.spec.batches]


def assert_batch_equals_single(
    decoder: Decoder,
    fresh: Callable[[], Decoder],
    prompts: list[list[int]] = BATCH_PROMPTS,
    lengths: tuple[int, ...] = BATCH_LENGTHS,
    sampling=None,
) -> list[GenerationResult]:
    """One ragged batch of the prompts gives, row by row, the tokens and finish reason that each
    prompt gives alone on a fresh decoder of the same method (so proposer state cannot leak from
    one run into the other), and every row's trace accounts for its tokens."""
    requests = [make_request(p, n, sampling) for p, n in zip(prompts, lengths, strict=True)]
    batched = decoder.generate_batch(requests)
    for request, got in zip(requests, batched, strict=True):
        alone = fresh().generate(request)
        assert got.token_ids == alone.token_ids, (decoder.spec.name, request.prompt_ids)
        assert got.finish_reason == alone.finish_reason
        assert sum(s.emitted for s in got.steps) == len(got.token_ids)
    return batched

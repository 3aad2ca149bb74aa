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

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import Decoder, DecoderContext
from decbench.decoders.greedy import Greedy
from decbench.decoders.registry import all_decoders
from decbench.results import GenerationResult
from tests.conftest import make_request, no_models_ctx, repetitive_prompts, runner_for, tiny_llama

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


def greedy_ids(runner: ModelRunner, prompt: list[int], n: int) -> list[int]:
    return (
        Greedy(runner, Greedy.Options(), no_models_ctx())
        .generate(make_request(prompt, n))
        .token_ids
    )


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

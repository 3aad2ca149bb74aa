"""The built-in suites: one per category, a default mix, and the input-grounded subset."""

from __future__ import annotations

from collections.abc import Callable

from decbench.suites import json_extraction, open_ended, parallel, stdlib, written
from decbench.suites.base import (
    CATEGORIES,
    CODE_COMPLETION,
    CODE_EDIT,
    MATH,
    MULTI_TURN,
    QA,
    RAG,
    SUMMARIZATION,
    TRANSLATION,
    Sample,
    Suite,
)

DEFAULT_SUITE = "spec-bench-mini"

# category -> (how its prompts are made, turns of each sample)
_PROMPTS: dict[str, tuple[str, Callable[[], list]]] = {
    MULTI_TURN: ("two-turn conversations written for decbench", lambda: written.MULTI_TURN),
    TRANSLATION: (
        "short sentences to translate, written for decbench",
        lambda: written.TRANSLATION,
    ),
    SUMMARIZATION: (
        "summarize a Python language-reference topic (pydoc_data)",
        stdlib.summarization_prompts,
    ),
    QA: ("general-knowledge questions written for decbench", lambda: written.QA),
    MATH: ("word problems with step-by-step answers, written for decbench", lambda: written.MATH),
    RAG: ("answer from two retrieved reference topics (pydoc_data)", stdlib.rag_prompts),
    CODE_COMPLETION: (
        "finish a standard-library function from its first half",
        stdlib.completion_prompts,
    ),
    CODE_EDIT: ("edit a standard-library function as instructed", stdlib.edit_prompts),
    open_ended.OPEN_ENDED: (
        "continue a story or an article for ~300 words, written for decbench",
        lambda: open_ended.PROMPTS,
    ),
}

# category -> (how its prompts are made, (prompt, JSON schema text) of each sample)
_SCHEMA_PROMPTS: dict[str, tuple[str, Callable[[], list[tuple[str, str]]]]] = {
    json_extraction.JSON_EXTRACTION: (
        "extract fields from a short text as JSON, each sample with its schema",
        json_extraction.prompts,
    ),
}

# category -> (how its prompts are made, (kind, prompt, exact answer) of each sample)
_ANSWERED_PROMPTS: dict[str, tuple[str, Callable[[], list[tuple[str, str, str]]]]] = {
    parallel.PARALLEL: (
        "ParallelBench-style tasks with exact answers: copy, reverse, count, last item, add, "
        "subtract, YES/NO, capitals",
        parallel.prompts,
    ),
}

# name -> (description, categories, prompts per category or None for all)
_SUITES: dict[str, tuple[str, tuple[str, ...], int | None]] = {
    DEFAULT_SUITE: ("3 prompts from each of the 8 categories (the default)", CATEGORIES, 3),
    "all": ("every built-in prompt, 8 categories", CATEGORIES, None),
    "input-grounded": (
        "outputs that copy from the prompt: summarization, rag, code-edit",
        (SUMMARIZATION, RAG, CODE_EDIT),
        None,
    ),
    **{c: (_PROMPTS[c][0], (c,), None) for c in CATEGORIES},
    # not in the default mix: long free-form outputs, judged by text quality rather than speed
    open_ended.OPEN_ENDED: (_PROMPTS[open_ended.OPEN_ENDED][0], (open_ended.OPEN_ENDED,), None),
    # not in the default mix: constrained decoding (use with --json-schema sample)
    json_extraction.JSON_EXTRACTION: (
        _SCHEMA_PROMPTS[json_extraction.JSON_EXTRACTION][0],
        (json_extraction.JSON_EXTRACTION,),
        None,
    ),
    # not in the default mix: exact answers, for parallel (dLLM) decoding accuracy
    parallel.PARALLEL: (_ANSWERED_PROMPTS[parallel.PARALLEL][0], (parallel.PARALLEL,), None),
}


def category_samples(category: str) -> list[Sample]:
    if category in _SCHEMA_PROMPTS:
        return [
            Sample(id=f"{category}-{number:02d}", category=category, turns=(prompt,), schema=schema)
            for number, (prompt, schema) in enumerate(_SCHEMA_PROMPTS[category][1](), start=1)
        ]
    if category in _ANSWERED_PROMPTS:
        return [
            Sample(
                id=f"{category}-{number:02d}-{kind}",
                category=category,
                turns=(prompt,),
                reference=(answer,),
            )
            for number, (kind, prompt, answer) in enumerate(
                _ANSWERED_PROMPTS[category][1](), start=1
            )
        ]
    samples = []
    for number, prompt in enumerate(_PROMPTS[category][1](), start=1):
        turns = tuple(prompt) if isinstance(prompt, tuple) else (prompt,)
        samples.append(Sample(id=f"{category}-{number:02d}", category=category, turns=turns))
    return samples


def builtin_names() -> list[str]:
    return list(_SUITES)


def builtin_suite(name: str) -> Suite:
    description, categories, per_category = _SUITES[name]
    samples = [
        sample for category in categories for sample in category_samples(category)[:per_category]
    ]
    return Suite(name=name, description=description, source="builtin", samples=samples)

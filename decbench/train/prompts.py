"""decbench's own training prompts for self-distillation: templates crossed with subjects.
They are kept apart from the benchmark suites so that held-out numbers are not inflated."""

from __future__ import annotations

import itertools

TEMPLATES = (
    "Explain {s} to a beginner in a short paragraph.",
    "Write three tips about {s}.",
    "What are the main advantages and drawbacks of {s}?",
    "Write a short story in which {s} plays a role.",
    "Summarize what you know about {s} in five sentences.",
    "Give a step-by-step guide related to {s}.",
    "Write a Python function that is useful when working with {s}, with a docstring.",
    "Answer briefly: why does {s} matter?",
    "Write an email to a colleague about {s}.",
    "List five questions a student might ask about {s}, with short answers.",
)
SUBJECTS = (
    "photosynthesis",
    "binary search",
    "the French revolution",
    "climate change",
    "sorting algorithms",
    "healthy sleep",
    "compound interest",
    "the water cycle",
    "learning a new language",
    "public transport",
    "recursion",
    "the immune system",
    "volcanoes",
    "time management",
    "electric cars",
    "the stock market",
    "gardening",
    "unit testing",
    "the moon landing",
    "coffee",
    "hash tables",
    "renewable energy",
    "remote work",
    "the human heart",
    "version control with git",
    "baking bread",
    "black holes",
    "regular expressions",
    "vaccines",
    "chess openings",
)


def training_prompts() -> list[str]:
    """300 prompts, interleaved so that any prefix mixes templates and subjects."""
    pairs = list(itertools.product(range(len(SUBJECTS)), range(len(TEMPLATES))))
    pairs.sort(key=lambda p: ((p[0] * 7 + p[1] * 3) % 31, p))
    return [TEMPLATES[t].format(s=SUBJECTS[s]) for s, t in pairs]

"""decbench's own training prompts for self-distillation: templates crossed with subjects.
They are kept apart from the benchmark suites so that held-out numbers are not inflated."""

from __future__ import annotations

import itertools

from decbench.train.task_prompts import task_prompts

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


# More templates and subjects, appended after the first 300 prompts so that the first 300 (what
# the shipped student was trained on) stay the same.
MORE_TEMPLATES = (
    "Describe a common misconception about {s} and correct it.",
    "Compare {s} with something similar, in a short table.",
    "Write a short dialogue between a teacher and a student about {s}.",
    "What would happen if {s} did not exist?",
    "Give a short history of {s}.",
    "Write a haiku and a limerick about {s}.",
    "Explain {s} to a ten-year-old.",
    "Write a product description or advertisement involving {s}.",
    "What are the most important terms to know about {s}? Define each briefly.",
    "Write a JSON object that describes {s} with a few fields.",
)
MORE_SUBJECTS = (
    "neural networks",
    "the Roman empire",
    "earthquakes",
    "meditation",
    "linked lists",
    "inflation",
    "the solar system",
    "bicycles",
    "databases",
    "photosynthesis in algae",
    "the printing press",
    "marathon training",
    "web browsers",
    "rainforests",
    "budgeting",
    "the theory of evolution",
    "operating systems",
    "jazz music",
    "ocean tides",
    "recycling",
    "prime numbers",
    "the Internet",
    "honey bees",
    "job interviews",
    "airplanes",
    "probability",
    "the Renaissance",
    "composting",
    "cloud computing",
    "friendship",
    "glaciers",
    "encryption",
    "pizza",
    "democracy",
    "spreadsheets",
    "dinosaurs",
    "public speaking",
    "magnets",
    "origami",
    "the Great Wall of China",
    "sleep apnea",
    "graph algorithms",
    "tea ceremonies",
    "wind turbines",
    "museums",
    "APIs",
    "rainbows",
    "minimalism",
    "bridges",
    "calculus",
    "video games",
    "coral reefs",
    "first aid",
    "the Olympic games",
    "compilers",
    "birds migrating",
    "shopping lists",
    "nuclear power",
    "libraries",
    "yoga",
    "satellites",
    "dogs",
    "machine translation",
    "deserts",
    "poetry",
    "electric circuits",
    "the periodic table",
    "volunteering",
    "trains",
)


def training_prompts() -> list[str]:
    """2568 prompts; any prefix mixes templates and subjects. The first 300 are the original
    10 templates x 30 subjects; then all 20 templates cross all 99 subjects (up to 1980); then
    the task-shaped prompts of task_prompts.py (math, translation, questions, code, texts)."""
    first = _interleave(TEMPLATES, SUBJECTS)
    seen = set(first)
    rest = _interleave(TEMPLATES + MORE_TEMPLATES, SUBJECTS + MORE_SUBJECTS)
    return first + [p for p in rest if p not in seen] + task_prompts()


def _interleave(templates: tuple[str, ...], subjects: tuple[str, ...]) -> list[str]:
    pairs = list(itertools.product(range(len(subjects)), range(len(templates))))
    pairs.sort(key=lambda p: ((p[0] * 7 + p[1] * 3) % 31, p))
    return [templates[t].format(s=subjects[s]) for s, t in pairs]

"""Prompts built at run time from text that ships with Python itself: the language reference
topics in `pydoc_data` (summarization, retrieval-augmented QA) and functions from standard-library
sources (code completion, code editing). Nothing is downloaded; the text comes from the running
interpreter, so these prompts can differ slightly between Python versions (suites carry a
checksum for that reason)."""

from __future__ import annotations

import ast
import functools
import importlib.util
import textwrap
from pathlib import Path

from decbench.errors import ConfigError

SUMMARY_CHARS = 1200  # reference text per summarization prompt (about 300 tokens)
PASSAGE_CHARS = 650  # per retrieved document in a RAG prompt

SUMMARIZE_TOPICS = ["assert", "while", "if", "pass", "break", "del", "return", "global"]

# (documents, question): the answer is in one of the documents.
RAG_QUESTIONS = [
    (("break", "continue"), "What does the continue statement do?"),
    (("pass", "del"), "What does the pass statement do, and when is it useful?"),
    (("assert", "pass"), "When does the compiler emit no code for an assert statement?"),
    (("return", "break"), "What does a return statement do inside a generator function?"),
    (("while", "if"), "When is the else clause of a while loop executed?"),
    (("truth", "if"), "Which built-in values are considered false in a truth test?"),
    (("nonlocal", "global"), "What does the nonlocal statement do?"),
    (("lambda", "del"), "What kind of object does a lambda expression create?"),
]

COMPLETE_FUNCTIONS = [
    ("statistics", "median"),
    ("textwrap", "indent"),
    ("fnmatch", "filter"),
    ("colorsys", "rgb_to_hsv"),
    ("shlex", "quote"),
    ("html", "escape"),
    ("textwrap", "dedent"),
    ("difflib", "get_close_matches"),
]

# (module, function, instruction): edits that keep most of the code, as real edits do.
EDIT_FUNCTIONS = [
    ("colorsys", "rgb_to_hls", "Add type hints to this function."),
    ("colorsys", "hsv_to_rgb", "Replace the chain of if statements with a lookup table."),
    ("calendar", "monthrange", "Add a docstring that explains the arguments and return value."),
    ("bisect", "insort_right", "Rename the parameters a and x to items and value."),
    ("heapq", "heappushpop", "Add a comment above each line explaining what it does."),
    ("string", "capwords", "Rewrite this function with an explicit loop instead of map()."),
    ("statistics", "variance", "Rename the local variables T, ss, c and n to descriptive names."),
    ("random", "choices", "Add type hints to this method."),
]


@functools.cache
def topic(name: str) -> str:
    """One topic of the language reference, as bundled with the interpreter."""
    try:
        from pydoc_data.topics import topics
    except ImportError as e:
        raise ConfigError(
            "the built-in summarization/rag prompts need pydoc_data, which ships with CPython; "
            "this interpreter lacks it (use a JSONL suite instead)"
        ) from e
    if name not in topics:
        raise ConfigError(f"pydoc_data has no topic '{name}' in this Python version")
    return topics[name]


def excerpt(text: str, limit: int) -> str:
    """Whole paragraphs from the start of `text`, up to about `limit` characters."""
    kept: list[str] = []
    size = 0
    for paragraph in text.strip().split("\n\n"):
        if kept and size + len(paragraph) > limit:
            break
        kept.append(paragraph)
        size += len(paragraph) + 2
    return "\n\n".join(kept)[: limit * 2]


def summarization_prompts() -> list[str]:
    return [
        "Summarize the following documentation in a few sentences.\n\n"
        + excerpt(topic(name), SUMMARY_CHARS)
        for name in SUMMARIZE_TOPICS
    ]


def rag_prompts() -> list[str]:
    prompts = []
    for names, question in RAG_QUESTIONS:
        documents = "\n\n".join(
            f"Document {i}:\n{excerpt(topic(name), PASSAGE_CHARS)}"
            for i, name in enumerate(names, start=1)
        )
        prompts.append(
            f"Answer the question using only the documents below.\n\n{documents}\n\n"
            f"Question: {question}"
        )
    return prompts


@functools.cache
def function_source(module: str, name: str) -> str:
    """The source of a function (or method) in a standard-library module, without its docstring.
    Read from the module's .py file, so C-accelerated modules still give their Python version."""
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec else None
    if not origin or not origin.endswith(".py"):
        raise ConfigError(f"cannot read the source of standard-library module '{module}'")
    text = Path(origin).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return _without_docstring(text.splitlines(), node)
    raise ConfigError(f"standard-library module '{module}' has no function '{name}'")


def _without_docstring(lines: list[str], node: ast.FunctionDef) -> str:
    first = node.body[0]
    doc = None
    value = first.value if isinstance(first, ast.Expr) else None
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        doc = range(first.lineno, (first.end_lineno or first.lineno) + 1)
    kept = [
        line
        for number, line in enumerate(lines[node.lineno - 1 : node.end_lineno], node.lineno)
        if doc is None or number not in doc
    ]
    return textwrap.dedent("\n".join(kept))


def completion_prompts() -> list[str]:
    """The signature and the first half of the body; the model writes the rest."""
    prompts = []
    for module, name in COMPLETE_FUNCTIONS:
        lines = function_source(module, name).splitlines()
        head = "\n".join(lines[: max(2, (len(lines) + 1) // 2)])
        prompts.append(
            f"Complete the following Python function from the `{module}` module. "
            f"Return the whole function.\n\n```python\n{head}\n```"
        )
    return prompts


def edit_prompts() -> list[str]:
    return [
        f"{instruction} Return the complete edited code.\n\n```python\n"
        f"{function_source(module, name)}\n```"
        for module, name, instruction in EDIT_FUNCTIONS
    ]

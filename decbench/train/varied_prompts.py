"""Varied training prompts built from real text that ships with Python: the docstrings of
standard-library modules (summaries, explanations, questions over documents, translation of their
sentences) and the sources of standard-library functions (completion, editing, explanation).

The templated prompts of prompts.py and task_prompts.py teach a draft a few hundred phrasings; a
trained EAGLE layer then reaches 85% accuracy on its training data and 50% on held-out prompts.
Real prose and real code vary far more. Nothing is downloaded and no module is imported (sources
are parsed with `ast`), so building the list has no side effects. The text depends on the Python
version, as the stdlib suite's does; distill.json records the data checksum.

The benchmark suites stay unseen: the language-reference topics (pydoc_data) that the stdlib
suite summarizes are not used at all, and the modules whose functions it completes or edits are
skipped (a test checks that no suite prompt's text appears here)."""

from __future__ import annotations

import ast
import functools
import importlib.util
import itertools
import sys
import textwrap
from pathlib import Path

from decbench.suites.stdlib import COMPLETE_FUNCTIONS, EDIT_FUNCTIONS
from decbench.train.task_prompts import EDITS, LANGUAGES

# The modules whose functions the stdlib suite completes or edits.
SUITE_MODULES = frozenset(m for m, *_ in COMPLETE_FUNCTIONS + EDIT_FUNCTIONS)
# Modules whose import or text is not useful: interactive toys, test support, generated tables.
SKIP = frozenset({"antigravity", "this", "test", "idlelib", "lib2to3", "turtledemo", "pydoc_data"})

DOC_CHARS = 1100  # module documentation per summary prompt (about 280 tokens)
PASSAGE_CHARS = 600  # per document in a question-over-documents prompt
SUMMARIZE = (
    "Summarize the following module documentation in a few sentences.",
    "Explain to a beginner what this Python module is for.",
    "Rewrite this documentation as a short list of bullet points.",
    "Write a one-paragraph overview of the following text.",
    "What are the main ideas of this text? Answer in three sentences.",
)
COMPLETE = (
    "Complete the following Python function from the `{m}` module. Return the whole function.",
    "Finish this Python function so that it works. Return the complete code.",
)


@functools.cache
def module_sources() -> tuple[tuple[str, str], ...]:
    """(dotted name, source) of the pure-Python standard-library modules and their direct
    submodules, sorted by name."""
    found: dict[str, Path] = {}
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIP:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        origin = Path(spec.origin)
        found[name] = origin
        if origin.name == "__init__.py":
            for sub in sorted(origin.parent.glob("*.py")):
                if not sub.name.startswith("_"):
                    found[f"{name}.{sub.stem}"] = sub
    return tuple((name, path.read_text(encoding="utf-8")) for name, path in sorted(found.items()))


@functools.cache
def module_docs() -> tuple[tuple[str, str], ...]:
    """(module, docstring) where the docstring is prose of at least 300 characters."""
    docs = []
    for name, source in module_sources():
        doc = ast.get_docstring(ast.parse(source)) or ""
        if len(doc) >= 300 and name.split(".")[0] not in SUITE_MODULES:
            docs.append((name, doc))
    return tuple(docs)


def excerpt(text: str, limit: int) -> str:
    """Whole paragraphs from the start of `text`, up to about `limit` characters."""
    kept: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        if kept and sum(len(k) + 2 for k in kept) + len(paragraph) > limit:
            break
        kept.append(paragraph)
    return "\n\n".join(kept)[: limit * 2]


def summary_prompts() -> list[str]:
    """Three instructions per module, rotating through SUMMARIZE."""
    return [
        f"{SUMMARIZE[(i + k) % len(SUMMARIZE)]}\n\n{excerpt(doc, DOC_CHARS)}"
        for i, (_, doc) in enumerate(module_docs())
        for k in range(3)
    ]


def document_prompts() -> list[str]:
    """Questions answered by one of two module documents."""
    docs = module_docs()
    prompts = []
    for i, (name, doc) in enumerate(docs):
        other = docs[(i * 7 + 3) % len(docs)]
        if other[0] == name:
            continue
        pair = [(name, doc), other] if i % 2 else [other, (name, doc)]
        text = "\n\n".join(
            f"Document {d}:\n{excerpt(body, PASSAGE_CHARS)}" for d, (_, body) in enumerate(pair, 1)
        )
        question = f"What is the `{name}` module used for?"
        prompts.append(
            f"Answer the question using only the documents below.\n\n{text}\n\nQuestion: {question}"
        )
    return prompts


def translation_prompts() -> list[str]:
    """The first sentence of each module's documentation, into one language each."""
    prompts = []
    for i, (_, doc) in enumerate(module_docs()):
        sentence = " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".") + "."
        if 30 <= len(sentence) <= 240:
            prompts.append(f"Translate into {LANGUAGES[i % len(LANGUAGES)]}: {sentence}")
    return prompts


@functools.cache
def functions() -> tuple[tuple[str, str], ...]:
    """(module, source without docstring) of public top-level functions of 6 to 30 lines,
    every other one (so that code is about a third of the set, not half)."""
    found = []
    for name, source in module_sources():
        if name.split(".")[0] in SUITE_MODULES:
            continue
        lines = source.splitlines()
        for node in ast.parse(source).body:
            if (
                isinstance(node, ast.FunctionDef)
                and not node.name.startswith("_")
                and 6 <= (node.end_lineno or node.lineno) - node.lineno <= 30
            ):
                found.append((name, _without_docstring(lines, node)))
    return tuple(found[::2])


def _without_docstring(lines: list[str], node: ast.FunctionDef) -> str:
    first = node.body[0]
    value = first.value if isinstance(first, ast.Expr) else None
    skip = range(0)
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        skip = range(first.lineno, (first.end_lineno or first.lineno) + 1)
    body = lines[node.lineno - 1 : node.end_lineno]
    return textwrap.dedent("\n".join(x for n, x in enumerate(body, node.lineno) if n not in skip))


def code_prompts() -> list[str]:
    """Even functions are completed from their first half; odd ones are edited or explained."""
    prompts = []
    for i, (module, code) in enumerate(functions()):
        if i % 2 == 0:
            lines = code.splitlines()
            head = "\n".join(lines[: max(2, (len(lines) + 1) // 2)])
            ask = COMPLETE[(i // 2) % len(COMPLETE)].format(m=module)
            prompts.append(f"{ask}\n\n```python\n{head}\n```")
        else:
            edit = EDITS[(i // 2) % len(EDITS)]
            tail = "" if edit.startswith(("Explain", "Write")) else " Return the complete code."
            prompts.append(f"{edit}{tail}\n\n```python\n{code}\n```")
    return prompts


def varied_prompts(replay: int = 8) -> list[str]:
    """The prompts above, with every `replay`-th prompt of the default training set mixed in
    (so that a draft fine-tuned on them keeps what it learned there), spread so that any
    stretch of the list mixes the kinds."""
    from decbench.train.prompts import training_prompts

    kinds = [summary_prompts(), document_prompts(), translation_prompts(), code_prompts()]
    kinds.append(training_prompts()[::replay])
    placed = [((i + 0.5) / len(k), n, p) for n, k in enumerate(kinds) for i, p in enumerate(k)]
    return list(dict.fromkeys(p for _, _, p in sorted(placed)))


def counts() -> dict[str, int]:
    """How many prompts of each kind (for the docs and distill.json)."""
    return {
        "summary": len(summary_prompts()),
        "documents": len(document_prompts()),
        "translation": len(translation_prompts()),
        "code": len(code_prompts()),
        "varied": len(varied_prompts()),
    }


if __name__ == "__main__":
    for kind, n in counts().items():
        print(f"{kind}: {n}")
    for p in itertools.islice(varied_prompts(), 0, 12):
        print("---", p[:200])

"""Prompt suites: built-in ones (`decbench suites list`) and JSONL files in decbench's or
Spec-Bench's format. `get_suite` takes either a built-in name or a file path."""

from __future__ import annotations

from pathlib import Path

from decbench.errors import ConfigError, suggest
from decbench.suites.base import CATEGORIES, Sample, Suite, SuiteInfo
from decbench.suites.builtin import DEFAULT_SUITE, builtin_names, builtin_suite
from decbench.suites.loaders import FORMATS, load_jsonl

__all__ = [
    "CATEGORIES",
    "DEFAULT_SUITE",
    "FORMATS",
    "Sample",
    "Suite",
    "SuiteInfo",
    "get_suite",
    "list_suites",
]


def get_suite(name: str, fmt: str = "auto") -> Suite:
    """A built-in suite by name, or a JSONL file (decbench or Spec-Bench format)."""
    path = Path(name).expanduser()
    if name in builtin_names() and not path.is_file():
        return builtin_suite(name)
    if path.is_file():
        return load_jsonl(path, fmt)
    looks_like_file = path.suffix or "/" in name
    hint = "" if looks_like_file else suggest(name, builtin_names())
    names = ", ".join(builtin_names())
    raise ConfigError(
        f"suite '{name}' is neither a built-in suite nor a file{hint} (built-in: {names})"
    )


def list_suites() -> list[Suite]:
    return [builtin_suite(name) for name in builtin_names()]

"""Suites from JSONL files, in two formats (one JSON object per line; blank lines are skipped).

decbench format::

    {"id": "greet-1", "category": "qa", "prompt": "Name three colors."}
    {"id": "poem", "category": "multi-turn", "turns": ["Write a haiku.", "Now make it sadder."]}

    keys: prompt (a string) or turns (a list of strings), and optionally id (default: the line
    number), category (default: "default"), reference (a string, or a list of strings or
    of lists of strings), meta (ignored).

Spec-Bench / MT-Bench `question.jsonl` format::

    {"question_id": 81, "category": "writing", "turns": ["...", "..."], "reference": ["..."]}

    A line with `question_id` is read in this format; other keys are ignored, as upstream files
    carry more of them over time. `reference` is optional (Spec-Bench's QA rows and half of its
    MT-bench rows have none) and may nest one level: its RAG rows carry a list of acceptable
    answers, [["lumber", "a carbon sink"]].

Every error names the file and the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from decbench.errors import ConfigError, unknown
from decbench.suites.base import Reference, Sample, Suite

FORMATS = ("auto", "decbench", "spec-bench")
DECBENCH_KEYS = ("id", "category", "prompt", "turns", "reference", "meta", "schema")
DEFAULT_CATEGORY = "default"


def load_jsonl(path: Path, fmt: str = "auto") -> Suite:
    if fmt not in FORMATS:
        raise unknown("suite format", fmt, FORMATS)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read suite file: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason})") from e
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        sample = parse_line(line, number, fmt, where)
        if sample.id in seen:
            raise ConfigError(
                f"{where}: duplicate id '{sample.id}' (first on line {seen[sample.id]})"
            )
        seen[sample.id] = number
        samples.append(sample)
    if not samples:
        raise ConfigError(f"{path}: the suite file has no samples")
    return Suite(
        name=path.stem, description=f"prompts from {path.name}", source=str(path), samples=samples
    )


def parse_line(line: str, number: int, fmt: str, where: str) -> Sample:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON: {e.msg} (column {e.colno})") from e
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(record).__name__}")
    spec_bench = fmt == "spec-bench" or (fmt == "auto" and "question_id" in record)
    if spec_bench:
        return spec_bench_sample(record, where)
    return decbench_sample(record, number, where)


def spec_bench_sample(record: dict[str, Any], where: str) -> Sample:
    for key in ("question_id", "category", "turns"):
        if key not in record:
            raise ConfigError(f"{where}: Spec-Bench question needs '{key}'")
    qid = record["question_id"]
    if not isinstance(qid, int | str) or isinstance(qid, bool):
        raise ConfigError(f"{where}: question_id must be an integer or a string")
    return Sample(
        id=str(qid),
        category=_string(record["category"], "category", where),
        turns=_turns(record["turns"], where),
        reference=_reference(record.get("reference"), where),
    )


def decbench_sample(record: dict[str, Any], number: int, where: str) -> Sample:
    for key in record:
        if key not in DECBENCH_KEYS:
            raise unknown("key", key, DECBENCH_KEYS, where=where)
    if ("prompt" in record) == ("turns" in record):
        raise ConfigError(f"{where}: give exactly one of 'prompt' (a string) or 'turns' (a list)")
    if "prompt" in record:
        turns = (_string(record["prompt"], "prompt", where),)
    else:
        turns = _turns(record["turns"], where)
    qid = record.get("id", str(number))
    if not isinstance(qid, int | str) or isinstance(qid, bool):
        raise ConfigError(f"{where}: id must be a string or an integer")
    schema = record.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise ConfigError(f"{where}: schema must be a JSON object (a JSON schema)")
    return Sample(
        id=str(qid),
        category=_string(record.get("category", DEFAULT_CATEGORY), "category", where),
        turns=turns,
        reference=_reference(record.get("reference"), where),
        schema=None if schema is None else json.dumps(schema, sort_keys=True),
    )


def _string(value: Any, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def _turns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: 'turns' must be a non-empty list of strings")
    return tuple(_string(turn, f"turns[{i}]", where) for i, turn in enumerate(value))


def _reference(value: Any, where: str) -> tuple[Reference, ...] | None:
    """A string, or a list whose entries are strings or lists of strings (acceptable answers)."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(_is_reference(v) for v in value):
        return tuple(v if isinstance(v, str) else tuple(v) for v in value)
    raise ConfigError(
        f"{where}: 'reference' must be a string or a list of strings (or of lists of strings)"
    )


def _is_reference(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    )

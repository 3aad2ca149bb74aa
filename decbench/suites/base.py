"""Prompt suites: samples with a category and one or more user turns.

A multi-turn sample is a conversation: turn i+1 is asked after the model's *own* answer to turn
i (as in MT-Bench and Spec-Bench), so every method answers turn 2 in the context it produced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from decbench.errors import ConfigError, unknown
from decbench.jsonrecord import JsonRecord

# The categories speculative-decoding papers report (Spec-Bench: multi-turn conversation,
# translation, summarization, QA, math reasoning, RAG) plus code.
MULTI_TURN = "multi-turn"
TRANSLATION = "translation"
SUMMARIZATION = "summarization"
QA = "qa"
MATH = "math"
RAG = "rag"
CODE_COMPLETION = "code-completion"
CODE_EDIT = "code-edit"
CATEGORIES = (MULTI_TURN, TRANSLATION, SUMMARIZATION, QA, MATH, RAG, CODE_COMPLETION, CODE_EDIT)


Reference = str | tuple[str, ...]  # one reference answer, or several acceptable ones


@dataclass(frozen=True)
class Sample:
    id: str  # unique within its suite
    category: str
    turns: tuple[str, ...]  # [n_turns] user messages, asked in order
    # reference answers when the source has them, usually one per turn; an entry is a string or
    # a tuple of acceptable answers (Spec-Bench's RAG rows: [["answer", "alias", ...]])
    reference: tuple[Reference, ...] | None = None
    # a JSON schema (JSON text) the answer must satisfy, for runs whose [constraint] has
    # schema = "sample" (decbench/constraints; the json-extraction suite)
    schema: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["turns"] = list(self.turns)
        if self.schema is None:
            del data["schema"]  # records and checksums of schema-less suites stay as they were
        if self.reference is not None:
            data["reference"] = [r if isinstance(r, str) else list(r) for r in self.reference]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        reference = data.get("reference")
        return cls(
            id=str(data["id"]),
            category=str(data["category"]),
            turns=tuple(data["turns"]),
            reference=(
                tuple(r if isinstance(r, str) else tuple(r) for r in reference)
                if reference is not None
                else None
            ),
            schema=data.get("schema"),
        )


@dataclass
class SuiteInfo(JsonRecord):
    """What results say of the suite they ran: its identity without the samples."""

    name: str
    description: str
    source: str
    categories: list[str]
    count: int  # samples
    checksum: str  # Suite.checksum() of the exact prompts


@dataclass
class Suite:
    name: str
    description: str
    source: str  # "builtin" or the file it was read from
    samples: list[Sample] = field(default_factory=list)

    @property
    def categories(self) -> list[str]:
        """Categories in order of first appearance."""
        return list(dict.fromkeys(s.category for s in self.samples))

    def select(self, categories: list[str] | None = None, limit: int | None = None) -> Suite:
        """Keep the given categories (all when empty) and at most `limit` samples per category."""
        if limit is not None and limit < 1:
            raise ConfigError(f"--limit must be >= 1, got {limit}")
        wanted = list(dict.fromkeys(categories or []))
        for category in wanted:
            if category not in self.categories:
                raise unknown("category", category, self.categories, where=f"suite '{self.name}'")
        taken: dict[str, int] = {}
        kept = []
        for sample in self.samples:
            if wanted and sample.category not in wanted:
                continue
            if limit is not None and taken.get(sample.category, 0) >= limit:
                continue
            taken[sample.category] = taken.get(sample.category, 0) + 1
            kept.append(sample)
        return Suite(self.name, self.description, self.source, kept)

    def checksum(self) -> str:
        """Identity of the exact prompts (built-in code prompts come from the installed Python's
        own sources, so they can differ between Python versions)."""
        blob = json.dumps([s.to_dict() for s in self.samples], sort_keys=True).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]

    def info(self) -> SuiteInfo:
        return SuiteInfo(
            self.name,
            self.description,
            self.source,
            self.categories,
            len(self.samples),
            self.checksum(),
        )

    def to_dict(self, samples: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = self.info().to_json()
        if samples:
            data["samples"] = [s.to_dict() for s in self.samples]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Suite:
        """Back from `to_dict(samples=True)`; categories, count and checksum follow from the
        samples."""
        samples = [Sample.from_dict(s) for s in data["samples"]]
        return cls(str(data["name"]), str(data["description"]), str(data["source"]), samples)

"""A profile's [constraint] table -> a compiled Constraint for the target's tokenizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from decbench.constraints.base import Constraint
from decbench.constraints.grammar import (
    GrammarConstraint,
    json_schema_grammar,
    lark_grammar,
    regex_grammar,
)
from decbench.constraints.trie import AllowList
from decbench.errors import ConfigError
from decbench.files import read_text
from decbench.settings import ConstraintSettings

# kinds no token mask can express: a method takes them into its own search (Decoder.takes_constraint)
SEARCH_KINDS = ("include",)
SAMPLE = "sample"  # constraint.schema = "sample": each suite sample's own schema (compare only)
KEYS = {
    "allow": {"file", "tokens"},
    "json-schema": {"schema"},
    "grammar": {"file", "lark", "regex"},
    "include": {"include"},
}


def build_constraint(
    settings: ConstraintSettings,
    tokenizer: Any,
    vocab: int,
    eos: list[int],
    per_sample: bool = False,
) -> Constraint | None:
    """None when the profile has no constraint, or when its schema comes with each sample
    (`per_sample`: compare compiles those with `sample_schema`); ConfigError (one line) for a
    bad one. The ranges `settings` declares (kind, tokens) were checked with the profile
    (profiles.build), before any model loaded."""
    _check_keys(settings)
    if not settings.kind or settings.kind in SEARCH_KINDS:
        return None
    if settings.kind == "allow":
        return allow_list(settings, tokenizer, vocab, eos)
    if tokenizer is None:
        raise ConfigError(f"a {settings.kind} constraint needs the model's tokenizer")
    if settings.kind == "json-schema":
        if not settings.schema:
            raise ConfigError("constraint.schema: a json-schema constraint needs a schema file")
        if settings.schema == SAMPLE:
            if per_sample:
                return None
            raise ConfigError(
                'constraint.schema = "sample" takes each suite sample\'s own schema: use it with '
                "`decbench compare --suite json-extraction`, or give a schema file"
            )
        source = settings.schema
        return sample_schema(
            read_text(Path(source), f"JSON schema '{source}'"), source, tokenizer, vocab, eos
        )
    given = [key for key in ("file", "lark", "regex") if getattr(settings, key)]
    if len(given) != 1:
        raise ConfigError("a grammar constraint needs exactly one of constraint.file, lark, regex")
    if settings.regex:
        return GrammarConstraint(
            "grammar",
            regex_grammar(settings.regex),
            f"regex {settings.regex!r}",
            tokenizer,
            vocab,
            eos,
        )
    text = settings.lark or read_text(Path(settings.file), f"Lark grammar '{settings.file}'")
    source = settings.file or "constraint.lark"
    return GrammarConstraint("grammar", lark_grammar(text), source, tokenizer, vocab, eos)


def sample_schema(
    text: str, source: str, tokenizer: Any, vocab: int, eos: list[int]
) -> GrammarConstraint:
    """A json-schema constraint from the schema's JSON text."""
    grammar, schema = json_schema_grammar(text, source)
    return GrammarConstraint("json-schema", grammar, source, tokenizer, vocab, eos, schema)


def _check_keys(settings: ConstraintSettings) -> None:
    """A key that the kind does not read is a mistake (a schema with kind = "allow")."""
    used = KEYS.get(settings.kind, set())
    defaults = ConstraintSettings()
    for key in (f.name for f in dataclasses.fields(ConstraintSettings) if f.name != "kind"):
        if getattr(settings, key) != getattr(defaults, key) and key not in used:
            kind = settings.kind or '""'
            raise ConfigError(f"constraint.{key} does not apply to constraint.kind = {kind}")


def allow_list(
    settings: ConstraintSettings, tokenizer: Any, vocab: int, eos: list[int]
) -> AllowList:
    if not settings.file:
        raise ConfigError("constraint.file: an allow constraint needs a file (one sequence a line)")
    source = settings.file
    lines = [
        line
        for line in read_text(Path(source), f"allow-list '{source}'").splitlines()
        if line.strip()
    ]
    if settings.tokens == "ids":
        sequences = [_ids(line, source, n) for n, line in enumerate(lines, 1)]
    elif tokenizer is None:
        raise ConfigError(
            f"{source}: text allow-lists need the model's tokenizer; use tokens = ids"
        )
    else:
        sequences = [tokenizer.encode(line.strip(), add_special_tokens=False) for line in lines]
    return AllowList(sequences, vocab, eos, source)


def _ids(line: str, source: str, number: int) -> list[int]:
    try:
        return [int(word) for word in line.split()]
    except ValueError as e:
        raise ConfigError(
            f"{source}:{number}: expected token ids separated by spaces, got {line.strip()!r}"
        ) from e

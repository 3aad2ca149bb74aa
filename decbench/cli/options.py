"""Shared options as Annotated aliases, and the profile they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from decbench.errors import ConfigError
from decbench.files import decode_text, read_text
from decbench.profiles import Profile, load_profile, method_profile, parse_override

MethodOpt = Annotated[
    str | None, typer.Option("--method", "-m", help="Method name (see `decbench methods`).")
]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="Profile TOML file, or a built-in profile's name."),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", help="Model alias, folder or cached HF id.")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="float32, bfloat16 or float16.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="torch threads (0 = default).")]
MaxNewOpt = Annotated[
    int | None, typer.Option("--max-new-tokens", "-n", help="Generate at most this many tokens.")
]
TemperatureOpt = Annotated[
    float | None, typer.Option("--temperature", "-t", help="0 = greedy; > 0 samples.")
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Sampling seed.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override any profile key: TABLE.KEY=VALUE (repeatable)."),
]
JsonSchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--json-schema", help="Constrain the output to JSON valid under this schema file."
    ),
]
RegexOpt = Annotated[
    str | None, typer.Option("--regex", help="Constrain the output to match this regex.")
]
GrammarOpt = Annotated[
    str | None, typer.Option("--grammar", help="Constrain the output to this Lark grammar file.")
]
AllowOpt = Annotated[
    str | None,
    typer.Option("--allow", help="Constrain the output to one line of this file (an allow-list)."),
]
IncludeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        help="The output must contain this phrase (repeatable; lexical constraint, grid-beam).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


def build_profile(
    method: str | None,
    profile: str | None,
    sets: list[str] | None,
    **flags: Any,
) -> Profile:
    """Profile file or --method shorthand, then --set overrides, then the named flags."""
    if method and profile:
        raise ConfigError("give --method or --profile, not both (use --set method.name=... )")
    table_of = {
        "model": ("model", "name"),
        "device": ("backend", "device"),
        "dtype": ("backend", "dtype"),
        "threads": ("backend", "threads"),
        "max_new_tokens": ("generation", "max_new_tokens"),
        "temperature": ("sampling", "temperature"),
        "seed": ("sampling", "seed"),
    }
    constraint = {k: flags.pop(k) for k in CONSTRAINT_FLAGS if k in flags}
    overrides = [parse_override(s) for s in sets or []]
    overrides += [(*table_of[k], v) for k, v in flags.items() if v is not None]
    overrides += constraint_overrides(constraint)
    if profile:
        return load_profile(profile, overrides)
    return method_profile(method or "greedy", overrides)


def read_prompt(prompt: str) -> str:
    """'-' reads stdin; '@file' reads a file."""
    if prompt == "-":
        import sys

        return decode_text(sys.stdin.buffer.read(), "standard input")
    if prompt.startswith("@"):
        path = Path(prompt[1:])
        return read_text(path, f"prompt file '{path}'")
    return prompt


# --json-schema, --regex, --grammar, --allow: flag -> (constraint.kind, the key the value sets)
CONSTRAINT_FLAGS = {
    "json_schema": ("json-schema", "schema"),
    "regex": ("grammar", "regex"),
    "grammar": ("grammar", "file"),
    "allow": ("allow", "file"),
    "include": ("include", "include"),
}


def constraint_overrides(given: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """A constraint flag replaces the profile's whole [constraint] table."""
    chosen = {k: v for k, v in given.items() if v is not None and v != []}
    if not chosen:
        return []
    if len(chosen) > 1:
        names = ", ".join("--" + k.replace("_", "-") for k in chosen)
        raise ConfigError(f"give one constraint flag, not {names}")
    ((flag, value),) = chosen.items()
    kind, key = CONSTRAINT_FLAGS[flag]
    cleared = [("constraint", k, "") for k in ("schema", "file", "lark", "regex")]
    return [
        *cleared,
        ("constraint", "include", []),
        ("constraint", "tokens", "text"),
        ("constraint", "kind", kind),
        ("constraint", key, value),
    ]

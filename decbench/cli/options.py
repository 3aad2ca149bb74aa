"""Shared options as Annotated aliases, and the profile they build."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer

from decbench.errors import ConfigError
from decbench.files import decode_text, read_text
from decbench.profiles import Profile, load_profile, method_profile, parse_override
from decbench.settings import ConstraintSettings
from decbench.suites import DEFAULT_SUITE, FORMATS

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
SuiteOpt = Annotated[
    str | None,
    typer.Option(
        "--suite",
        help=f"Built-in suite (`decbench suites list`) or a JSONL file [default: {DEFAULT_SUITE}].",
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", help=f"Suite file format: {', '.join(FORMATS)}.")
]
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option("--category", "-c", help="Only these categories (repeatable)."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="At most N prompts per category.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]


# -- the profile flags every running command takes, declared once ---------------------------------
MODEL_FLAGS = {"model": ModelOpt, "device": DeviceOpt, "dtype": DtypeOpt, "threads": ThreadsOpt}
GENERATION_FLAGS = {"max_new_tokens": MaxNewOpt}
SAMPLING_FLAGS = {"temperature": TemperatureOpt, "seed": SeedOpt}
CONSTRAINT_OPTS = {
    "json_schema": JsonSchemaOpt,
    "regex": RegexOpt,
    "grammar": GrammarOpt,
    "allow": AllowOpt,
    "include": IncludeOpt,
}


@dataclass
class ProfileFlags:
    """The values of the profile flags a command was given (None: not given)."""

    values: dict[str, Any] = field(default_factory=dict)  # flag name -> value
    sets: list[str] = field(default_factory=list)  # --set TABLE.KEY=VALUE

    @property
    def given(self) -> bool:
        """Any flag that shapes a profile was given."""
        return bool(self.sets) or any(v is not None and v != [] for v in self.values.values())

    def build(self, method: str | None, profile: str | None) -> Profile:
        return build_profile(method, profile, self.sets, **self.values)


def profile_flags(
    sampling: bool = True, constraints: bool = True
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the shared profile flags (--model, --device, --dtype, --threads,
    --max-new-tokens, --set, and unless switched off --temperature/--seed and the constraint
    flags). The command declares one parameter `flags: ProfileFlags` and receives them packed;
    its --help lists them before --json."""
    declared = {**MODEL_FLAGS, **GENERATION_FLAGS}
    if sampling:
        declared.update(SAMPLING_FLAGS)
    declared["sets"] = SetOpt
    if constraints:
        declared.update(CONSTRAINT_OPTS)

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        hints = get_type_hints(command, include_extras=True)
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(command).parameters.values()
            if p.name != "flags"
        ]
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
            for name, ann in declared.items()
        ]
        tail = [p for p in own if p.name == "json_out"]
        head = [p for p in own if p.name != "json_out"]
        keyword = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in head]
        parameters = [*keyword, *added, *(p.replace(kind=p.KEYWORD_ONLY) for p in tail)]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            values = {name: kwargs.pop(name) for name in declared}
            sets = values.pop("sets") or []
            return command(**kwargs, flags=ProfileFlags(values, list(sets)))

        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return wrap


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
    fresh = dataclasses.asdict(ConstraintSettings(kind=kind))  # every key back to its default
    return [*(("constraint", k, v) for k, v in fresh.items()), ("constraint", key, value)]

"""Declared option ranges: the one way a decoder's Options dataclass, and each settings table of a
profile (decbench/settings.py), says what values it takes. It lives outside decbench/decoders so
that the settings can use it without importing the decoders.

A field declares its range where it is defined, beside its default and its comment:

    @dataclass
    class PromptLookupOptions:
        k: int = option(10, ge=1)  # draft tokens per step (at most)
        alpha: float = option(0.6, ge=0, le=1)  # degeneration penalty weight
        schedule: str = option("constant", choices=SCHEDULES)  # constant | heuristic
        branches: list[int] = option([3, 2, 1], ge=1)  # a list's bounds apply to every item
        nodes: int | str = option(8, ge=1, choices=("auto",))  # a number in range, or "auto"

`check_options` walks the fields and raises a ConfigError in one format for every method
("method.k must be >= 1, got 0"; a string outside its choices reads as errors.check_choice
writes it, with a did-you-mean: "method.schedule: 'fast' is not one of constant, heuristic"). NaN is outside every numeric range; infinity passes a bound it satisfies.

A rule that is not the range of one field (two fields in order, a regex that must compile) is a
`validate(self) -> None` method of the Options class, raising ConfigError; check_options calls it
after the ranges. A check that needs the loaded model (k up to the vocabulary size) stays in the
decoder, next to the model it reads.

The settings tables of a profile declare their ranges the same way (decbench/settings.py), and
check_options(settings, table) names their keys after the table ("sampling.top_p must be in
(0, 1], got 1.5").

check_options runs once on each path a value takes, and no decoder repeats it:
- a profile (TOML, --set, CLI flags): profiles.build checks the method's options and every
  settings table, so `--set method.k=0` fails when the profile is read, naming the file;
- a [constraint] folded into a method's options (Decoder.takes_constraint): run.check_profile
  checks the new options, before any model loads;
- a decoder built without a profile (tests, library use): Decoder.__init__. A session opened
  from a profile tells the decoder its options were checked (DecoderContext.checked_options)."""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from decbench.errors import ConfigError, suggest

RANGE = "decbench.range"  # the dataclasses.field metadata key of a declared Range


@dataclass(frozen=True)
class Range:
    """What values one option takes: numeric bounds, allowed strings, or both (a number in
    range or one of the strings)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None

    @property
    def bounded(self) -> bool:
        return any(b is not None for b in (self.ge, self.gt, self.le, self.lt))

    def describe(self) -> str:
        """'>= 1', '> 0', 'in [0, 1)', 'one of a, b', or '>= 1 or 'auto''."""
        low = self.ge if self.ge is not None else self.gt
        high = self.le if self.le is not None else self.lt
        if low is not None and high is not None:
            left, right = "[" if self.ge is not None else "(", "]" if self.le is not None else ")"
            text = f"in {left}{_num(low)}, {_num(high)}{right}"
        elif low is not None:
            text = f"{'>=' if self.ge is not None else '>'} {_num(low)}"
        elif high is not None:
            text = f"{'<=' if self.le is not None else '<'} {_num(high)}"
        else:
            return f"one of {_listed(self.choices or ())}"
        return text + "".join(f" or {c!r}" for c in self.choices or ())

    def contains(self, value: float) -> bool:
        """A number inside every bound (NaN is inside none)."""
        if isinstance(value, float) and math.isnan(value):
            return False
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def check(self, key: str, value: Any) -> None:
        """Raise a ConfigError naming `key` unless `value` (or, for a list, each item) is in range."""
        if isinstance(value, list):
            for i, item in enumerate(value):
                self.check(f"{key}[{i}]", item)
            return
        if isinstance(value, str):
            if self.choices is None:
                return
            if self.bounded and value not in self.choices:
                raise ConfigError(f"{key} must be {self.describe()}, got {value!r}")
            if value not in self.choices:
                hint = suggest(value, self.choices)
                raise ConfigError(f"{key}: '{value}' is not one of {_listed(self.choices)}{hint}")
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            return  # the type was checked where the value was read (profiles.coerce)
        if self.bounded and not self.contains(value):
            raise ConfigError(f"{key} must be {self.describe()}, got {value!r}")
        if not self.bounded and self.choices is not None:
            raise ConfigError(f"{key} must be {self.describe()}, got {value!r}")


def _listed(choices: tuple[str, ...]) -> str:
    """'a, b', with an empty choice shown as "" (constraint.kind "" = unconstrained)."""
    return ", ".join(c or '""' for c in choices)


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


def option(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[str, ...] | list[str] | None = None,
) -> Any:
    """A dataclass field with `default` and a declared range (bounds are inclusive for ge/le,
    exclusive for gt/lt). A list or dict default is copied for each instance."""
    declared = Range(ge, gt, le, lt, tuple(choices) if choices is not None else None)
    metadata = {RANGE: declared}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def declared_range(f: dataclasses.Field) -> Range | None:
    """The Range a field declared with `option`, if any."""
    return f.metadata.get(RANGE)


def declared_ranges(options_cls: type) -> dict[str, Range]:
    """Field name -> Range for every field of `options_cls` that declares one."""
    if not dataclasses.is_dataclass(options_cls):
        return {}
    fields = dataclasses.fields(options_cls)
    return {f.name: r for f in fields if (r := declared_range(f)) is not None}


def check_options(options: Any, table: str = "method") -> None:
    """Every declared range of `options` (a dataclass instance), then its `validate` hook, if
    any. Errors name the key as `table.field`."""
    if not dataclasses.is_dataclass(options) or isinstance(options, type):
        return
    for name, declared in declared_ranges(type(options)).items():
        declared.check(f"{table}.{name}", getattr(options, name))
    validate = getattr(options, "validate", None)
    if callable(validate):
        validate()

"""Declared option ranges (decbench/decoders/options.py): one mechanism and one message format,
checked for every registered decoder through the profile path a user's TOML or --set takes."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

import pytest

from decbench.decoders.options import Range, check_options, declared_ranges, option
from decbench.decoders.registry import all_decoders
from decbench.errors import ConfigError
from decbench.profiles import build


@dataclass
class Example:
    k: int = option(4, ge=1)  # a lower bound
    p: float = option(0.5, ge=0, lt=1)  # a half-open interval
    decay: float = option(0.9, gt=0, le=1)
    schedule: str = option("constant", choices=("constant", "heuristic"))
    widths: list[int] = option([3, 2], ge=1)  # every item
    nodes: int | str = option(8, ge=1, choices=("auto",))
    free: float = 1.0  # no declared range

    def validate(self) -> None:
        if self.k > 100:
            raise ConfigError(f"method.k must be at most 100 here, got {self.k}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": 0}, "method.k must be >= 1, got 0"),
        ({"p": 1.0}, "method.p must be in [0, 1), got 1.0"),
        ({"p": -0.5}, "method.p must be in [0, 1), got -0.5"),
        ({"p": math.nan}, "method.p must be in [0, 1), got nan"),
        ({"decay": 0.0}, "method.decay must be in (0, 1], got 0.0"),
        ({"schedule": "fast"}, "method.schedule: 'fast' is not one of constant, heuristic"),
        (
            {"schedule": "heuristc"},
            "method.schedule: 'heuristc' is not one of constant, "
            "heuristic; did you mean 'heuristic'?",
        ),
        ({"widths": [3, 0]}, "method.widths[1] must be >= 1, got 0"),
        ({"nodes": 0}, "method.nodes must be >= 1 or 'auto', got 0"),
        ({"nodes": "many"}, "method.nodes must be >= 1 or 'auto', got 'many'"),
        ({"k": 101}, "method.k must be at most 100 here, got 101"),  # the validate hook
    ],
)
def test_one_format_for_every_kind_of_range(change, message):
    with pytest.raises(ConfigError) as info:
        check_options(Example(**change))
    assert str(info.value) == message


def test_values_inside_pass_and_undeclared_fields_are_free():
    check_options(Example())
    check_options(Example(k=1, p=0.0, decay=1.0, nodes="auto", widths=[], free=-5.0))
    check_options(Example(p=0.999, decay=1e-9))
    assert Example().widths is not Example().widths  # a list default is copied per instance


def test_infinity_passes_a_lower_bound_only():
    @dataclass
    class Gate:
        threshold: float = option(1.0, ge=0)  # inf = never

    check_options(Gate(math.inf))
    with pytest.raises(ConfigError, match="got -inf"):
        check_options(Gate(-math.inf))


def test_describe():
    assert Range(ge=1).describe() == ">= 1"
    assert Range(gt=0.0).describe() == "> 0"
    assert Range(le=0.5).describe() == "<= 0.5"
    assert Range(ge=0, le=1).describe() == "in [0, 1]"
    assert Range(choices=("a", "b")).describe() == "one of a, b"


def test_the_table_names_the_key():
    with pytest.raises(ConfigError, match=r"^sampling\.k must be >= 1"):
        check_options(Example(k=0), table="sampling")


# -- every registered decoder, through profiles.build ---------------------------------------------
def _numeric_type(hint: typing.Any) -> type:
    """int or float: the number a field holds (list[int] -> int, int | str -> int)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return _numeric_type(args[0])
    if args:
        return next(a for a in args if a in (int, float))
    return hint


def _outside(declared: Range, number: type) -> list[typing.Any]:
    """Values just outside each bound (and a string outside the choices)."""
    step = 1 if number is int else 1e-6
    values: list[typing.Any] = []
    if declared.ge is not None:
        values.append(number(declared.ge) - step)
    if declared.gt is not None:
        values.append(number(declared.gt))
    if declared.le is not None:
        values.append(number(declared.le) + step)
    if declared.lt is not None:
        values.append(number(declared.lt))
    if number is float and declared.bounded:
        values.append(math.nan)
    if declared.choices is not None:
        values.append("no-such-choice")
    return values


def _cases() -> list[tuple[str, str, typing.Any]]:
    cases = []
    for cls in all_decoders():
        hints = typing.get_type_hints(cls.Options)
        for name, declared in declared_ranges(cls.Options).items():
            number = _numeric_type(hints[name])
            is_list = typing.get_origin(hints[name]) is list
            for value in _outside(declared, number):
                cases.append((cls.spec.name, name, [value] if is_list else value))
    return cases


CASES = _cases()


REQUIRED = {"dllm-dingo": {"regex": "[0-9]+"}}  # options without a usable default


def _profile(method: str, **options: typing.Any):
    table = {"name": method, **REQUIRED.get(method, {}), **options}
    return build({"method": table}, f"method:{method}")


@pytest.mark.parametrize("method", [cls.spec.name for cls in all_decoders()])
def test_every_method_accepts_its_defaults(method):
    profile = _profile(method)
    defaults = type(profile.options)(**REQUIRED.get(method, {}))
    assert dataclasses.asdict(profile.options) == dataclasses.asdict(defaults)


@pytest.mark.parametrize(
    ("method", "key", "value"), CASES, ids=[f"{m}.{k}={v!r}" for m, k, v in CASES]
)
def test_every_declared_bound_rejects_a_value_just_outside(method, key, value):
    with pytest.raises(ConfigError) as info:
        _profile(method, **{key: value})
    text = str(info.value)
    assert text.startswith(f"method:{method}: method.{key}"), text
    assert "must be" in text or "is not one of" in text, text


def test_the_registry_declares_ranges():
    """Guards the parametrisation above against going vacuous."""
    declared = {(m, k) for m, k, _ in CASES}
    expected = {("pld", "k"), ("beam", "width"), ("speculative", "p_min"), ("eagle2", "nodes")}
    assert expected <= declared
    assert ("medusa", "acceptance") in declared and ("rsd", "branches") in declared

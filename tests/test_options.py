"""Declared option ranges (decbench/options.py): one mechanism and one message format,
checked for every registered decoder and every settings table through the profile path a user's
TOML or --set takes, once on each path."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

import pytest

from decbench import profiles
from decbench.decoders.registry import all_decoders
from decbench.errors import ConfigError
from decbench.options import Range, check_options, declared_ranges, option
from decbench.profiles import TABLES, build, load_profile, method_profile


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
    assert Range(choices=("", "a")).describe() == 'one of "", a'  # an empty choice shows


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


# -- the settings tables, through the CLI ---------------------------------------------------------
def _settings_cases() -> list[tuple[str, typing.Any]]:
    """(table.key, a value just outside one of its bounds) for every declared settings range."""
    cases = []
    for table, cls in TABLES.items():
        hints = typing.get_type_hints(cls)
        for name, declared in declared_ranges(cls).items():
            for value in _outside(declared, _numeric_type(hints[name])):
                cases.append((f"{table}.{name}", value))
    return cases


SETTINGS_CASES = _settings_cases()


def test_the_settings_declare_their_ranges():
    """Guards the parametrisation below against going vacuous."""
    declared = {key for key, _ in SETTINGS_CASES}
    sampling = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repetition_penalty")
    expected = {"generation.max_new_tokens", "constraint.kind", "constraint.tokens"}
    assert {*expected, *(f"sampling.{k}" for k in sampling)} <= declared


@pytest.mark.parametrize(
    ("key", "value"), SETTINGS_CASES, ids=[f"{k}={v!r}" for k, v in SETTINGS_CASES]
)
def test_every_settings_bound_refuses_a_value_just_outside_before_loading(
    monkeypatch, capsys, no_loading, key, value
):
    from tests.test_cli import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "generate", "hi", "--set", f"{key}={value!r}")
    assert code == 2, err
    assert f": {key} must be " in err or f": {key}: " in err, err
    assert repr(value) in err, err
    assert err.count("\n") == 1 and err.count("error:") == 1, err  # one line
    assert out == ""


def test_a_profile_file_is_named_with_the_key(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('[method]\nname = "greedy"\n[sampling]\ntypical_p = 0\n')
    with pytest.raises(ConfigError) as info:
        load_profile(str(path))
    assert str(info.value) == f"{path}: sampling.typical_p must be in (0, 1], got 0.0"


# -- one check on each path (where each lives: decbench/options.py) ----------------------------
@pytest.fixture
def checks(monkeypatch) -> list[tuple[str, typing.Any]]:
    """Every check_options call of profiles, run and Decoder.__init__, as (table, value)."""
    from decbench import run
    from decbench.decoders import base

    calls: list[tuple[str, typing.Any]] = []

    def counted(values: typing.Any, table: str = "method") -> None:
        calls.append((table, values))
        check_options(values, table)

    for module in (profiles, run, base):
        monkeypatch.setattr(module, "check_options", counted)
    return calls


def test_a_profile_checks_its_options_once_and_its_decoder_not_again(checks):
    from decbench.run import open_session
    from tests.conftest import runner_for, tiny_llama

    profile = method_profile("pld", [("method", "k", 3)])
    assert [table for table, _ in checks] == ["method", *TABLES]  # profiles.build
    session = open_session(profile, target=runner_for(tiny_llama()))
    assert session.decoder.options is profile.options
    assert len(checks) == 1 + len(TABLES)  # nothing more on the way to the decoder


def test_a_decoder_built_without_a_profile_checks_its_options(checks):
    from decbench.decoders.speculative.prompt_lookup import PromptLookup
    from tests.conftest import no_models_ctx, runner_for, tiny_llama

    runner = runner_for(tiny_llama())
    options = PromptLookup.Options(k=3)
    PromptLookup(runner, options, no_models_ctx())
    assert len(checks) == 1 and checks[0][1] is options
    with pytest.raises(ConfigError, match=r"^method\.k must be >= 1, got 0$"):
        PromptLookup(runner, PromptLookup.Options(k=0), no_models_ctx())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "grid-beam", "--include", "river", "--include", " "], "method.include[1] is empty"),
        (["-m", "dllm-dingo", "--regex", "(ab"], "method.regex '(ab' is not a supported"),
    ],
)
def test_options_a_constraint_is_folded_into_are_checked_before_loading(
    monkeypatch, capsys, no_loading, args, message
):
    from tests.test_cli import run_cli

    code, out, err = run_cli(monkeypatch, capsys, "generate", "hi", *args)
    assert code == 2, err
    assert message in err and err.count("error:") == 1, err
    assert out == ""

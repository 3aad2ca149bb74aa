"""The registry of draft kinds: every kind registers itself, refuses the options of other kinds,
and the trainer and decoders stay apart (decoders import decbench.drafts, never decbench.train)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from decbench.errors import ConfigError
from decbench.train.config import DistillConfig, default
from decbench.train.kinds import KIND_OPTIONS, get_kind, kind_names

ROOT = Path(__file__).resolve().parents[1] / "decbench"


def test_builtin_kinds_registered() -> None:
    assert kind_names() == ("student", "medusa", "eagle")
    for name in kind_names():
        kind = get_kind(name)
        assert kind.name == name
        assert set(kind.options) <= set(KIND_OPTIONS)
        assert kind.marker.endswith(".json")


def test_unknown_kind_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown --kind 'medsa'; did you mean 'medusa'"):
        get_kind("medsa")


@pytest.mark.parametrize(
    ("kind", "setting", "flag"),
    [
        ("student", {"heads": 4}, "--heads"),
        ("student", {"unroll": 2}, "--unroll"),
        ("medusa", {"layers": 3}, "--layers"),
        ("medusa", {"init": "x"}, "--init"),
        ("eagle", {"layers": 3}, "--layers"),
    ],
)
def test_kind_refuses_options_of_other_kinds(kind: str, setting: dict, flag: str) -> None:
    config = DistillConfig(target="t", kind=kind, out=Path("o"), **setting)
    with pytest.raises(ConfigError, match=f"--kind {kind} does not take {flag}"):
        get_kind(kind).check(config)


@pytest.mark.parametrize("kind", ["student", "medusa", "eagle"])
def test_kind_takes_its_own_options(kind: str) -> None:
    cls = get_kind(kind)
    changed = {name: (5 if name != "init" else "x") for name in cls.options}
    assert all(changed[name] != default(name) for name in changed)
    cls.check(DistillConfig(target="t", kind=kind, out=Path("o"), **changed))


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["decoders", "backends", "drafts", "compare"])
def test_inference_code_does_not_import_the_trainer(package: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / package).rglob("*.py")
        if any(
            m == "decbench.train" or m.startswith("decbench.train.") for m in imported_modules(path)
        )
    ]
    assert offenders == []

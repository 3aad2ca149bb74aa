"""The CLI is wiring only: commands share one definition of the profile flags and import nothing
from each other (issue #18, item 4)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import decbench.cli
from decbench.cli import options as o
from decbench.cli.app import app

CLI = Path(decbench.cli.__file__).parent
COMMANDS = {
    "calibrate",
    "compare",
    "distill",
    "generate",
    "methods",
    "models",
    "profile_cmd",
    "profiles",
    "quantize",
    "speed_report",
    "suites",
}


def imported_cli_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "decbench.cli":
                found |= {alias.name for alias in node.names}
            elif node.module.startswith("decbench.cli."):
                found.add(node.module.removeprefix("decbench.cli."))
    return found


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_import_no_other_command(command):
    imported = imported_cli_modules(CLI / f"{command}.py")
    assert not imported & (COMMANDS - {command}), imported


def test_the_checker_sees_a_command_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from decbench.cli.compare import thing\nfrom decbench.cli import generate\n")
    assert imported_cli_modules(bad) == {"compare", "generate"}


FLAGS = {"model", "device", "dtype", "threads", "max_new_tokens", "sets"}


def command_params(name: str) -> set[str]:
    for info in app.registered_commands:
        function = info.callback
        if (info.name or function.__name__.replace("_", "-")) == name:
            return set(inspect.signature(function).parameters)
    raise AssertionError(f"no command {name}")


@pytest.mark.parametrize("name", ["generate", "compare", "profile", "calibrate-entropy"])
def test_running_commands_take_the_shared_profile_flags(name):
    params = command_params(name)
    assert params >= FLAGS
    assert "flags" not in params  # packed by o.profile_flags, not a CLI option


def test_profile_flags_pack_the_values():
    seen = {}

    @o.profile_flags(sampling=False, constraints=False)
    def command(name: str = "x", json_out: o.JsonOpt = False, flags: o.ProfileFlags | None = None):
        seen["flags"] = flags
        seen["name"] = name

    params = list(inspect.signature(command).parameters)
    assert params[0] == "name" and params[-1] == "json_out"
    assert "temperature" not in params and "regex" not in params
    command(name="y", json_out=False, model=None, device=None, dtype=None, threads=2,
            max_new_tokens=None, sets=["method.k=3"])  # fmt: skip
    flags = seen["flags"]
    assert seen["name"] == "y" and flags.given
    assert flags.values["threads"] == 2 and flags.sets == ["method.k=3"]
    built = flags.build("pld", None)
    assert built.backend.threads == 2 and built.options.k == 3
    assert not o.ProfileFlags({"model": None}, []).given

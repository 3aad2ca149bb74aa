"""The CLI end to end: help for every command, bad input → one clear line and the right exit
code, and JSON on stdout with nothing else there."""

from __future__ import annotations

import json
import sys

import pytest
import typer
from typer.testing import CliRunner

from decbench.cli.app import app, main


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["decbench", *args])
    try:
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def command_paths(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for info in group.registered_commands:
        paths.append((*prefix, info.name or info.callback.__name__))
    for sub in group.registered_groups:
        paths += command_paths(sub.typer_instance, (*prefix, sub.name))
    return paths


@pytest.mark.parametrize("path", command_paths(app), ids=lambda p: " ".join(p) or "root")
def test_help_for_every_command(path):
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


BAD_INPUT = [
    (["generate", "hi", "--method", "gredy"], 2, "unknown method 'gredy'; did you mean 'greedy'?"),
    (
        ["generate", "hi", "--method", "pld", "--set", "method.kk=3"],
        2,
        "unknown key 'kk'; did you mean 'k'?",
    ),
    (["generate", "hi", "--set", "sampling.temperature=hot"], 2, "temperature: expected a number"),
    (
        ["generate", "hi", "--set", "smapling.seed=1"],
        2,
        "unknown table 'smapling'; did you mean 'sampling'?",
    ),
    (["generate", "hi", "-n", "0"], 2, "max_new_tokens must be > 0, got 0"),
    (["generate", "hi", "--profile", "no/such.toml"], 2, "no/such.toml: profile not found"),
    (["generate", "hi", "--profile", "pld", "--method", "pld"], 2, "not both"),
    (["generate", "hi", "--device", "tpu"], 2, "'tpu' is not a device"),
    (["generate", "hi", "--dtype", "float8"], 2, "'float8' is not one of"),
    (["generate", "hi", "--model", "nobody/nothing"], 1, "model 'nobody/nothing' is not an alias"),
    (["generate", "hi", "--method", "pld", "--set", "method.k=0"], 2, "method.k must be >= 1"),
    (
        ["generate", "hi", "-m", "speculative", "--set", "method.draft=self:layers=99"],
        2,
        "self:layers=99",
    ),
]


@pytest.mark.model
@pytest.mark.parametrize("args,code,message", BAD_INPUT, ids=lambda v: str(v)[:40])
def test_bad_input_gives_one_clear_line(monkeypatch, capsys, args, code, message):
    got, out, err = run_cli(monkeypatch, capsys, *args)
    assert got == code, err
    assert message in err
    assert err.count("error:") == 1
    assert "Traceback" not in err
    assert out == ""


def test_malformed_toml_names_the_file(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[method\nname = 'greedy'\n")
    code, _, err = run_cli(monkeypatch, capsys, "generate", "hi", "--profile", str(bad))
    assert code == 2
    assert f"{bad}: malformed TOML" in err


def test_empty_prompt_is_refused(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "generate", "   ")
    assert code == 2
    assert "the prompt is empty" in err


@pytest.mark.model
def test_prompt_longer_than_the_context(monkeypatch, capsys, tmp_path):
    long = tmp_path / "long.txt"
    long.write_text("word " * 9000)
    code, _, err = run_cli(monkeypatch, capsys, "generate", f"@{long}")
    assert code == 2
    assert "has a context of 8192 tokens" in err


def test_interrupt_exits_130(monkeypatch, capsys):
    import decbench.cli.generate as generate_module

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "open_session", interrupted)
    code, _, err = run_cli(monkeypatch, capsys, "generate", "hi")
    assert code == 130
    assert "interrupted" in err


def test_debug_shows_the_traceback(monkeypatch, capsys):
    from decbench.errors import ConfigError

    with pytest.raises(ConfigError):
        run_cli(monkeypatch, capsys, "--debug", "generate", "hi", "--method", "gredy")


@pytest.mark.model
def test_generate_json_is_one_document(monkeypatch, capsys):
    code, out, _ = run_cli(
        monkeypatch, capsys, "generate", "Name three colors.", "-n", "12", "--json"
    )
    assert code == 0
    record = json.loads(out)
    assert record["schema"] == "decbench/generation/v1"
    assert record["method"] == "greedy"
    assert len(record["token_ids"]) <= 12
    assert record["finish_reason"] in {"eos", "length"}
    env = record["environment"]
    for key in ("cpu", "threads", "device", "dtype", "torch", "transformers", "decbench", "seed"):
        assert key in env
    assert env["model_fingerprint"].startswith("sha256:")
    assert record["timings"]["tokens_per_s"] > 0


@pytest.mark.model
def test_generate_pld_shows_steps(monkeypatch, capsys):
    text = "Repeat exactly: alpha beta gamma delta alpha beta gamma delta"
    code, out, err = run_cli(
        monkeypatch, capsys, "generate", text, "-m", "pld", "-n", "16", "--show-steps", "3"
    )
    assert code == 0
    assert "first 3 steps" in out
    assert "tok/s" in err


def test_methods_json_lists_parameters_and_losslessness(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "methods", "--json")
    assert code == 0
    methods = {m["name"]: m for m in json.loads(out)["methods"]}
    assert {"greedy", "sample", "pld", "speculative"} <= set(methods)
    assert methods["pld"]["params"] == {"k": 10, "max_ngram": 3, "min_ngram": 1}
    assert methods["pld"]["lossless"] is True
    assert methods["pld"]["ranges"] == {"k": ">= 1", "max_ngram": ">= 1", "min_ngram": ">= 1"}
    assert methods["eagle2"]["ranges"]["nodes"] == ">= 1 or 'auto'"
    assert methods["speculative"]["needs_draft"] and not methods["pld"]["needs_draft"]
    assert all(m["summary"] for m in methods.values())


def test_methods_table_shows_ranges_and_capabilities(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_cli(monkeypatch, capsys, "methods")
    assert code == 0
    assert "p_min = 0.0 (in [0, 1))" in out
    assert "needs a draft model (method.draft)" in out
    assert "drafts trees, with draft probabilities" in out  # spectr, rsd, rsd-s
    assert "drafts chains" in out and "deterministic: temperature 0 only" in out


def test_profiles_list_and_show(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "profiles", "list", "--json")
    assert code == 0
    names = {p["name"] for p in json.loads(out)["profiles"]}
    assert {"greedy", "sample", "pld", "speculative"} <= names
    code, out, _ = run_cli(
        monkeypatch, capsys, "profiles", "show", "pld", "--set", "method.k=4", "--json"
    )
    shown = json.loads(out)
    assert shown["method"]["k"] == 4
    assert shown["model"]["name"] == "smollm2-135m"  # inherited through extends


@pytest.mark.model
def test_models_list_and_path(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "models", "path", "smollm2-135m")
    assert code == 0
    from pathlib import Path

    assert (Path(out.strip()) / "config.json").is_file()
    code, out, _ = run_cli(monkeypatch, capsys, "models", "list", "--json")
    rows = json.loads(out)["models"]
    assert rows[0]["name"] == "smollm2-135m" and rows[0]["path"]

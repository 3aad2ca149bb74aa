"""User files that cannot be read, and damaged cached models: one specific message each, the
usage exit code for bad input, and a damaged conversion of the embedded model healing itself."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from decbench import models
from decbench.errors import ConfigError
from decbench.files import read_text
from tests.test_cli import run_cli

LATIN1 = "café au lait\n".encode("latin-1")


@pytest.mark.parametrize(
    "args,message",
    [
        (["generate", "@{f}"], "prompt file '{f}' is not UTF-8 text (byte 0xe9 at offset 3"),
        (["generate", "hi", "--profile", "{f}"], "profile '{f}' is not UTF-8 text"),
    ],
)
def test_non_utf8_files_name_the_file(monkeypatch, capsys, tmp_path, args, message):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(LATIN1)
    args = [a.format(f=bad) for a in args]
    code, out, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2
    assert message.format(f=bad) in err
    assert "Traceback" not in err and "UnicodeDecodeError" not in err
    assert out == ""


def test_read_text_refuses_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        read_text(tmp_path, f"prompt file '{tmp_path}'")


def write_model_folder(folder):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({"w": torch.zeros(64, 64), "b": torch.ones(64)}, folder / "model.safetensors")


def test_damage_finds_truncated_and_broken_folders(tmp_path):
    folder = tmp_path / "m"
    write_model_folder(folder)
    assert models.damage(folder) is None
    weights = folder / "model.safetensors"
    full = weights.stat().st_size
    with weights.open("r+b") as f:
        f.truncate(full - 10)
    assert models.damage(folder) == f"model.safetensors: truncated: {full - 10} of {full} bytes"
    with weights.open("r+b") as f:
        f.truncate(5)
    assert "shorter than a header" in models.damage(folder)
    weights.write_bytes((10**9).to_bytes(8, "little") + b"{}")
    assert "runs past the end" in models.damage(folder)
    (folder / "config.json").write_text("{")
    assert models.damage(folder).startswith("config.json:")


def test_damaged_embedded_conversion_is_converted_again(monkeypatch, tmp_path):
    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path))
    entry = models.EMBEDDED[models.DEFAULT_MODEL]
    target = models.converted_dir(entry.alias)
    write_model_folder(target)
    (target / models.SOURCE_FILE).write_text("{}")
    with (target / "model.safetensors").open("r+b") as f:
        f.truncate(200)
    converted = []

    def fake_convert(source, out, say):
        converted.append(source)
        write_model_folder(out / "inner")
        for path in (out / "inner").iterdir():
            path.rename(out / path.name)
        (out / models.SOURCE_FILE).write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    monkeypatch.setattr(models, "gguf_path", lambda _e: tmp_path / "model.gguf")
    messages: list[str] = []
    assert models.ensure_embedded(entry, messages.append) == target
    assert converted and models.damage(target) is None
    assert "is damaged (model.safetensors: truncated" in messages[0]
    assert models.ensure_embedded(entry, messages.append) == target
    assert len(converted) == 1  # a sound conversion is kept


@pytest.mark.parametrize(
    "args,message",
    [
        (["--kind", "dlm"], "unknown --kind 'dlm'; did you mean 'dllm'?"),
        (
            ["--kind", "dllm", "--heads", "4", "--resume"],
            "--kind dllm does not take --heads, --resume",
        ),
    ],
)
def test_distill_kind_errors(monkeypatch, capsys, tmp_path, args, message):
    code, _out, err = run_cli(
        monkeypatch, capsys, "distill", "smollm2-135m", "-o", str(tmp_path), *args
    )
    assert code == 2
    assert message in err


def test_distill_dllm_is_accepted(monkeypatch, capsys, tmp_path):
    from decbench.cli import distill

    seen = []
    monkeypatch.setattr(distill, "distill_dllm", lambda *a: seen.append(a))
    code, _, err = run_cli(
        monkeypatch, capsys, "distill", "smollm2-135m", "--kind", "dllm", "-o", str(tmp_path)
    )
    assert code == 0, err
    assert len(seen) == 1

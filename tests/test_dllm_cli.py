"""The canvas view of `generate --show-steps` and the dllm-* methods end to end through the CLI
(on a tiny random denoiser that uses the default model's tokenizer)."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console
from transformers import LlamaConfig, LlamaForCausalLM

from decbench.cli.canvas_render import canvas_steps, dllm_line
from tests.dllm_fixtures import decode, dllm_runner
from tests.test_cli import run_cli


def render(table) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_canvas_view_replays_the_trace():
    result = decode(dllm_runner(sharp=6.0), "dllm-confidence", [3, 4], n=6, block_length=3)
    text = render(canvas_steps(result, None, 3))
    lines = [line for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert len(lines) == 3
    assert lines[0].count("▒") == 5 and lines[2].count("▒") == 3  # one position per forward
    first = result.steps[0].canvas
    assert f"[<{first.tokens[0]}>]" in lines[0]
    assert "6 denoiser forwards" in dllm_line(result).plain


@pytest.fixture(scope="module")
def tiny_dllm_folder(tmp_path_factory):
    """A random 2-layer denoiser with SmolLM2's vocabulary and tokenizer, saved as a folder."""
    from transformers import AutoTokenizer

    from decbench.models import DEFAULT_MODEL, resolve

    tokenizer = AutoTokenizer.from_pretrained(resolve(DEFAULT_MODEL))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.config.decbench_dllm = {"mask_token_id": 16, "shift": True}
    folder = tmp_path_factory.mktemp("dllm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.model
@pytest.mark.parametrize("method", ["dllm-confidence", "dllm-freedave", "dllm-threshold"])
def test_generate_shows_the_canvas(monkeypatch, capsys, tiny_dllm_folder, method):
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "Name a color.",
        "--method",
        method,
        "--model",
        str(tiny_dllm_folder),
        "--max-new-tokens",
        "8",
        "--show-steps",
        "3",
        "--threads",
        "1",
    )
    assert code == 0, err
    assert "denoiser steps" in out and "▒" in out
    assert "denoiser forwards" in err


@pytest.mark.model
def test_generate_json_carries_dllm_stats(monkeypatch, capsys, tiny_dllm_folder):
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "Hi",
        "--method",
        "dllm-prophet",
        "--json",
        "--model",
        str(tiny_dllm_folder),
        "--max-new-tokens",
        "8",
        "--threads",
        "1",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["stats"]["dllm"]["canvas_length"] == 8
    assert data["steps"][0]["canvas"]["positions"]


@pytest.mark.model
def test_default_model_is_refused_with_a_clear_message(monkeypatch, capsys):
    code, _out, err = run_cli(
        monkeypatch,
        capsys,
        "generate",
        "Hi",
        "--method",
        "dllm-confidence",
        "--model",
        "smollm2-135m",
        "--max-new-tokens",
        "4",
    )
    assert code == 2
    assert "not a masked-diffusion model" in err


def test_quality_agreement_of_a_dllm_method_is_against_the_reference_decoding(
    monkeypatch, capsys, tiny_dllm_folder
):
    """--quality on a lossy dllm-* method compares with dllm-confidence (same block length), not
    with autoregressive greedy; threshold 1.0 unmasks one position per step, i.e. the reference."""
    args = ["generate", "Hi", "--model", str(tiny_dllm_folder), "-n", "8", "--threads", "1"]
    extra = ["--quality", "--json", "-m", "dllm-threshold", "--set", "method.cache=none"]
    code, out, err = run_cli(monkeypatch, capsys, *args, *extra, "--set", "method.threshold=1.0")
    assert code == 0, err
    quality = json.loads(out)["quality"]
    assert quality["agreement_reference"] == "dllm-confidence"
    assert quality["first_divergence"] is None


def test_compare_sweeps_a_knob_on_the_parallel_suite_and_plots_the_tradeoff(
    monkeypatch, capsys, tiny_dllm_folder, tmp_path
):
    """compare --sweep makes one column per knob value, every column reports exact-answer
    accuracy and forwards per token, and --plot draws accuracy against forwards."""
    pytest.importorskip("matplotlib")
    plot = tmp_path / "dllm.png"
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "compare",
        "dllm-confidence",
        "dllm-threshold",
        "--suite",
        "parallel",
        "--limit",
        "2",
        "--model",
        str(tiny_dllm_folder),
        "-n",
        "8",
        "--threads",
        "1",
        "--sweep",
        "method.threshold=0.0,1.0",
        "--set",
        "method.block_length=8",
        "--json",
        "--plot",
        str(plot),
    )
    assert code == 0, err
    summary = json.loads(out)
    labels = [p["label"] for p in summary["profiles"]]
    assert labels == [
        "dllm-confidence",
        "dllm-threshold[threshold=0.0]",
        "dllm-threshold[threshold=1.0]",
    ]
    overall = {k: v["overall"] for k, v in summary["results"].items()}
    for label in labels:
        assert 0.0 <= overall[label]["quality"]["exact_answer"] <= 1.0
    fast = overall["dllm-threshold[threshold=0.0]"]["forward_calls_per_token"]
    assert fast < overall["dllm-threshold[threshold=1.0]"]["forward_calls_per_token"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

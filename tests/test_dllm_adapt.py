"""The AR-to-dLLM recipe on tiny models: the architecture keeps the AR weights, the masked
diffusion objective trains, and the written folder loads back as a denoiser."""

from __future__ import annotations

import json

import pytest
import torch

from decbench.diffusion.adapt import (
    AdaptConfig,
    AdaptReport,
    Example,
    collate,
    masked_diffusion_loss,
    train,
    write_model,
)
from decbench.diffusion.model import dllm_from_ar
from decbench.diffusion.runner import dllm_info
from decbench.errors import ConfigError
from tests.conftest import tiny_llama
from tests.dllm_fixtures import MASK, decode


def test_dllm_from_ar_keeps_the_first_layers_and_marks_the_config():
    ar = tiny_llama(layers=4)
    model = dllm_from_ar(ar, MASK, layers=2, source="tiny")
    assert len(model.model.layers) == 2 and model.config.num_hidden_layers == 2
    assert torch.equal(
        model.model.layers[1].mlp.up_proj.weight, ar.model.layers[1].mlp.up_proj.weight
    )
    assert len(ar.model.layers) == 4  # the AR model is untouched
    info = dllm_info(model.config)
    assert (info.kind, info.mask_token_id, info.shift) == ("decbench", MASK, True)
    with pytest.raises(ConfigError, match="layers"):
        dllm_from_ar(ar, MASK, layers=9)


def test_collate_left_pads_prompts():
    ids, real, start = collate([Example([5, 6, 7], [8, 9]), Example([4], [3, 2])], pad=0)
    assert start == 3
    assert ids.tolist() == [[5, 6, 7, 8, 9], [0, 0, 4, 3, 2]]
    assert real.tolist()[1] == [False, False, True, True, True]


def test_masked_diffusion_objective_trains_a_denoiser():
    """A few steps on a fixed answer drive the loss down, and the reference decoding of the
    trained denoiser then reproduces that answer."""
    torch.manual_seed(0)
    model = dllm_from_ar(tiny_llama(), MASK)
    answer = [10, 11, 12, 13, 14, 15, 1, 1]
    examples = [Example([3, 4, 5], answer), Example([6, 3], answer)]

    def loss() -> float:
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            return sum(
                masked_diffusion_loss(model, examples, MASK, generator).item() for _ in range(8)
            )

    before = loss()
    config = AdaptConfig(out="", steps=80, batch=2, lr=1e-2)
    with torch.enable_grad():
        losses = train(model, examples, MASK, config, lambda _m: None)
    assert len(losses) == 10
    assert loss() < before / 4
    from tests.conftest import runner_for

    result = decode(runner_for(model), "dllm-confidence", [3, 4, 5], n=8, block_length=4)
    assert result.token_ids == answer[:7]  # stops at the first EOS (1)


def test_written_folder_loads_as_a_denoiser(tmp_path):
    from transformers import AutoModelForCausalLM

    class NoTokenizer:
        def save_pretrained(self, folder):
            (folder / "tokenizer.json").write_text("{}")

    model = dllm_from_ar(tiny_llama(), MASK)
    report = AdaptReport(config={"steps": 1}, examples=2, data_s=1.0, train_s=2.0, losses=[3.0])
    out = tmp_path / "dllm"
    write_model(model, NoTokenizer(), out, report)
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert dllm_info(loaded.config).mask_token_id == MASK
    assert json.loads((out / "decbench-dllm.json").read_text())["train_s"] == 2.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.model
def test_adapt_end_to_end_on_the_default_model(tmp_path):
    """The whole recipe at toy size: data from the AR model, one step on one layer, a loadable
    denoiser folder with its record (the real recipe: `make dllm`)."""
    from decbench.diffusion.adapt import adapt

    out = tmp_path / "dllm"
    config = AdaptConfig(out=str(out), layers=1, steps=1, batch=1, prompts=2, answer_tokens=4)
    report = adapt(config)
    assert report.examples == 2 and len(report.losses) == 1
    assert set(report.samples) and all(isinstance(v, str) for v in report.samples.values())
    record = json.loads((out / "decbench-dllm.json").read_text())
    assert record["config"]["layers"] == 1
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.num_hidden_layers == 1
    assert dllm_info(loaded.config).mask_token_id == 16  # <empty_output>
    assert list(tmp_path.glob(".dllm-data-*.jsonl"))  # the answers are cached for reruns

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
    heldout_loss,
    masked_diffusion_loss,
    train,
    write_model,
)
from decbench.diffusion.model import dllm_from_ar
from decbench.diffusion.recipe import annealed, attention_bias, draw_masks
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
        losses = train(model, examples, MASK, config, lambda _m: None).losses
    assert len(losses) == 10
    assert loss() < before / 4
    from tests.conftest import runner_for

    result = decode(runner_for(model), "dllm-confidence", [3, 4, 5], n=8, block_length=4)
    assert result.token_ids == answer[:7]  # stops at the first EOS (1)


class _NoTokenizer:
    def save_pretrained(self, folder):
        (folder / "tokenizer.json").write_text("{}")


def test_written_folder_loads_as_a_denoiser(tmp_path):
    from transformers import AutoModelForCausalLM

    model = dllm_from_ar(tiny_llama(), MASK)
    report = AdaptReport(config={"steps": 1}, examples=2, data_s=1.0, train_s=2.0, losses=[3.0])
    out = tmp_path / "dllm"
    write_model(model, _NoTokenizer(), out, report)
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
    config = AdaptConfig(out=str(out), layers=1, steps=1, batch=2, prompts=2, answer_tokens=4)
    report = adapt(config)
    assert report.examples == 2 and len(report.losses) == 1 and report.data_sha256
    assert set(report.samples) and all(isinstance(v, str) for v in report.samples.values())
    record = json.loads((out / "decbench-dllm.json").read_text())
    assert record["config"]["layers"] == 1
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.num_hidden_layers == 1
    assert dllm_info(loaded.config).mask_token_id == 16  # <empty_output>
    assert not list(tmp_path.glob(".*checkpoint*"))  # removed once the model is written


def toy_examples() -> list[Example]:
    """A toy task: the answer copies the prompt's tokens (needs the prompt, in any order)."""
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(16):
        prompt = torch.randint(2, 40, (4,), generator=g).tolist()
        out.append(Example([5, *prompt], [*prompt, 1, 1]))
    return out


@pytest.mark.parametrize("anneal,complementary", [(0.0, False), (0.3, True)])
def test_the_recipe_converges_on_a_toy_task_in_seconds(anneal, complementary):
    """Masked diffusion, with and without annealing and complementary masks, learns a copy
    task on a tiny model: the loss on the task falls by 5x."""
    torch.manual_seed(0)
    model = dllm_from_ar(tiny_llama(), MASK)
    examples = toy_examples()
    config = AdaptConfig(
        out="", steps=300, batch=8, lr=5e-3, anneal=anneal, complementary=complementary
    )
    before = heldout_loss(model, examples, MASK, config)
    with torch.enable_grad():
        state = train(model, examples, MASK, config, lambda _m: None)
    assert heldout_loss(model, examples, MASK, config) < before / 5
    assert state.step == 300 and state.losses[-1] < state.losses[0]


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    """Stop after 7 steps (a checkpoint every 5), resume: the weights equal those of an
    uninterrupted run. Per-step generators make the draws independent of the interruption."""
    examples = toy_examples()

    def run(out, stop_after=None, resume=False):
        torch.manual_seed(0)
        model = dllm_from_ar(tiny_llama(), MASK)
        config = AdaptConfig(
            out=str(out), steps=12, batch=4, lr=1e-3, checkpoint_every=5, resume=resume
        )
        if resume:
            model = dllm_from_ar(tiny_llama(seed=5), MASK)
        with torch.enable_grad():
            state = train(model, examples, MASK, config, lambda _m: None, stop_after=stop_after)
        return model, state

    whole, _ = run(tmp_path / "a")
    run(tmp_path / "b", stop_after=7)  # interrupted at step 7: the last checkpoint is step 5
    with pytest.raises(ConfigError, match="--resume"):
        run(tmp_path / "b")
    resumed, state = run(tmp_path / "b", resume=True)
    assert state.step == 12
    for (name, a), (_, b) in zip(
        whole.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    examples = toy_examples()
    model = dllm_from_ar(tiny_llama(), MASK)
    config = AdaptConfig(out=str(tmp_path / "m"), steps=4, batch=4, checkpoint_every=2)
    with torch.enable_grad():
        train(model, examples, MASK, config, lambda _m: None, stop_after=2)
    config = AdaptConfig(out=str(tmp_path / "m"), steps=4, batch=4, lr=1.0, resume=True)
    with pytest.raises(ConfigError, match="lr"):
        train(model, examples, MASK, config, lambda _m: None)


def test_a_model_built_with_the_same_settings_is_not_built_again(tmp_path, monkeypatch):
    """`make dllm` twice builds once: a folder whose record has the same trained settings is
    returned as is, with nothing loaded; other settings, a pending checkpoint or --force
    rebuild (here: reach the loading of the base model)."""
    from dataclasses import asdict

    from decbench.backends import loader
    from decbench.diffusion.adapt import adapt, checkpoint_path

    def load_runner(*_args):
        raise ConfigError("rebuilding")

    monkeypatch.setattr(loader, "load_runner", load_runner)
    out = tmp_path / "dllm"
    config = AdaptConfig(out=str(out), steps=3, threads=2)
    stored = AdaptReport(config=asdict(config), examples=5, data_s=1.0, train_s=9.0)
    write_model(dllm_from_ar(tiny_llama(), MASK), _NoTokenizer(), out, stored)
    said = []
    again = AdaptConfig(out=str(out), steps=3, threads=1, resume=True)
    assert adapt(again, said.append).train_s == 9.0  # threads and resume change nothing trained
    assert "already holds" in said[0]
    for other in (
        AdaptConfig(out=str(out), steps=4),
        AdaptConfig(out=str(out), steps=3, force=True),
    ):
        with pytest.raises(ConfigError, match="rebuilding"):
            adapt(other)
    checkpoint_path(str(out)).write_bytes(b"")
    with pytest.raises(ConfigError, match="rebuilding"):
        adapt(again)


def test_complementary_masks_cover_every_token_once():
    masked, t = draw_masks(6, 10, torch.Generator().manual_seed(0), 0.05, complementary=True)
    first, second = masked[:3], masked[3:]
    assert torch.equal(first ^ second, torch.ones(3, 10, dtype=torch.bool))
    assert torch.allclose(t[:3] + t[3:], torch.ones(3, 1))


def test_attention_annealing_opens_the_future_gradually():
    real = torch.ones(2, 6, dtype=torch.bool)
    real[1, 0] = False  # left padding
    g = torch.Generator().manual_seed(0)
    causal = attention_bias(real, 0.0, g) == 0  # visible entries
    assert torch.equal(causal[0, 0], torch.ones(6, 6, dtype=torch.bool).tril())
    assert not causal[1, 0, :, 0].any()  # padding stays hidden
    full = attention_bias(real, 1.0, g) == 0
    assert full[0, 0].all()
    half = (attention_bias(torch.ones(8, 40, dtype=torch.bool), 0.5, g) == 0).float()
    future = torch.ones(40, 40).triu(1).bool()
    assert 0.4 < half[:, 0][:, future].mean() < 0.6
    assert annealed(0, 100, 0.2) == 0.0 and annealed(10, 100, 0.2) == 0.5
    assert annealed(50, 100, 0.2) == 1.0 and annealed(0, 100, 0.0) == 1.0


def test_bad_settings_are_one_line_errors():
    from decbench.diffusion.adapt import check_config

    with pytest.raises(ConfigError, match="even"):
        check_config(AdaptConfig(out="x", batch=3))
    with pytest.raises(ConfigError, match="anneal"):
        check_config(AdaptConfig(out="x", anneal=2.0))
    with pytest.raises(ConfigError, match="device"):
        check_config(AdaptConfig(out="x", device="tpu"))


def test_adaptation_prompts_mix_the_sources_and_leave_the_suites_out():
    from decbench.diffusion.adapt_data import EASY_PROMPTS, prompt_texts
    from decbench.suites import get_suite
    from decbench.suites.parallel import training_items

    texts = prompt_texts(1000)
    assert len(texts) == len(set(texts)) and 900 <= len(texts) <= 1000
    suites = {s.turns[0] for name in ("all", "parallel") for s in get_suite(name).samples}
    assert not suites & set(texts)
    tasks = {p for p, _ in training_items(400)}
    assert 350 <= len(tasks & set(texts)) <= 400 and set(EASY_PROMPTS) <= set(texts)
    first = texts[:100]  # any stretch mixes the kinds
    assert 20 <= len(tasks & set(first)) <= 60

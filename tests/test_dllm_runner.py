"""The denoiser interface: really bidirectional, recognised from the config, and Fast-dLLM's
block cache exact at the state it was built from."""

from __future__ import annotations

import pytest
import torch

from decbench.diffusion.runner import DiffusionRunner, dllm_info
from decbench.errors import ConfigError
from tests.conftest import runner_for, tiny_llama
from tests.dllm_fixtures import MASK, tiny_dllm


def canvas(n_prompt: int = 5, n_gen: int = 12) -> torch.Tensor:
    return torch.tensor([list(range(2, 2 + n_prompt)) + [MASK] * n_gen])


@pytest.mark.parametrize("shift", [True, False])
def test_attention_is_bidirectional(shift):
    """Changing the last canvas token changes the logits of the first generated position; the
    same model run causally (no 4D mask) would not see it."""
    model = tiny_dllm(shift=shift)
    denoiser = DiffusionRunner(model, dllm_info(model.config))
    ids = canvas()
    later = ids.clone()
    later[0, -1] = 7
    a, b = denoiser.denoise(ids, 5), denoiser.denoise(later, 5)
    assert a.shape == (1, 12, model.config.vocab_size)
    assert (a[0, 0, :MASK] - b[0, 0, :MASK]).abs().max() > 1e-4
    causal_a, causal_b = model(ids).logits, model(later).logits
    assert torch.equal(causal_a[0, :5], causal_b[0, :5])


def test_shift_aligns_logits_with_the_position_before():
    model = tiny_dllm(shift=True)
    denoiser = DiffusionRunner(model, dllm_info(model.config))
    ids = canvas()
    full = model(ids, attention_mask=torch.zeros(1, 1, 17, 17)).logits
    got = denoiser.denoise(ids, 5)[0]
    assert torch.allclose(got[:, :MASK], full[0, 4:16, :MASK], atol=1e-6)
    assert torch.isinf(got[:, MASK]).all()  # a denoiser never places the mask token


def test_plain_causal_lm_is_refused():
    with pytest.raises(ConfigError, match="not a masked-diffusion model"):
        DiffusionRunner.wrap(runner_for(tiny_llama()))


def test_known_hf_dllms_are_recognised():
    class Cfg:
        model_type = "llada"

    info = dllm_info(Cfg())
    assert (info.kind, info.mask_token_id, info.shift, info.supports_cache) == (
        "llada",
        126336,
        False,
        False,
    )
    Cfg.model_type, Cfg.mask_token_id = "Dream", 151666
    assert dllm_info(Cfg()).shift is True


def test_marker_survives_save_and_load(tmp_path):
    from transformers import AutoModelForCausalLM

    tiny_dllm().save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert dllm_info(loaded.config).mask_token_id == MASK


@pytest.mark.parametrize("mode", ["prefix", "dual"])
@pytest.mark.parametrize("shift", [True, False])
def test_block_cache_is_exact_at_the_state_it_was_built_from(mode, shift):
    """begin_block is the full forward; a step on the unchanged canvas through the cache gives
    the same logits (positions, mask and cache surgery are right); after the canvas changes,
    the cached prefix is stale, which is Fast-dLLM's approximation."""
    model = tiny_dllm(shift=shift)
    denoiser = DiffusionRunner(model, dllm_info(model.config))
    ids = canvas(n_gen=16)
    full = denoiser.denoise(ids, 5)[0, 4:8]
    first = denoiser.begin_block(ids, 9, 13, mode)[0]
    assert torch.equal(first, full)
    again = denoiser.step_block(ids)[0]
    assert torch.allclose(again, full, atol=1e-5)
    changed = ids.clone()
    changed[0, 9] = 3
    step = denoiser.step_block(changed)[0]
    exact = denoiser.denoise(changed, 5)[0, 4:8]
    assert step.shape == exact.shape
    assert not torch.allclose(step, exact, atol=1e-5)  # the stale cache really was used
    assert denoiser.forward_calls == 5


def test_cache_is_refused_for_models_without_it():
    class Cfg:
        model_type = "llada"

    denoiser = DiffusionRunner(tiny_llama(), dllm_info(Cfg()))
    with pytest.raises(ConfigError, match="cache = 'none'"):
        denoiser.begin_block(canvas(), 6, 8, "prefix")

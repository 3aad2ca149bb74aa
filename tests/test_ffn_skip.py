"""FFN-SkipLLM: nothing skipped at threshold 1 (token-identical to greedy), the skip rule's
counts (warm-up, cold regions, the per-token cap), real savings in FFN calls, and the model
put back afterwards, also after an error."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.ffn_skip import FFNGate, FFNSkip, FFNSkipOptions, SkipPolicy, skipping
from decbench.errors import ConfigError
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)

PROMPT = [3, 4, 5, 6, 7, 3, 4]


def tiny_target(family: str, layers: int = 6):
    make = tiny_qwen2 if family == "qwen2" else tiny_llama
    return runner_for(make(seed=0, layers=layers))


def ffn_calls(model) -> list[int]:
    """Counts calls of each original FFN module (hooks the test removes itself)."""
    calls = [0] * len(model.model.layers)
    for i, layer in enumerate(model.model.layers):
        layer.mlp.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    return calls


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_threshold_one_skips_nothing_and_equals_greedy(family):
    target = tiny_target(family)
    options = FFNSkipOptions(threshold=1.0, warmup_tokens=0, keep_first=0, keep_last=0)
    result = FFNSkip(target, options, no_models_ctx()).generate(make_request(PROMPT, 16))
    assert result.token_ids == greedy_ids(target, PROMPT, 16)
    assert result.stats["ffn_skipped"] == [0] * 15 and result.stats["ffn_skip_share"] == 0


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_low_threshold_skips_after_warmup_inside_the_region(family):
    """6 layers, region 1..4: layer 1 saturates at threshold 0, so layers 2..4 would be skipped,
    capped at floor(0.4 * 6) = 2 per token; the prefill and 3 warm-up tokens run in full."""
    target = tiny_target(family)
    calls = ffn_calls(target.model)
    options = FFNSkipOptions(
        threshold=0.0, warmup_tokens=3, keep_first=1, keep_last=1, max_skip_fraction=0.4
    )
    result = FFNSkip(target, options, no_models_ctx()).generate(make_request(PROMPT, 12))
    skipped = result.stats["ffn_skipped"]
    assert skipped == [0, 0] + [2] * 9  # forwards 1, 2 are warm-up; the prefill is not listed
    assert result.stats["ffn_skipped_per_token"] == pytest.approx(18 / 11)
    forwards = 1 + len(skipped)
    assert calls == [forwards] * 2 + [forwards - 9] * 2 + [forwards] * 2  # layers 2, 3 skipped


def test_skips_change_the_output():
    """Lossy: on this model the skipped blocks change the tokens (the test is not vacuous)."""
    target = tiny_target("llama")
    options = FFNSkipOptions(threshold=0.0, warmup_tokens=1, keep_first=1, keep_last=1)
    result = FFNSkip(target, options, no_models_ctx()).generate(make_request(PROMPT, 12))
    assert result.token_ids != greedy_ids(target, PROMPT, 12)


def test_skip_policy_counts_only_after_saturation():
    policy = SkipPolicy(
        FFNSkipOptions(threshold=0.5, warmup_tokens=0, keep_first=0, keep_last=0), 4
    )
    policy.begin_forward()  # the prefill: never skips
    policy.begin_forward()
    identity = torch.nn.Identity()
    x = torch.ones(1, 1, 8)
    policy.residual = -x  # h + FFN(h) = 0: similarity 0, not saturated
    assert torch.equal(policy.run(0, identity, x), x) and not policy.saturated
    policy.residual = x  # h + FFN(h) = 2h: similarity 1
    policy.run(1, identity, x)
    assert policy.saturated and torch.equal(policy.run(2, identity, x), torch.zeros_like(x))
    assert policy.skipped == [1]


def test_model_is_restored_even_after_an_error():
    model = tiny_llama(seed=0, layers=3)
    originals = [layer.mlp for layer in model.model.layers]
    policy = SkipPolicy(FFNSkipOptions(), 3)
    with pytest.raises(RuntimeError), skipping(model, policy):
        assert isinstance(model.model.layers[0].mlp, FFNGate)
        raise RuntimeError("boom")
    assert [layer.mlp for layer in model.model.layers] == originals
    assert not model._forward_pre_hooks
    assert all(
        not layer.post_attention_layernorm._forward_pre_hooks for layer in model.model.layers
    )


def test_generate_restores_the_model():
    target = tiny_target("llama")
    originals = [layer.mlp for layer in target.model.model.layers]
    options = FFNSkipOptions(threshold=0.0, warmup_tokens=0, keep_first=1, keep_last=1)
    FFNSkip(target, options, no_models_ctx()).generate(make_request(PROMPT, 6))
    assert [layer.mlp for layer in target.model.model.layers] == originals
    assert greedy_ids(target, PROMPT, 6) == greedy_ids(tiny_target("llama"), PROMPT, 6)


@pytest.mark.parametrize(
    "bad", [{"warmup_tokens": -1}, {"keep_last": -2}, {"max_skip_fraction": 1.5}]
)
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        FFNSkip(tiny_target("llama"), FFNSkipOptions(**bad), no_models_ctx())

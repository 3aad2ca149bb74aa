"""DEL with Kangaroo's stop: token-identical to greedy, the tokens-per-layer choice, and the
per-layer acceptance probe (it must find the layer that agrees with the target)."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.speculative.dynamic_exit import (
    DynamicExit,
    DynamicExitOptions,
    choose_exit,
    default_exits,
    tokens_per_layer,
)
from decbench.errors import ConfigError
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    repetitive_prompts,
    runner_for,
    tiny_llama,
)


@pytest.mark.parametrize("stop_below", [0.0, 0.3, 0.9])
def test_del_equals_greedy(tiny_runner, stop_below):
    options = DynamicExitOptions(k_max=4, stop_below=stop_below, probe_every=1)
    decoder = DynamicExit(tiny_runner, options, no_models_ctx())
    for prompt in repetitive_prompts(3):
        result = decoder.generate(make_request(prompt, 20))
        assert result.token_ids == greedy_ids(tiny_runner, prompt, 20)


def test_del_equals_greedy_on_a_deeper_model_with_several_exits():
    target = runner_for(tiny_llama(seed=2, layers=5))
    options = DynamicExitOptions(exits=[1, 2, 3, 4], k_max=5, stop_below=0.0, probe_every=1)
    decoder = DynamicExit(target, options, no_models_ctx())
    for prompt in repetitive_prompts(4):
        result = decoder.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(target, prompt, 24)
    # the hooks are gone afterwards: nothing holds on to the layers
    assert all(not layer._forward_hooks for layer in target.model.model.layers)


def test_tokens_per_layer_prefers_cheap_layers_that_agree():
    n = 30
    assert choose_exit({6: 0.8, 20: 0.85}, 6, n)[0] == 6  # nearly as good, far cheaper
    assert choose_exit({6: 0.1, 20: 0.95}, 6, n)[0] == 20  # the cheap layer is useless
    _, gamma = choose_exit({10: 0.9}, 8, n)
    assert gamma > 1  # a layer that agrees earns a longer draft
    assert choose_exit({6: 0.01, 20: 0.05}, 6, n)[1] == 0  # drafting would not pay: plain step
    assert tokens_per_layer(0.9, 3, 10, n) > tokens_per_layer(0.2, 3, 10, n)
    assert default_exits(30) == [3, 6, 9, 12, 15, 18] and default_exits(2) == [1]


def test_probe_learns_which_layer_agrees():
    """Make layer 2 of 3 an exact shortcut (layer 3 adds nothing): its acceptance must come out
    higher than layer 1's, and the proposer must move to it."""
    model = tiny_llama(seed=4, layers=3)
    with torch.no_grad():
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    target = runner_for(model)
    options = DynamicExitOptions(exits=[1, 2], k_max=4, stop_below=0.0, probe_every=1)
    from decbench.decoders.speculative.dynamic_exit import DynamicExitProposer
    from decbench.decoders.speculative.engine import run_speculative

    proposer = DynamicExitProposer(target, options, [1, 2])
    prompt = repetitive_prompts(1)[0]
    result = run_speculative("del", options, target, proposer, make_request(prompt, 40))
    proposer.close()
    alpha = proposer.alpha()
    assert alpha[2] > 0.9 and alpha[2] > alpha[1]
    assert proposer.exit_layer == 2
    assert result.token_ids == greedy_ids(target, prompt, 40)


def test_bad_exits_are_config_errors(tiny_runner):
    with pytest.raises(ConfigError, match="exits"):
        DynamicExit(tiny_runner, DynamicExitOptions(exits=[5]), no_models_ctx())

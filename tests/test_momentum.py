"""Momentum decoding: zero resistance is greedy, the graph measures repeated walks as written
by hand, the resistance functions have the authors' shapes, one forward per token."""

from __future__ import annotations

import math

import pytest
import torch

from decbench.decoders.greedy import Greedy
from decbench.decoders.momentum import (
    MomentumDecoding,
    MomentumOptions,
    TokenGraph,
    momentum_choice,
    resistance_function,
)
from decbench.errors import ConfigError
from decbench.metrics.quality import rep_n
from decbench.settings import SamplingSettings
from tests.conftest import greedy_ids, make_request, no_models_ctx, repetitive_prompts

PROMPTS = [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 40)), *repetitive_prompts(3)]


def momentum(runner, **options):
    return MomentumDecoding(runner, MomentumOptions(**options), no_models_ctx())


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize(
    "options", [{"alpha": 0.0}, {"resistance": "none"}, {"alpha": 0.0, "k": 1}]
)
def test_zero_resistance_is_greedy(tiny_runner, prompt, options):
    result = momentum(tiny_runner, **options).generate(make_request(prompt, 30))
    assert result.token_ids == greedy_ids(tiny_runner, prompt, 30)
    assert result.stats["greedy_ratio"] == 1.0


def test_zero_resistance_is_greedy_under_a_repetition_penalty(tiny_runner):
    sampling = SamplingSettings(repetition_penalty=1.3)
    request = make_request([5, 9, 11, 4], max_new_tokens=30, sampling=sampling)
    got = momentum(tiny_runner, alpha=0.0).generate(request).token_ids
    assert got == greedy_ids(
        tiny_runner, [5, 9, 11, 4], 30, SamplingSettings(repetition_penalty=1.3)
    )


def test_repetition_length_by_hand():
    graph = TokenGraph([1, 2, 3, 1, 2], max_n=5)
    assert graph.repetition_length(9) == 0  # a new node
    assert graph.repetition_length(3) == 3  # ... 1 2 -> 3 repeats the walk 1 2 3
    assert graph.repetition_length(1) == 1  # 1 is known, but 2 -> 1 was never taken
    assert graph.repetition_length(2) == 1  # 2 -> 2 was never taken
    graph.visit(3)  # tokens 1 2 3 1 2 3
    assert graph.repetition_length(1) == 4  # 1 2 3 1 again
    capped = TokenGraph([1, 2, 3, 1, 2], max_n=2)
    assert capped.repetition_length(3) == 2  # never measured past max_n


def test_resistance_functions_have_the_authors_shapes():
    def r(name, length, **kw):
        return resistance_function(MomentumOptions(resistance=name, **kw))(length)

    assert r("linear", 3) == 3.0
    assert r("log", 5) == pytest.approx(math.log(6, 6) / 0.2)  # log_6(1 + 5) / 0.2 = 5
    assert r("exp", 2) == pytest.approx(1.5**2 / 2)
    assert r("constant", 4) == 2.0
    assert r("none", 4) == 0.0
    assert r("table", 2, table=[0.0, 1.5]) == 1.5
    assert r("table", 3, table=[0.0, 1.5]) == math.inf  # past the table: blocked


def test_momentum_choice_by_hand():
    probs = torch.tensor([0.5, 0.3, 0.2])
    linear = resistance_function(MomentumOptions())
    # scores: 0.5 - 0.2*3 = -0.1 ; 0.3 (new node) ; 0.2 - 0.2*1 = 0.0
    assert momentum_choice(probs, [3, 0, 1], 0.2, linear) == 1
    assert momentum_choice(probs, [3, 0, 1], 0.0, linear) == 0
    blocked = resistance_function(MomentumOptions(resistance="table", table=[]))
    assert momentum_choice(probs, [1, 2, 3], 0.2, blocked) == 0  # all blocked: most probable


def test_resistance_lowers_repetition(tiny_runner):
    greedy_rep = momentum_rep = 0.0
    for prompt in PROMPTS:
        greedy_rep += rep_n(greedy_ids(tiny_runner, prompt, 40), 2)
        result = momentum(tiny_runner).generate(make_request(prompt, 40))
        momentum_rep += rep_n(result.token_ids, 2)
        assert 0.0 < result.stats["greedy_ratio"] <= 1.0
    assert momentum_rep < greedy_rep


def test_one_forward_per_token_like_greedy(tiny_runner):
    request = make_request([3, 4, 5], max_new_tokens=12)
    result = momentum(tiny_runner).generate(request)
    momentum_calls = tiny_runner.forward_calls
    Greedy(tiny_runner, Greedy.Options(), no_models_ctx()).generate(request)
    assert momentum_calls == tiny_runner.forward_calls == len(result.token_ids)


def test_refuses_bad_options(tiny_runner):
    with pytest.raises(
        ConfigError, match=r"method\.resistance: 'lineer' is not one .*did you mean 'linear'"
    ):
        momentum(tiny_runner, resistance="lineer")
    with pytest.raises(ConfigError, match=r"method\.alpha"):
        momentum(tiny_runner, alpha=-1.0)
    with pytest.raises(ConfigError, match=r"method\.max_ngram"):
        momentum(tiny_runner, max_ngram=0)
    with pytest.raises(ConfigError, match=r"method\.table"):
        momentum(tiny_runner, resistance="table", table=[-1.0])


def test_profile_and_spec():
    from decbench.profiles import load_profile

    profile = load_profile("momentum", [("method", "resistance", "exp")])
    assert profile.options.resistance == "exp" and profile.options.alpha == 0.2
    spec = MomentumDecoding.spec
    assert not spec.lossless and not spec.samples and "greedy" in spec.lossless_note

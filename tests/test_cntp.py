"""CNTP: plain decoding at threshold inf (greedy and sampling), trials everywhere at threshold 0
with the cost counted, and the trials' scores against independent full forwards."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.cntp import CautiousNextTokenPrediction, CNTPOptions, TrialSampler
from decbench.decoders.gated import GateCost, UncertainStep
from decbench.decoders.sampling import Sample
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)

PROMPT = [3, 4, 5, 6, 7, 3, 4]


def tiny_target(family: str = "llama"):
    make = tiny_qwen2 if family == "qwen2" else tiny_llama
    model = make(seed=0, layers=2)
    model.generation_config.eos_token_id = None  # no early stops: the counts below are exact
    return runner_for(model)


def cntp(target, **options):
    return CautiousNextTokenPrediction(target, CNTPOptions(**options), no_models_ctx())


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_threshold_inf_is_greedy(family):
    target = tiny_target(family)
    result = cntp(target, threshold=float("inf")).generate(make_request(PROMPT, 16))
    assert result.token_ids == greedy_ids(target, PROMPT, 16)
    assert result.stats["uncertain_steps"] == 0 and result.stats["extra_forwards"] == 0


def test_threshold_inf_under_sampling_is_the_sampler():
    target = tiny_target()
    settings = SamplingSettings(temperature=0.8, top_k=20, seed=3)
    request = make_request(PROMPT, 16, sampling=settings)
    ours = cntp(target, threshold=float("inf")).generate(request)
    plain = Sample(target, Sample.Options(), no_models_ctx()).generate(request)
    assert ours.token_ids == plain.token_ids


def test_threshold_zero_runs_trials_at_every_step():
    """14 tokens in segments of lookahead 4: 4 + 4 + 4 + 2 (the last capped by what remains);
    each segment of n tokens costs n - 1 branch forwards over the 3 trials' tree."""
    target = tiny_target()
    result = cntp(target, threshold=0.0, trials=3, lookahead=4).generate(make_request(PROMPT, 14))
    stats = result.stats
    assert len(result.token_ids) == 14
    assert stats["uncertain_steps"] == 4 and stats["uncertain_share"] == 1.0
    assert stats["extra_forwards"] == 3 + 3 + 3 + 1
    assert 0 < stats["extra_tokens"] <= 3 * (3 + 6 + 9) + 3  # trees of at most 3 chains
    # prefill + 10 branch forwards + 3 commit forwards (none after the last segment)
    assert stats["forwards_per_token"] == pytest.approx((1 + 10 + 3) / 14)
    assert result.token_ids != greedy_ids(target, PROMPT, 14)  # the trials really changed it


def test_trial_scores_match_full_forwards_and_the_best_wins():
    """Each trial's score is its mean log-probability, recomputed here without the branch tree."""
    target = tiny_target()
    with torch.inference_mode():
        logits = target.prefill(torch.tensor([PROMPT])).logits[0, -1]
    settings = SamplingSettings(temperature=1.0)
    sampler = TrialSampler(CNTPOptions(trials=4, lookahead=3), settings, ends=set())
    step = UncertainStep(
        target, list(PROMPT), logits, 10, torch.Generator().manual_seed(0), GateCost()
    )
    trials = sampler.sample(step)
    assert target.cache_len == len(PROMPT)  # the branch forwards left the cache as it was
    assert len({tuple(t.tokens) for t in trials}) > 1
    for trial in trials:
        ids = torch.tensor([PROMPT + trial.tokens])
        with torch.inference_mode():
            full = target.model(ids).logits[0].float().log_softmax(-1)
        expected = sum(
            full[len(PROMPT) - 1 + i, token].item() for i, token in enumerate(trial.tokens)
        )
        assert trial.log_prob == pytest.approx(expected, abs=1e-4)
    step.cost = GateCost()
    sampler2 = TrialSampler(CNTPOptions(trials=4, lookahead=3), settings, ends=set())
    step.generator = torch.Generator().manual_seed(0)
    best = max(trials, key=lambda t: t.score)
    assert sampler2(step) == best.tokens


def test_trials_end_at_an_ending_token():
    target = tiny_target()
    with torch.inference_mode():
        logits = target.prefill(torch.tensor([PROMPT])).logits[0, -1]
    step = UncertainStep(target, list(PROMPT), logits, 10, torch.Generator(), GateCost())
    every = set(range(target.vocab_size))  # every token ends a trial: one token each
    trials = TrialSampler(CNTPOptions(trials=3), SamplingSettings(), every).sample(step)
    assert [len(t.tokens) for t in trials] == [1, 1, 1] and step.cost.extra_forwards == 0


@pytest.mark.parametrize(
    "bad", [{"threshold": -1.0}, {"trials": 0}, {"lookahead": 0}, {"trial_temperature": 0.0}]
)
def test_bad_options_are_config_errors(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        cntp(tiny_target(), **bad)

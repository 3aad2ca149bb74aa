"""Entropy adaptive decoding: switching and cache catch-up are exact (a draft that is the target
gives greedy), the extremes of the threshold give the draft's or the target's output, the hold
works on a hand-written entropy sequence, and the token fractions add up."""

from __future__ import annotations

import math

import pytest
import torch

from decbench.decoders.base import DecoderContext
from decbench.decoders.ead import DRAFT, TARGET, EadOptions, EntropyAdaptiveDecoding, Switch
from decbench.decoders.ead import entropy_bits as bits
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import greedy_ids, make_request, no_models_ctx, runner_for, tiny_llama

PROMPTS = [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 30))]


def ead_with(target, draft, **options):
    ctx = DecoderContext(load_model=lambda name: draft)
    return EntropyAdaptiveDecoding(target, EadOptions(draft="student", **options), ctx)


def check_counts(result):
    stats = result.stats
    n = len(result.token_ids)
    assert stats["draft_tokens"] + stats["target_tokens"] == n
    assert stats["draft_fraction"] + stats["target_fraction"] == pytest.approx(1.0)
    assert sum(length for _, length in stats["segments"]) == n
    assert stats["switches"] >= len(stats["segments"]) - 1


@pytest.mark.parametrize("threshold", [0.0, 3.0, 4.5, 5.2, 100.0])
@pytest.mark.parametrize("window", [1, 5])
def test_a_draft_that_is_the_target_gives_greedy(threshold, window):
    """Same weights, separate caches: whichever model writes, the tokens are greedy's. This
    exercises every hand-over and the chunked catch-up of the idle model's cache."""
    model = tiny_llama()
    target, draft = runner_for(model), runner_for(model)
    decoder = ead_with(target, draft, threshold=threshold, window=window, min_target_tokens=2)
    switched = 0
    for prompt in PROMPTS:
        result = decoder.generate(make_request(prompt, 30))
        assert result.token_ids == greedy_ids(target, prompt, 30)
        check_counts(result)
        switched += result.stats["switches"]
    if 0.0 < threshold < 100.0:
        assert switched > 0, "the threshold should make the models trade places"


def test_threshold_extremes():
    target, draft = runner_for(tiny_llama(seed=0)), runner_for(tiny_llama(seed=1))
    prompt = [5, 9, 11, 4]
    # never hard: the draft writes everything, exactly its own greedy output
    result = ead_with(target, draft, threshold=1e9).generate(make_request(prompt, 20))
    assert result.token_ids == greedy_ids(draft, prompt, 20)
    assert result.stats["draft_fraction"] == 1.0 and result.stats["switches"] == 0
    # always hard: the draft writes the first token, the target all the rest
    result = ead_with(target, draft, threshold=0.0).generate(make_request(prompt, 20))
    first = greedy_ids(draft, prompt, 1)
    assert result.token_ids == first + greedy_ids(target, prompt + first, 19)
    assert result.stats["segments"] == [[DRAFT, 1], [TARGET, 19]]
    assert result.stats["target_fraction"] == pytest.approx(19 / 20)


def test_hold_and_rolling_window_by_hand():
    switch = Switch(EadOptions(threshold=1.0, window=1, min_target_tokens=3))
    seen = []
    for entropy in [0.5, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0]:
        switch.observe(entropy)
        seen.append(switch.active)
    # hard at the 2nd token; the target owes 3 tokens before it may hand back
    assert seen == [DRAFT, TARGET, TARGET, TARGET, DRAFT, DRAFT, TARGET]
    assert switch.switches == 3

    rolling = Switch(EadOptions(threshold=1.0, window=2, min_target_tokens=1))
    rolling.observe(0.0)
    rolling.observe(1.8)  # mean 0.9: still easy
    assert rolling.active == DRAFT
    rolling.observe(0.4)  # mean 1.1: hard
    assert rolling.active == TARGET


def test_entropy_is_in_bits():
    assert bits(torch.zeros(8)) == pytest.approx(3.0)
    assert bits(torch.tensor([0.0, -math.inf, -math.inf])) == pytest.approx(0.0)


def test_sampling_is_seeded():
    target, draft = runner_for(tiny_llama(seed=0)), runner_for(tiny_llama(seed=1))
    decoder = ead_with(target, draft, threshold=4.0)

    def run(seed):
        sampling = SamplingSettings(temperature=1.0, seed=seed)
        return decoder.generate(make_request([3, 4, 5], 24, sampling=sampling)).token_ids

    assert run(1) == run(1)
    assert run(1) != run(2) or run(1) != run(3)


def test_self_draft_and_refusals():
    target = runner_for(tiny_llama())
    decoder = EntropyAdaptiveDecoding(target, EadOptions(draft="self:layers=1"), no_models_ctx())
    result = decoder.generate(make_request([3, 4, 5], 12))
    check_counts(result)
    wrong_vocab = runner_for(tiny_llama(vocab=64))
    with pytest.raises(ConfigError, match="tokenizer"):
        ead_with(target, wrong_vocab)
    with pytest.raises(ConfigError, match=r"method\.window"):
        ead_with(target, target, window=0)
    with pytest.raises(ConfigError, match=r"method\.min_target_tokens"):
        ead_with(target, target, min_target_tokens=0)


def test_profile_and_spec():
    from decbench.profiles import load_profile

    profile = load_profile("ead")
    assert profile.options.draft.startswith("self:layers=")
    spec = EntropyAdaptiveDecoding.spec
    assert not spec.lossless and spec.needs_draft and "lossy" in spec.lossless_note

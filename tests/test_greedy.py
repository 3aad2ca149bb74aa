"""Greedy decoding equals transformers' own greedy generate, token for token."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.greedy import Greedy
from decbench.decoders.sampling import Sample
from decbench.settings import SamplingSettings
from tests.conftest import make_request, no_models_ctx


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("prompt", [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 40))])
def test_greedy_equals_hf_generate(tiny_runner, prompt):
    decoder = Greedy(tiny_runner, Greedy.Options(), no_models_ctx())
    result = decoder.generate(make_request(prompt, max_new_tokens=20))
    expected = hf_greedy(tiny_runner.model, prompt, 20)
    assert result.token_ids == expected[: len(result.token_ids)]
    if result.finish_reason == "eos":
        assert result.token_ids[-1] == 1
    assert result.stats["mat"] == 1.0


def test_max_new_tokens_and_trace(tiny_runner):
    result = Greedy(tiny_runner, Greedy.Options(), no_models_ctx()).generate(
        make_request([4, 5, 6], max_new_tokens=7)
    )
    assert len(result.token_ids) <= 7
    assert sum(step.emitted for step in result.steps) == len(result.token_ids)
    assert result.timings.prefill_s > 0


def test_seeded_sampling_is_reproducible_and_seed_dependent(tiny_runner):
    decoder = Sample(tiny_runner, Sample.Options(), no_models_ctx())

    def run(seed: int) -> list[int]:
        s = SamplingSettings(temperature=1.5, top_p=0.95, seed=seed)
        return decoder.generate(make_request([3, 4, 5], max_new_tokens=30, sampling=s)).token_ids

    assert run(1) == run(1)
    assert run(1) != run(2) or run(1) != run(3)


@pytest.mark.model
def test_default_model_greedy_equals_hf(default_session):
    prompt = "Name three colors."
    ids = default_session.encode(prompt)
    result = default_session.generate(prompt)
    out = default_session.target.model.generate(
        torch.tensor([ids]), max_new_tokens=32, do_sample=False
    )
    assert result.token_ids == out[0, len(ids) :].tolist()
    assert result.text.strip()

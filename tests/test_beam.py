"""Beam search: width 1 is greedy, and every width, length penalty and stopping rule matches
transformers' own beam search token for token."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.beam import BeamSearchDecoder, Hypotheses
from decbench.decoders.greedy import Greedy
from decbench.errors import ConfigError
from tests.conftest import make_request, no_models_ctx, runner_for, tiny_llama, tiny_qwen2

PROMPTS = [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 40)), [7] * 5]


def beam(runner, **options):
    return BeamSearchDecoder(runner, BeamSearchDecoder.Options(**options), no_models_ctx())


def hf_beam(model, prompt, n, width, length_penalty, early_stopping) -> list[int]:
    out = model.generate(
        torch.tensor([prompt]),
        attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
        max_new_tokens=n,
        do_sample=False,
        num_beams=width,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        pad_token_id=0,
    )
    ids = out[0, len(prompt) :].tolist()
    eos = model.config.eos_token_id
    return ids[: ids.index(eos) + 1] if eos in ids else ids  # drop the padding after EOS


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_width_one_is_greedy(tiny_runner, prompt, length_penalty):
    got = beam(tiny_runner, width=1, length_penalty=length_penalty).generate(
        make_request(prompt, 24)
    )
    expected = Greedy(tiny_runner, Greedy.Options(), no_models_ctx()).generate(
        make_request(prompt, 24)
    )
    assert got.token_ids == expected.token_ids
    assert got.finish_reason == expected.finish_reason


def test_matches_transformers_beam_search():
    """Seeds and prompts chosen so that some searches end at EOS and some at max_new_tokens."""
    ended_at_eos = 0
    cases = 0
    for make in (tiny_llama, tiny_qwen2):
        for seed in range(3):
            model = make(seed=seed)
            runner = runner_for(model)
            for prompt in PROMPTS:
                for width, length_penalty, early in [
                    (2, 1.0, False),
                    (4, 0.0, False),
                    (3, 2.0, True),
                ]:
                    options = dict(width=width, length_penalty=length_penalty, early_stopping=early)
                    got = beam(runner, **options).generate(make_request(prompt, 20))
                    assert got.token_ids == hf_beam(model, prompt, 20, width, length_penalty, early)
                    ended_at_eos += got.finish_reason == "eos"
                    cases += 1
    assert 0 < ended_at_eos < cases


def test_hypotheses_keep_the_best_width():
    hyps = Hypotheses(width=2, length_penalty=1.0)
    hyps.add([1, 2], -4.0)  # -2.0
    hyps.add([3], -1.5)  # -1.5
    hyps.add([4, 5, 6, 7], -4.0)  # -1.0
    assert hyps.full()
    assert hyps.best() == [4, 5, 6, 7]
    assert hyps.worst() == pytest.approx(-1.5)


def test_trace_and_time_to_first_token(tiny_runner):
    result = beam(tiny_runner, width=3).generate(make_request([3, 4, 5], max_new_tokens=9))
    assert len(result.token_ids) <= 9
    assert sum(step.emitted for step in result.steps) == len(result.token_ids)
    # the output is known only when the search ends
    assert result.timings.ttft_s >= 0.5 * result.timings.total_s


def test_refuses_a_bad_width(tiny_runner):
    with pytest.raises(ConfigError, match=r"method\.width"):
        beam(tiny_runner, width=0)


def test_profile_and_spec():
    from decbench.profiles import load_profile

    profile = load_profile("beam")
    assert (profile.options.width, profile.options.length_penalty) == (4, 1.0)
    spec = BeamSearchDecoder.spec
    assert not spec.lossless and not spec.samples and "greedy" in spec.lossless_note

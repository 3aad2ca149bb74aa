"""The reference decoders wrap transformers' own generate: under greedy they are token-identical
to decbench's greedy, they obey the same stop rules, and the step trace rebuilt from their
forward calls adds up (so MAT and acceptance compare like for like)."""

from __future__ import annotations

import pytest
import torch

from decbench.decoders.greedy import Greedy
from decbench.decoders.hf_assisted import HFAssisted
from decbench.decoders.hf_common import DRAFT, TARGET, ForwardCall, rebuild_steps
from decbench.decoders.hf_greedy import HFGreedy
from decbench.decoders.hf_pld import HFPromptLookup
from decbench.decoders.hf_sample import HFSample
from decbench.decoders.registry import get_decoder
from decbench.errors import ConfigError
from decbench.settings import SamplingSettings
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    repetitive_prompts,
    runner_for,
    tiny_llama,
)


@pytest.fixture(scope="module")
def runner():
    return runner_for(tiny_llama(seed=3, layers=3))


def check_trace(result):
    assert sum(step.emitted for step in result.steps) == len(result.token_ids)
    assert all(step.emitted >= 1 for step in result.steps)
    assert all(0 <= step.accepted <= len(step.drafted) for step in result.steps)
    assert result.stats["emitted"] == len(result.token_ids)


def test_specs_declare_reference():
    for name in ("hf-greedy", "hf-sample", "hf-pld", "hf-assisted"):
        spec = get_decoder(name).spec
        assert spec.reference and spec.lossless and spec.lossless_note
    assert get_decoder("hf-assisted").spec.needs_draft
    assert not get_decoder("hf-greedy").spec.samples


@pytest.mark.parametrize("prompt", [[2, 3], [5, 9, 11, 4, 7, 30], list(range(2, 40))])
def test_hf_greedy_equals_greedy(tiny_runner, prompt):
    result = HFGreedy(tiny_runner, HFGreedy.Options(), no_models_ctx()).generate(
        make_request(prompt, 20)
    )
    assert result.token_ids == greedy_ids(tiny_runner, prompt, 20)
    assert result.method == "hf-greedy"
    assert result.stats["mat"] == 1.0
    assert len(result.steps) == len(result.token_ids)  # one target forward per token
    assert result.timings.phases["prefill"] > 0 and result.timings.phases["decode"] > 0
    check_trace(result)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_hf_pld_equals_greedy_and_accepts_copies(runner, k):
    decoder = HFPromptLookup(runner, HFPromptLookup.Options(k=k, max_ngram=2), no_models_ctx())
    accepted = 0
    for prompt in repetitive_prompts(6, seed=k):
        result = decoder.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(runner, prompt)
        assert all(len(step.drafted) <= k for step in result.steps)
        check_trace(result)
        accepted += result.stats["accepted"]
    assert accepted > 0  # the repeated spans are copied


@pytest.mark.parametrize("schedule", ["constant", "heuristic"])
@pytest.mark.parametrize("layers,k", [(1, 1), (2, 4)])
def test_hf_assisted_equals_greedy(runner, layers, k, schedule):
    options = HFAssisted.Options(draft=f"self:layers={layers}", k=k, schedule=schedule)
    decoder = HFAssisted(runner, options, no_models_ctx())
    for prompt in repetitive_prompts(3, seed=layers):
        result = decoder.generate(make_request(prompt, 20))
        assert result.token_ids == greedy_ids(runner, prompt, 20)
        check_trace(result)
        assert result.timings.phases["draft"] > 0
    # the assistant's adapted K lives in its own config, never in the target's
    assert getattr(runner.model.generation_config, "num_assistant_tokens", None) in (None, 20)


def test_hooks_are_removed(runner):
    HFGreedy(runner, HFGreedy.Options(), no_models_ctx()).generate(make_request([3, 4], 4))
    assert not runner.model._forward_hooks and not runner.model._forward_pre_hooks


def test_same_stop_rules_as_greedy():
    model = tiny_llama(seed=5, layers=2)
    runner = runner_for(model)
    free = greedy_ids(runner, [4, 5, 6, 7], 16)
    stop_token = free[5]
    model.generation_config.eos_token_id = stop_token
    expected = free[: free.index(stop_token) + 1]
    for decoder in (
        Greedy(runner, Greedy.Options(), no_models_ctx()),
        HFGreedy(runner, HFGreedy.Options(), no_models_ctx()),
        HFPromptLookup(runner, HFPromptLookup.Options(), no_models_ctx()),
        HFAssisted(runner, HFAssisted.Options(draft="self:layers=1"), no_models_ctx()),
    ):
        result = decoder.generate(make_request([4, 5, 6, 7], 16))
        assert result.token_ids == expected, decoder.spec.name
        assert result.finish_reason == "eos"
    short = HFGreedy(runner, HFGreedy.Options(), no_models_ctx()).generate(make_request([9, 9], 3))
    assert len(short.token_ids) <= 3


def test_hf_sample_is_seeded(runner):
    decoder = HFSample(runner, HFSample.Options(), no_models_ctx())

    def run(seed):
        sampling = SamplingSettings(temperature=1.2, top_k=20, seed=seed)
        return decoder.generate(make_request([3, 4, 5], 12, sampling=sampling)).token_ids

    assert run(1) == run(1)
    assert run(1) != run(2) or run(1) != run(3)


def test_option_validation(runner):
    with pytest.raises(ConfigError, match=r"method\.k must be >= 1"):
        HFPromptLookup(runner, HFPromptLookup.Options(k=0), no_models_ctx())
    with pytest.raises(ConfigError, match="'fast' is not one of constant, heuristic"):
        HFAssisted(
            runner, HFAssisted.Options(draft="self:layers=1", schedule="fast"), no_models_ctx()
        )
    with pytest.raises(ConfigError, match="self:layers=9"):
        HFAssisted(runner, HFAssisted.Options(draft="self:layers=9"), no_models_ctx())


def test_rebuild_steps_from_hand_written_calls():
    """Prompt of 3 tokens; output [10, 11, 12, 13, 14, 15].
    prefill (start 0) commits 10. Step at start 3 verifies pending 10 + draft [11, 12, 99]:
    11, 12 accepted, 13 is the recovered token. Step at start 6 verifies pending 13 + draft
    [14]: accepted, 15 is the bonus and the last token."""
    calls = [
        ForwardCall(TARGET, 0, [1, 2, 3], seconds=0.5),
        ForwardCall(DRAFT, 3, [10], seconds=0.01),
        ForwardCall(DRAFT, 4, [11], seconds=0.01),
        ForwardCall(TARGET, 3, [10, 11, 12, 99], seconds=0.2),
        ForwardCall(TARGET, 6, [13, 14], seconds=0.1),
    ]
    steps = rebuild_steps(calls, 3, [10, 11, 12, 13, 14, 15], "verify")
    assert [(s.drafted, s.accepted, s.bonus, s.recovered, s.emitted) for s in steps] == [
        ([], 0, 10, False, 1),
        ([11, 12, 99], 2, 13, True, 3),
        ([14], 1, 15, False, 2),
    ]
    assert steps[0].times == {"prefill": 0.5}
    assert steps[1].times == {"verify": 0.2, "draft": pytest.approx(0.02)}


def test_rebuild_steps_when_a_stop_cuts_inside_the_draft():
    """Assisted prefill carries the first draft: prompt [1, 2] + draft [7, 8, 9]; the target
    accepts 7 and 8 where 8 is EOS, so generation stops with 2 tokens and no bonus."""
    calls = [ForwardCall(TARGET, 0, [1, 2, 7, 8, 9])]
    (step,) = rebuild_steps(calls, 2, [7, 8], "verify")
    assert (step.drafted, step.accepted, step.emitted, step.bonus) == ([7, 8, 9], 1, 2, 8)


def test_rebuild_steps_refuses_an_inconsistent_log():
    calls = [ForwardCall(TARGET, 0, [1, 2]), ForwardCall(TARGET, 1, [5])]
    with pytest.raises(Exception, match="cannot rebuild"):
        rebuild_steps(calls, 2, [5, 6], "decode")


def test_generate_is_called_only_by_reference_decoders():
    """Architecture rule: among decoders, transformers' generate appears only in hf_common.py."""
    from pathlib import Path

    import decbench

    root = Path(decbench.__file__).parent / "decoders"
    callers = sorted(
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if ".generate(" in p.read_text() and "model.generate(" in p.read_text()
    )
    assert callers == ["hf_common.py"], callers


def test_torch_inference_mode_is_left(runner):
    HFGreedy(runner, HFGreedy.Options(), no_models_ctx()).generate(make_request([3, 4], 3))
    assert not torch.is_inference_mode_enabled()

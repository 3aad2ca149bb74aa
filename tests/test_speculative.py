"""Lossless under greedy: speculative decoding and prompt lookup are token-identical to greedy
for many prompts, every K in 1..8, both model families, and stop rules at any position."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from decbench.backends.derive import truncated_runner
from decbench.decoders.base import DecoderContext
from decbench.decoders.speculative.draft_model import DraftModelProposer, SpeculativeDecoding
from decbench.decoders.speculative.engine import run_speculative
from decbench.decoders.speculative.prompt_lookup import PromptLookup
from decbench.errors import ConfigError
from tests.conftest import (
    greedy_ids,
    make_request,
    no_models_ctx,
    repetitive_prompts,
    runner_for,
    tiny_llama,
    tiny_qwen2,
)

PROMPTS = repetitive_prompts(6)


@pytest.mark.parametrize("k", range(1, 9))
def test_pld_equals_greedy_for_every_k(tiny_runner, k):
    decoder = PromptLookup(tiny_runner, PromptLookup.Options(k=k), no_models_ctx())
    for prompt in PROMPTS:
        result = decoder.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(tiny_runner, prompt), (k, prompt)
        assert sum(s.emitted for s in result.steps) == len(result.token_ids)


def test_pld_accepts_drafts_on_copyable_text():
    """A model made to repeat its input copies it, so lookup drafts get accepted (MAT > 1)."""
    runner = runner_for(copying_model())
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 5, 6]
    result = PromptLookup(runner, PromptLookup.Options(k=4), no_models_ctx()).generate(
        make_request(prompt, 16)
    )
    assert result.token_ids == greedy_ids(runner, prompt, 16)
    assert result.stats["mat"] > 2
    assert result.stats["accepted"] > 0


def copying_model():
    """A tiny Llama whose greedy choice continues the cycle 5..12 (an induction-free toy: the
    LM head reads the current token's embedding and maps token t to t+1)."""
    model = tiny_llama(seed=3)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.copy_(torch.nn.functional.one_hot(torch.arange(48) % 32, 32).float() * 5)
        head = torch.zeros(48, 32)
        for t in range(5, 13):
            nxt = 5 if t == 12 else t + 1
            head[nxt, t] = 10.0
        model.lm_head.weight.copy_(head)
        model.model.norm.weight.fill_(1.0)
    return model


@pytest.mark.parametrize("k", range(1, 9))
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_draft_model_equals_greedy_for_every_k(family, k):
    target = runner_for(
        tiny_llama(seed=0, layers=3) if family == "llama" else tiny_qwen2(0, layers=3)
    )
    draft = runner_for(tiny_llama(seed=7) if family == "llama" else tiny_qwen2(7))
    options = SpeculativeDecoding.Options(k=k)
    for prompt in PROMPTS[:4]:
        proposer = DraftModelProposer(draft, options)
        result = run_speculative("speculative", options, target, proposer, make_request(prompt, 24))
        assert result.token_ids == greedy_ids(target, prompt), (k, prompt)


@pytest.mark.parametrize(
    "schedule,p_min", [("heuristic", 0.0), ("constant", 0.3), ("heuristic", 0.5)]
)
def test_adaptive_k_and_confidence_cutoff_stay_exact(schedule, p_min):
    target = runner_for(tiny_llama(seed=0, layers=3))
    ctx = no_models_ctx()
    options = SpeculativeDecoding.Options(
        draft="self:layers=1", k=3, schedule=schedule, p_min=p_min
    )
    decoder = SpeculativeDecoding(target, options, ctx)
    for prompt in PROMPTS[:3]:
        result = decoder.generate(make_request(prompt, 24))
        assert result.token_ids == greedy_ids(target, prompt)
        if p_min:
            assert all(s.draft_probs is None for s in result.steps)  # greedy: no q kept


def test_self_draft_uses_the_targets_weights():
    target = runner_for(tiny_llama(seed=0, layers=3))
    draft = truncated_runner(target, 2)
    assert len(draft.model.model.layers) == 2
    assert draft.model.lm_head.weight is target.model.lm_head.weight
    assert draft.model.model.layers[0] is target.model.model.layers[0]
    assert len(target.model.model.layers) == 3


def test_self_draft_bounds_are_checked():
    target = runner_for(tiny_llama(seed=0, layers=3))
    with pytest.raises(ConfigError, match="between 1 and 2"):
        SpeculativeDecoding(
            target, SpeculativeDecoding.Options(draft="self:layers=3"), no_models_ctx()
        )
    with pytest.raises(ConfigError, match="self:layers=N"):
        SpeculativeDecoding(target, SpeculativeDecoding.Options(draft="self:int3"), no_models_ctx())


def test_vocabulary_mismatch_is_refused():
    target = runner_for(tiny_llama(seed=0))
    other = runner_for(tiny_llama(seed=0, vocab=64))
    ctx = DecoderContext(load_model=lambda name: other)
    with pytest.raises(ConfigError, match="does not share the target's tokenizer"):
        SpeculativeDecoding(target, SpeculativeDecoding.Options(draft="other"), ctx)


@pytest.mark.parametrize("stop_at", range(1, 12))
def test_eos_inside_an_accepted_draft_stops_exactly_like_greedy(stop_at):
    """Make the greedy output's token at position `stop_at` an EOS: every decoder must stop there."""
    runner = runner_for(copying_model())
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 5, 6]
    plain = greedy_ids(runner, prompt, 16)
    eos = plain[stop_at - 1]
    runner.model.generation_config.eos_token_id = eos
    expected = plain[: plain.index(eos) + 1]
    assert greedy_ids(runner, prompt, 16) == expected
    result = PromptLookup(runner, PromptLookup.Options(k=6), no_models_ctx()).generate(
        make_request(prompt, 16)
    )
    assert result.token_ids == expected
    assert result.finish_reason == "eos"


@pytest.mark.parametrize("max_new", [1, 2, 3, 7])
def test_max_new_tokens_is_exact(max_new):
    runner = runner_for(copying_model())
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 5, 6]
    result = PromptLookup(runner, PromptLookup.Options(k=8), no_models_ctx()).generate(
        make_request(prompt, max_new)
    )
    assert result.token_ids == greedy_ids(runner, prompt, max_new)
    assert len(result.token_ids) == max_new
    assert result.finish_reason == "length"


def test_trace_statistics_add_up():
    runner = runner_for(copying_model())
    result = PromptLookup(runner, PromptLookup.Options(k=3), no_models_ctx()).generate(
        make_request([5, 6, 7, 8, 9, 10, 11, 12, 5, 6], 20)
    )
    stats = result.stats
    assert stats["steps"] == len(result.steps)
    assert stats["emitted"] == len(result.token_ids)
    assert stats["mat"] == pytest.approx(len(result.token_ids) / len(result.steps))
    assert stats["accepted"] == sum(s.accepted for s in result.steps)
    assert sum(stats["length_histogram"].values()) == stats["steps"]
    assert all(s.accepted <= len(s.drafted) for s in result.steps)
    assert "verify" in result.timings.phases and "draft" in result.timings.phases
    record = result.to_dict()
    assert record["schema"] == "decbench/generation/v1"
    assert record["steps"][1]["drafted"] == dataclasses.asdict(result.steps[1])["drafted"]


@pytest.mark.model
@pytest.mark.parametrize("method", ["pld", "speculative"])
def test_default_model_lossless(default_session, method):
    from decbench.profiles import method_profile
    from decbench.run import open_session

    prompt = (
        "Rewrite this sentence with 'cat' replaced by 'dog': The cat sat on the mat, and the "
        "cat looked at the other cat."
    )
    greedy = default_session.generate(prompt)
    profile = method_profile(method, [("generation", "max_new_tokens", 32)])
    result = open_session(profile, target=default_session.target).generate(prompt)
    assert result.token_ids == greedy.token_ids
    if method == "pld":
        assert result.stats["mat"] > 1

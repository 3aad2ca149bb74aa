"""Conformance over the registry: every registered lossless method, with its default options,
is token-identical to greedy on every tiny runner family (stock, decode kernels, static cache)
and stops at an end-of-sequence token exactly where greedy does, even when the token arrives
inside an accepted draft; and every one that samples draws from the target's distribution. A new
lossless method is picked up by registering it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.greedy import Greedy
from decbench.decoders.registry import _REGISTRY, register_decoder
from decbench.decoders.speculative.draft_model import DraftModelOptions, DraftModelProposer
from decbench.decoders.speculative.engine import run_speculative
from decbench.results import GenerationResult
from decbench.settings import SamplingSettings
from tests.conformance import (
    PROMPTS,
    SAMPLING_OPTIONS,
    assert_equals_greedy,
    build,
    lossless_methods,
    peaked_target,
    sampled_joint,
    sampling_methods,
)
from tests.conftest import greedy_ids, make_request, no_models_ctx
from tests.test_lossless_sampling import broken_rule, chi2_pvalue, exact_joint

METHODS = [cls.spec.name for cls in lossless_methods()]
CONSTRAINED = [cls.spec.name for cls in lossless_methods() if cls.spec.constraints]


def test_the_lossless_methods_are_all_here():
    """Guards the filter: a method dropping out of the suite must be a deliberate change."""
    assert {"greedy", "pld", "speculative", "lookahead", "recycling", "aded", "medusa"} <= set(
        METHODS
    )
    assert {"eagle", "eagle2", "sam", "sam-eagle", "spectr", "rsd", "del"} <= set(METHODS)
    assert {"rsd-s"} <= set(METHODS)
    assert not {"hf-greedy", "llamacpp-greedy", "beam", "dllm-confidence"} & set(METHODS)
    assert set(CONSTRAINED) == set(METHODS)  # every lossless method honours a token mask


@pytest.mark.parametrize("method", METHODS)
def test_equals_greedy(method, tiny_runner, tmp_path):
    cls = next(c for c in lossless_methods() if c.spec.name == method)
    assert_equals_greedy(build(cls, tiny_runner, tmp_path), tiny_runner)


@pytest.mark.parametrize("method", METHODS)
def test_the_trace_keeps_to_the_declared_draft_shape(method, tiny_runner, tmp_path):
    """supports_tree is what the trace shows: tree verification on every tiny runner exactly
    for the methods that declare it. Draft probabilities in the trace (chains only) come only
    from methods that declare emits_draft_probs (tree methods keep q inside their rule)."""
    cls = next(c for c in lossless_methods() if c.spec.name == method)
    decoder = build(cls, tiny_runner, tmp_path)
    for temperature in (0.0, 1.0) if cls.spec.samples else (0.0,):
        sampling = SamplingSettings(temperature=temperature, seed=1)
        steps = decoder.generate(make_request(PROMPTS[0], 24, sampling=sampling)).steps
        assert any(step.tree is not None for step in steps) == cls.spec.supports_tree
        if any(step.draft_probs is not None for step in steps):
            assert cls.spec.emits_draft_probs


@pytest.mark.parametrize("method", METHODS)
def test_stops_at_eos_where_greedy_does(method, tiny_runner, tmp_path, monkeypatch):
    """The greedy continuation's 6th token is declared end-of-sequence: every method must stop
    right after it (finish reason 'eos'), never emitting the tokens an accepted draft carried
    past it."""
    cls = next(c for c in lossless_methods() if c.spec.name == method)
    prompt = PROMPTS[0]
    full = greedy_ids(tiny_runner, prompt, 24)
    eos = full[5]
    cut = full.index(eos) + 1
    monkeypatch.setattr(type(tiny_runner), "eos_token_ids", property(lambda _self: [eos]))
    decoder = build(cls, tiny_runner, tmp_path)
    result = decoder.generate(make_request(prompt, 24))
    assert result.token_ids == full[:cut], method
    assert result.finish_reason == "eos"


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("method", CONSTRAINED)
def test_under_an_allow_list_equals_constrained_greedy(method, seed, tiny_runner, tmp_path):
    """Every lossless method that declares `constraints` keeps masking where its tokens are
    chosen: under a random allow-list it is constrained greedy token for token."""
    from decbench.constraints.trie import AllowList
    from tests.test_constraints import EOS, _prompt, _request, random_allow_list

    cls = next(c for c in lossless_methods() if c.spec.name == method)
    sequences = random_allow_list(seed, n=20)
    constraint = AllowList(sequences, tiny_runner.vocab_size, [EOS], "test")
    prompt = _prompt(sequences)
    greedy = Greedy(tiny_runner, Greedy.Options(), no_models_ctx())
    want = greedy.generate(_request(prompt, constraint))
    got = build(cls, tiny_runner, tmp_path).generate(_request(prompt, constraint))
    assert got.token_ids == want.token_ids, method
    assert got.finish_reason == want.finish_reason
    assert got.constraint["satisfied"]


# -- the suite picks up a new method and catches a wrong one ------------------------------------
@dataclass
class OffByOneOptions:
    pass


class OffByOne(Decoder):
    """A toy 'lossless' method that is wrong: greedy, with the 5th token replaced."""

    spec = MethodSpec(name="toy-off-by-one", summary="test only", paper="", lossless=True)
    Options = OffByOneOptions

    def generate(self, request: Request) -> GenerationResult:
        result = Greedy(self.target, Greedy.Options(), self.ctx).generate(request)
        if len(result.token_ids) > 4:
            result.token_ids[4] = (result.token_ids[4] + 1) % self.target.vocab_size
        return result


def test_a_registered_method_is_picked_up_and_a_wrong_one_fails(tiny_runner, tmp_path):
    register_decoder(OffByOne)
    try:
        assert OffByOne in lossless_methods()
        with pytest.raises(AssertionError):
            assert_equals_greedy(build(OffByOne, tiny_runner, tmp_path), tiny_runner)
    finally:
        del _REGISTRY["toy-off-by-one"]


# -- sampling: every lossless method that samples preserves the target's distribution -----------
SAMPLERS = [cls.spec.name for cls in sampling_methods()]
# del's confidence prior never drafts on a two-layer target; test_lossless_sampling's DEL tests
# force its exit layer to draft and check the law there
NEVER_DRAFTS_HERE = {"del"}


@pytest.fixture(scope="module")
def peaked():
    target = peaked_target()
    return target, exact_joint(target)


@pytest.mark.parametrize("method", SAMPLERS)
def test_sampling_follows_the_target_distribution(method, peaked, tmp_path):
    """Chi-square of the joint law of tokens 2..4 (Leviathan et al. 2023, Thm 1 for the
    speculative ones); the drafts really were accepted, so the acceptance rule was exercised."""
    target, exact = peaked
    cls = next(c for c in sampling_methods() if c.spec.name == method)
    decoder = build(cls, target, tmp_path, **SAMPLING_OPTIONS.get(method, {}))
    counts, accepted = sampled_joint(decoder)
    assert chi2_pvalue(counts, exact) > 1e-3
    assert accepted > 0 or not cls.spec.drafts or method in NEVER_DRAFTS_HERE


class SkewedSampler(Decoder):
    """A toy 'lossless' sampling method that is wrong: speculative sampling whose rejected
    positions resample from p instead of the residual max(0, p - q)."""

    spec = MethodSpec(name="toy-skewed", summary="test only", paper="", lossless=True, drafts=True)
    Options = OffByOneOptions

    draft = None  # a second peaked model, made once

    def generate(self, request: Request) -> GenerationResult:
        if SkewedSampler.draft is None:
            SkewedSampler.draft = peaked_target(seed=5)
        proposer = DraftModelProposer(SkewedSampler.draft, DraftModelOptions(k=3))
        return run_speculative(
            "toy-skewed", self.options, self.target, proposer, request, broken_rule
        )


def test_a_registered_sampler_is_picked_up_and_a_wrong_one_fails(peaked, tmp_path):
    target, exact = peaked
    register_decoder(SkewedSampler)
    try:
        assert SkewedSampler in sampling_methods()
        counts, accepted = sampled_joint(build(SkewedSampler, target, tmp_path))
        assert accepted > 0 and chi2_pvalue(counts, exact) < 1e-6
    finally:
        del _REGISTRY["toy-skewed"]

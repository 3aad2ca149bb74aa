"""Conformance over the registry: every registered lossless method, with its default options,
is token-identical to greedy on every tiny runner family (stock, decode kernels, static cache)
and stops at an end-of-sequence token exactly where greedy does, even when the token arrives
inside an accepted draft. A new lossless method is picked up by registering it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from decbench.decoders.base import Decoder, MethodSpec, Request
from decbench.decoders.greedy import Greedy
from decbench.decoders.registry import _REGISTRY, register_decoder
from decbench.results import GenerationResult
from decbench.settings import SamplingSettings
from tests.conformance import PROMPTS, assert_equals_greedy, build, greedy_ids, lossless_methods
from tests.conftest import make_request, no_models_ctx

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

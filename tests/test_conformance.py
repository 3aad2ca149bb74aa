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
from tests.conformance import PROMPTS, assert_equals_greedy, build, greedy_ids, lossless_methods
from tests.conftest import make_request

METHODS = [cls.spec.name for cls in lossless_methods()]


def test_the_lossless_methods_are_all_here():
    """Guards the filter: a method dropping out of the suite must be a deliberate change."""
    assert {"greedy", "pld", "speculative", "lookahead", "recycling", "aded", "medusa"} <= set(
        METHODS
    )
    assert {"eagle", "eagle2", "sam", "sam-eagle", "spectr", "rsd", "del"} <= set(METHODS)
    assert not {"hf-greedy", "llamacpp-greedy", "beam", "dllm-confidence"} & set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_equals_greedy(method, tiny_runner, tmp_path):
    cls = next(c for c in lossless_methods() if c.spec.name == method)
    assert_equals_greedy(build(cls, tiny_runner, tmp_path), tiny_runner)


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

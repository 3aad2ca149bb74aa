"""Tiny-model contenders for compare/profile tests: a byte-level stand-in tokenizer and
sessions built around the tiny random models of conftest.py (no model files are loaded)."""

from __future__ import annotations

from decbench.compare.harness import Contender
from decbench.decoders.registry import get_decoder
from decbench.profiles import method_profile
from decbench.run import Session
from decbench.suites import Sample, Suite
from tests.conftest import TINY_VOCAB, no_models_ctx, runner_for, tiny_llama


class ByteTokenizer:
    """Characters to ids 2..VOCAB-1 (0 = bos, 1 = eos); no chat template, so prompts are raw."""

    chat_template = None
    eos_token_id = 1

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [2 + b % (TINY_VOCAB - 2) for b in text.encode()][-60:]}

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(chr(ord("a") + i % 26) for i in ids if not (skip_special_tokens and i < 2))

    def get_vocab(self) -> dict:
        return {chr(i): i for i in range(TINY_VOCAB)}


def tiny_target(seed: int = 0, layers: int = 3):
    runner = runner_for(tiny_llama(seed=seed, layers=layers))
    runner.tokenizer = ByteTokenizer()
    runner.name = "tiny"
    return runner


def contender(label: str, method: str, target, max_new: int = 12, **options) -> Contender:
    overrides = [("generation", "max_new_tokens", max_new)]
    overrides += [("method", key, value) for key, value in options.items()]
    profile = method_profile(method, overrides)
    decoder_cls = get_decoder(method)
    decoder = decoder_cls(target, profile.options, no_models_ctx())
    session = Session(profile, target, decoder)
    return Contender(label, profile, session, {"model": "tiny", "model_fingerprint": "test"})


def tiny_suite() -> Suite:
    samples = [
        Sample("a-1", "copy", ("abcabcabc xyz abcab",)),
        Sample("a-2", "copy", ("hello hello hello he",)),
        Sample("b-1", "chat", ("hi there", "and again")),
    ]
    return Suite("tiny", "test prompts", "test", samples)

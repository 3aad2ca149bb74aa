"""Shared fixtures: tiny random models (milliseconds, for exhaustive tests) and the embedded
default model (for integration tests, marked `model`)."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from decbench.backends.runner import ModelRunner
from decbench.decoders.base import DecoderContext, Request
from decbench.settings import GenerationSettings, SamplingSettings

TINY_VOCAB = 48

# Tiny models are far faster on one thread, and OpenMP workers spinning against each other on a
# shared 2-core machine made the suite 50x slower. The default model loses ~25% speed; fine.
torch.set_num_threads(1)


def tiny_config(config_cls, vocab: int, layers: int):
    return config_cls(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=0,
    )


def tiny_llama(seed: int = 0, vocab: int = TINY_VOCAB, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(LlamaConfig, vocab, layers)).eval()


def tiny_qwen2(seed: int = 0, vocab: int = TINY_VOCAB, layers: int = 2) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(tiny_config(Qwen2Config, vocab, layers)).eval()


def runner_for(model) -> ModelRunner:
    return ModelRunner(model, tokenizer=None, name=type(model).__name__)


@pytest.fixture(params=["llama", "qwen2", "llama-kernels", "llama-static"])
def tiny_runner(request) -> ModelRunner:
    """Every decoder test runs on stock transformers modules, once more on decbench's decode
    kernels (backends/kernels.py), which the CPU default turns on, and once on the static runner
    (backends/static.py), uncompiled but padded to its compile buckets."""
    from decbench.backends import kernels
    from decbench.backends.static import StaticRunner

    model = tiny_qwen2() if request.param == "qwen2" else tiny_llama()
    if request.param.endswith("kernels"):
        kernels.install(model)
    if request.param.endswith("static"):
        return StaticRunner(model, name="LlamaForCausalLM", compile=False, pad=True)
    return runner_for(model)


def make_request(
    prompt_ids: list[int],
    max_new_tokens: int = 24,
    sampling: SamplingSettings | None = None,
    **generation,
) -> Request:
    return Request(
        prompt="",
        prompt_ids=list(prompt_ids),
        generation=GenerationSettings(max_new_tokens=max_new_tokens, **generation),
        sampling=sampling or SamplingSettings(),
    )


def greedy_ids(
    runner: ModelRunner,
    prompt: list[int],
    n: int = 24,
    sampling: SamplingSettings | None = None,
    **generation,
) -> list[int]:
    """Plain greedy's tokens: the reference every lossless method is checked against."""
    from decbench.decoders.greedy import Greedy

    request = make_request(prompt, n, sampling, **generation)
    return Greedy(runner, Greedy.Options(), no_models_ctx()).generate(request).token_ids


def no_models_ctx() -> DecoderContext:
    def refuse(name: str):
        raise AssertionError(f"test tried to load model {name}")

    return DecoderContext(load_model=refuse)


def repetitive_prompts(n: int, vocab: int = TINY_VOCAB, seed: int = 0) -> list[list[int]]:
    """Prompts with repeated spans so that prompt lookup finds matches."""
    g = torch.Generator().manual_seed(seed)
    prompts = []
    for _ in range(n):
        span = torch.randint(2, vocab, (int(torch.randint(3, 8, (1,), generator=g)),), generator=g)
        noise = torch.randint(2, vocab, (4,), generator=g)
        prompts.append((span.tolist() * 3) + noise.tolist() + span.tolist()[:2])
    return prompts


@pytest.fixture(scope="session")
def default_session():
    """The embedded default model, loaded once per test session (greedy profile)."""
    from decbench.profiles import method_profile
    from decbench.run import open_session

    return open_session(method_profile("greedy", [("generation", "max_new_tokens", 32)]))


@pytest.fixture
def no_loading(monkeypatch):
    """Every check under test must refuse before a session loads a model."""
    from decbench import run

    def load_runner(*_args, **_kwargs):
        raise AssertionError("a model was loaded before the profile was refused")

    monkeypatch.setattr(run, "load_runner", load_runner)


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` are skipped where torch sees no CUDA device."""
    if torch.cuda.is_available() or os.environ.get("DECBENCH_TEST_DEVICE") == "cpu":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

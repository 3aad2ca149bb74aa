"""The static runner (backends/static.py): its cache after any accept/reject/compaction sequence
equals a fresh prefill of the kept tokens, every lossless method is token-identical to eager
greedy on it, compiled and not, a failing compiler falls back with one warning, and the
settings are checked. (Every `tiny_runner` decoder test also runs on it: see conftest.py.)"""

from __future__ import annotations

import random
import warnings

import pytest
import torch

from decbench.backends.runner import ModelRunner
from decbench.backends.static import BUCKETS, StaticRunner, check_runner, runner_facts
from decbench.decoders.greedy import Greedy
from decbench.decoders.registry import get_decoder
from decbench.errors import ConfigError, RunError
from decbench.profiles import method_profile
from tests.conftest import make_request, no_models_ctx, repetitive_prompts, tiny_llama, tiny_qwen2

PROMPTS = repetitive_prompts(3, seed=5)


def eager_greedy(model, prompt: list[int], n: int) -> list[int]:
    runner = ModelRunner(model)
    return (
        Greedy(runner, Greedy.Options(), no_models_ctx())
        .generate(make_request(prompt, n))
        .token_ids
    )


def kept_kv(runner: StaticRunner) -> torch.Tensor:
    """The static cache's valid prefix: [2, layers, batch, kv_heads, length, dim]."""
    return runner.cache.kv[..., : runner.cache_len, :]


def fresh_kv(model, tokens: list[int]) -> torch.Tensor:
    """Keys and values of one eager prefill of `tokens`, stacked like the static cache."""
    runner = ModelRunner(model)
    runner.prefill(torch.tensor([tokens]))
    layers = runner._layers()
    return torch.stack(
        [
            torch.stack([layer.keys for layer in layers]),
            torch.stack([layer.values for layer in layers]),
        ]
    )


def random_tree(rng: random.Random, size: int) -> list[int]:
    """Parents of `size` nodes in topological order (-1 = a root, child of the cache)."""
    return [rng.randrange(-1, i) for i in range(size)]


def tree_step(runner: StaticRunner, rng: random.Random, kept: list[int]) -> None:
    """Verify a random tree after the cache, compact to a random root-to-node path (or none)."""
    past = runner.cache_len
    parents = random_tree(rng, rng.randint(1, 9))
    tokens = [rng.randrange(2, 48) for _ in parents]
    n = len(tokens)
    mask = torch.zeros(1, n, n, dtype=torch.bool)
    for i in range(n):
        j = i
        while j >= 0:
            mask[0, i, j] = True
            j = parents[j]
    depth = mask[0].sum(-1) - 1  # [n] ancestors, not counting itself
    runner.forward(torch.tensor([tokens]), positions=(past + depth)[None], tree_mask=mask)
    node = rng.randrange(-1, n)
    path = []
    while node >= 0:
        path.insert(0, node)
        node = parents[node]
    runner.compact(past, torch.tensor(path, dtype=torch.long))
    kept.extend(tokens[p] for p in path)


def chain_step(runner: StaticRunner, rng: random.Random, kept: list[int]) -> None:
    """Verify a random chain after the cache; keep a random prefix of it (a rejection)."""
    draft = [rng.randrange(2, 48) for _ in range(rng.randint(1, 9))]
    runner.forward(torch.tensor([draft]))
    kept.extend(draft[: rng.randint(0, len(draft))])
    runner.crop(len(kept))


@pytest.mark.parametrize("family", [tiny_llama, tiny_qwen2])
def test_cache_equals_a_fresh_prefill_after_any_sequence(family):
    model = family()
    runner = StaticRunner(model, compile=False, pad=True)
    rng = random.Random(0)
    for trial in range(4):
        kept = [rng.randrange(2, 48) for _ in range(rng.randint(1, 12))]
        runner.reserve(200)
        runner.prefill(torch.tensor([kept]))
        for _ in range(12):
            step = tree_step if rng.random() < 0.5 else chain_step
            step(runner, rng, kept)
            if rng.random() < 0.2:  # a rollback deeper than the last step
                del kept[rng.randint(1, len(kept)) :]
                runner.crop(len(kept))
            assert runner.cache_len == len(kept)
            torch.testing.assert_close(kept_kv(runner), fresh_kv(model, kept), atol=1e-5, rtol=1e-5)
        # and the next forward sees exactly that prefix
        expected = ModelRunner(model).prefill(torch.tensor([[*kept, 7]])).logits[0, -1]
        got = runner.forward(torch.tensor([[7]]), all_logits=False).logits[0, -1]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5), trial


def test_unused_slots_are_masked_out():
    """Garbage in every slot past the valid prefix changes nothing."""
    model = tiny_llama()
    runner = StaticRunner(model, compile=False)
    runner.prefill(torch.tensor([[3, 4, 5, 6]]))
    runner.cache.kv[..., 4:, :] = 1e3
    got = runner.forward(torch.tensor([[8, 9]])).logits[0]
    expected = ModelRunner(model).prefill(torch.tensor([[3, 4, 5, 6, 8, 9]]), all_logits=True)
    torch.testing.assert_close(got, expected.logits[0, 4:], atol=1e-5, rtol=1e-5)


def test_capacity_grows_when_a_request_outgrows_it():
    model = tiny_llama()
    model.config.max_position_embeddings = 1024
    runner = StaticRunner(model, compile=False, pad=True)
    runner.prefill(torch.tensor([[3, 4]]))
    small = runner.cache.capacity
    ids = [3, 4, 5]  # the cache holds all but the last
    for _ in range(small):  # past the first capacity, with no reserve
        token = int(
            runner.forward(torch.tensor([[ids[-1]]]), all_logits=False).logits[0, -1].argmax()
        )
        ids.append(token)
        if len(ids) == small + 20:
            break
    assert runner.cache.capacity > small
    runner.crop(len(ids) - 1)
    expected = ModelRunner(model).prefill(torch.tensor([ids]), all_logits=False).logits[0, -1]
    got = runner.forward(torch.tensor([[ids[-1]]])).logits[0, -1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(RunError, match="needs 10000 positions but its context is 1024"):
        runner.reserve(10_000)
        runner.prefill(torch.tensor([[3]]))


def decoder_on(runner, method: str, **options):
    overrides = [("method", key, value) for key, value in options.items()]
    profile = method_profile(method, overrides)
    return get_decoder(method)(runner, profile.options, no_models_ctx())


def lossless_methods(tmp_path, model) -> dict[str, dict]:
    """Every lossless method with options that make it run on a tiny model."""
    from tests.test_eagle import eagle_folder, shape_of
    from tests.test_medusa import heads_folder

    eagle = eagle_folder(tmp_path, shape_of(ModelRunner(model)))
    heads = heads_folder(tmp_path, model.config.hidden_size)
    return {
        "greedy": {},
        "pld": {"k": 4},
        "lookahead": {},
        "recycling": {},
        "aded": {},
        "speculative": {"draft": "self:layers=1", "k": 3},
        "medusa": {"heads": str(heads), "nodes": 6},
        "eagle": {"draft": str(eagle), "k": 3},
    }


@pytest.fixture(scope="module")
def compiled_llama():
    """One compiled runner for the module: its graphs are reused by every test, as they are
    across prompts and methods in `compare`."""
    model = tiny_llama()
    return model, StaticRunner(model, compile=True)


@pytest.mark.parametrize("compiled", [False, True])
def test_every_lossless_method_equals_eager_greedy(compiled, compiled_llama, tmp_path):
    model, runner = compiled_llama
    if not compiled:
        runner = StaticRunner(model, compile=False)
    for method, options in lossless_methods(tmp_path, model).items():
        decoder = decoder_on(runner, method, **options)
        for prompt in PROMPTS:
            got = decoder.generate(make_request(prompt, 20)).token_ids
            assert got == eager_greedy(model, prompt, 20), (method, compiled, prompt)
    if compiled:
        assert runner.compiled and runner.compile_s > 0
        assert runner_facts(runner)["compiled"] is True


def test_compiled_pads_up_to_buckets_and_reuses_graphs(compiled_llama):
    model, runner = compiled_llama
    runner.reserve(40)
    runner.prefill(torch.tensor([[3, 4, 5, 6, 7]]))  # width 5 runs padded to 8
    before = runner.compile_s
    runner.forward(torch.tensor([[8, 9, 10]]))  # padded to 4
    runner.forward(torch.tensor([[11]]))
    warm = runner.compile_s
    runner.reserve(200)  # a bigger capacity: the same graphs (the capacity is dynamic)
    runner.prefill(torch.tensor([[3, 4, 5, 6, 7]]))
    runner.forward(torch.tensor([[8, 9, 10]]))
    assert runner.compile_s == warm >= before
    expected = ModelRunner(model).prefill(
        torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10]]), all_logits=True
    )
    runner.crop(5)
    torch.testing.assert_close(
        runner.forward(torch.tensor([[8, 9, 10]])).logits[0],
        expected.logits[0, 5:],
        atol=1e-5,
        rtol=1e-5,
    )
    assert 1 in BUCKETS and 8 in BUCKETS


def test_a_failing_compiler_falls_back_to_eager_with_one_warning():
    model = tiny_llama()
    runner = StaticRunner(model, compile=True)

    def broken(*args):
        raise RuntimeError("no C compiler found")

    runner._compiled = broken
    with pytest.warns(RuntimeWarning, match="no C compiler found") as caught:
        runner.prefill(torch.tensor([[3, 4, 5]]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runner.forward(torch.tensor([[6]]))
    assert len(caught) == 1
    assert not runner.compiled and runner.compile_error.startswith("RuntimeError")
    expected = ModelRunner(model).prefill(torch.tensor([[3, 4, 5, 6, 7]])).logits[0, -1]
    got = runner.forward(torch.tensor([[7]])).logits[0, -1]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_runner_setting_is_checked():
    check_runner("eager")
    check_runner("static")
    with pytest.raises(ConfigError, match=r"backend.runner: 'fast' is not one of eager, static"):
        check_runner("fast")


@pytest.mark.model
@pytest.mark.parametrize("method,compiled", [("greedy", True), ("pld", False)])
def test_default_model_static_equals_eager(default_session, method, compiled):
    """On the embedded model: greedy compiled (the one decode width) and PLD uncompiled give the
    eager runner's tokens."""
    from decbench.run import encode_prompt

    target = default_session.target
    static = StaticRunner(target.model, target.tokenizer, compile=compiled)
    prompt = encode_prompt(
        target, "Repeat: the cat sat on the mat. the cat", default_session.profile, False
    )
    eager = Greedy(target, Greedy.Options(), no_models_ctx()).generate(make_request(prompt, 24))
    got = decoder_on(static, method).generate(make_request(prompt, 24))
    assert got.token_ids == eager.token_ids


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_on_cuda_both_runners(dtype, tmp_path):
    """bf16/fp16 on CUDA: the static runner, compiled (CUDA graphs) and not, gives the eager
    runner's greedy tokens, and PLD on it stays token-identical to its greedy."""
    model = tiny_llama().to("cuda", dtype)
    eager = eager_greedy(model, PROMPTS[0], 24)
    for compiled in (False, True):
        runner = StaticRunner(model, compile=compiled)
        greedy = decoder_on(runner, "greedy").generate(make_request(PROMPTS[0], 24)).token_ids
        pld = decoder_on(runner, "pld").generate(make_request(PROMPTS[0], 24)).token_ids
        assert greedy == eager and pld == eager, compiled


@pytest.mark.parametrize("family", [tiny_llama, tiny_qwen2])
def test_both_runners_give_the_last_layers_hidden_states(family):
    """Eagle, Medusa and contrastive read the final hidden states: both runners catch the
    decoder's output instead of asking for every layer's, and it is that last layer's."""
    model = family()
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.inference_mode():
        expected = model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
    for runner in (ModelRunner(model), StaticRunner(model, compile=False, pad=True)):
        runner.prefill(ids[:, :2], hidden=True)
        got = runner.forward(ids[:, 2:], hidden=True).hidden
        torch.testing.assert_close(got, expected[:, 2:], atol=1e-5, rtol=1e-5)


def test_an_unknown_runner_is_a_config_error_before_loading(monkeypatch, capsys):
    from tests.test_cli import run_cli

    code, _, err = run_cli(monkeypatch, capsys, "generate", "hi", "--set", "backend.runner=fast")
    assert code == 2
    assert "backend.runner: 'fast' is not one of eager, static" in err


@pytest.mark.model
def test_generate_on_the_static_runner_records_it(monkeypatch, capsys):
    import json

    from tests.test_cli import run_cli

    args = ["generate", "Name three colors.", "-n", "8", "--json"]
    args += ["--set", "backend.runner=static", "--set", "backend.compile=false"]
    code, out, _ = run_cli(monkeypatch, capsys, *args)
    assert code == 0
    env = json.loads(out)["environment"]
    assert env["runner"] == "static" and env["compiled"] is False

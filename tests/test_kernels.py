"""The decode kernels (backends/kernels.py) compute what stock transformers computes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from decbench.backends import kernels
from decbench.errors import ConfigError
from tests.conftest import runner_for, tiny_llama, tiny_qwen2


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 8, 9, 40])
@pytest.mark.parametrize("bias", [False, True])
def test_decode_linear_matches_linear(rows, bias):
    torch.manual_seed(rows)
    layer = nn.Linear(24, 40, bias=bias)
    x = torch.randn(1, rows, 24)
    expected = F.linear(x, layer.weight, layer.bias)
    kernels.install(layer)
    assert type(layer) is kernels.DecodeLinear
    with torch.inference_mode():
        got = layer(x)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_decode_linear_keeps_gradients():
    layer = kernels.install(nn.Linear(8, 4))
    x = torch.randn(2, 8, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


@pytest.mark.parametrize("make", [tiny_llama, tiny_qwen2])
def test_tree_masked_forward_matches_stock(make, monkeypatch):
    """A tree-verify forward (GQA, several new tokens, custom mask) gives the stock logits."""
    shapes = []
    sdpa = F.scaled_dot_product_attention

    def spy(query, *args, **kwargs):
        shapes.append(tuple(query.shape))
        return sdpa(query, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    stock, fast = runner_for(make()), runner_for(kernels.install(make()))
    assert fast.model.config._attn_implementation == kernels.ATTENTION
    prompt = torch.tensor([[0, 5, 9, 13, 7, 21, 3]])
    tree = torch.tensor(
        [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [1, 1, 0, 1, 0], [1, 0, 1, 0, 1]]
    )
    new = torch.tensor([[4, 8, 15, 16, 23]])
    positions = torch.tensor([[7, 8, 8, 9, 9]])
    outs = []
    for runner in (stock, fast):
        runner.prefill(prompt)
        outs.append(runner.forward(new, positions=positions, tree_mask=tree.bool()[None]).logits)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-4, atol=1e-5)
    assert (1, 2, 10, 8) in shapes  # the 4 query heads packed onto the 2 key/value heads


def test_restore_gives_stock_modules_for_quantizers():
    from decbench.quant.schemes import get_scheme, quantize_in_memory

    model = kernels.install(tiny_llama())
    assert kernels.restore(model) is True
    assert not any(type(m) is kernels.DecodeLinear for m in model.modules())
    assert model.config._attn_implementation == "sdpa"
    quantized = quantize_in_memory(kernels.install(tiny_llama()), get_scheme("int8-dynamic"))
    kinds = {type(m).__name__ for m in quantized.modules()}
    assert "Linear" in kinds and any(
        "Dynamic" in str(type(m)) or "quantized" in type(m).__module__ for m in quantized.modules()
    )


def test_check_mode():
    for mode in kernels.MODES:
        kernels.check_mode(mode)
    with pytest.raises(ConfigError, match="not one of auto, decbench, stock"):
        kernels.check_mode("fast")


def fake_rounds(monkeypatch, decbench_s: list[float], stock_s: list[float]) -> list[str]:
    """Replace the timed round by fixed times per kernel set; returns the sets timed, in order."""
    from decbench.backends import kernel_check

    times = {"decbench": iter([1.0, *decbench_s]), "stock": iter([1.0, *stock_s])}
    order: list[str] = []

    def timed(runner, prompt):
        name = kernels.in_use(runner.model)
        order.append(name)
        return next(times[name])

    monkeypatch.setattr(kernel_check, "_round", timed)
    return order


def test_auto_measures_both_sets_interleaved_then_caches(monkeypatch, tmp_path):
    from decbench.backends import kernel_check

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path))
    runner = runner_for(tiny_llama())
    order = fake_rounds(monkeypatch, [0.010] * 7, [0.020] * 7)
    choice = kernel_check.choose(runner, "auto", torch.float32)
    assert (choice.kernels, choice.source) == ("decbench", "measured")
    assert (choice.decbench_ms, choice.stock_ms) == (10.0, 20.0)
    assert order == ["stock", "decbench"] * 8  # interleaved, round 0 is the warm-up
    assert kernels.in_use(runner.model) == "decbench"
    assert runner.cache_len == 0  # the check leaves no cache behind
    again = kernel_check.choose(runner_for(tiny_llama()), "auto", torch.float32)
    assert (again.kernels, again.source, again.stock_ms) == ("decbench", "cached", 20.0)
    assert len(order) == 16  # no second measurement


@pytest.mark.parametrize(
    "decbench_s,why",
    [([0.0195] * 7, "within the margin"), ([0.010] * 4 + [0.030] * 3, "wins too few rounds")],
)
def test_auto_keeps_stock_when_in_doubt(monkeypatch, tmp_path, decbench_s, why):
    from decbench.backends import kernel_check

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path))
    runner = runner_for(kernels.install(tiny_llama()))
    fake_rounds(monkeypatch, decbench_s, [0.020] * 7)
    choice = kernel_check.choose(runner, "auto", torch.float32)
    assert choice.kernels == "stock", why
    assert kernels.in_use(runner.model) == "stock"


def test_fixed_modes_do_not_measure(monkeypatch, tmp_path):
    from decbench.backends import kernel_check

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path))
    order = fake_rounds(monkeypatch, [], [])
    runner = runner_for(tiny_llama())
    choice = kernel_check.choose(runner, "decbench", torch.float32)
    assert (choice.kernels, choice.source, choice.stock_ms) == ("decbench", "asked", None)
    assert kernels.in_use(runner.model) == "decbench"
    assert kernel_check.choose(runner, "stock", torch.float32).kernels == "stock"
    assert kernels.in_use(runner.model) == "stock"
    assert order == []


def test_real_check_runs_on_a_tiny_model(monkeypatch, tmp_path):
    from decbench.backends import kernel_check

    monkeypatch.setenv("DECBENCH_CACHE", str(tmp_path))
    runner = runner_for(tiny_llama())
    choice = kernel_check.choose(runner, "auto", torch.float32)
    assert choice.kernels in ("decbench", "stock")
    assert choice.decbench_ms > 0 and choice.stock_ms > 0
    assert kernel_check.cache_file().is_file()


@pytest.mark.model
def test_default_model_greedy_is_the_same_on_stock_kernels():
    from decbench.profiles import method_profile
    from decbench.run import open_session

    def session(kernel_set: str):
        overrides = [("generation", "max_new_tokens", 32), ("backend", "kernels", kernel_set)]
        return open_session(method_profile("greedy", overrides))

    fast, stock = session("decbench"), session("stock")
    assert type(fast.target.model.lm_head) is kernels.DecodeLinear
    assert type(stock.target.model.lm_head) is nn.Linear
    assert fast.environment()["kernel_check"]["source"] == "asked"
    for prompt in ("Name three colors.", "Write a haiku about the sea."):
        assert stock.generate(prompt).token_ids == fast.generate(prompt).token_ids


def test_compare_loads_stock_and_decode_kernel_profiles_separately():
    from decbench.compare.harness import _model_key
    from decbench.profiles import method_profile

    fast = method_profile("greedy")
    stock = method_profile("greedy", [("backend", "kernels", "stock")])
    assert _model_key(fast) != _model_key(stock)
    assert kernels.in_use(kernels.install(tiny_llama())) == "decbench"
    assert kernels.in_use(tiny_llama()) == "stock"

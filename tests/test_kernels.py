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


def test_wanted():
    cpu = torch.device("cpu")
    assert kernels.wanted("auto", cpu, torch.float32)
    assert not kernels.wanted("auto", cpu, torch.bfloat16)
    assert not kernels.wanted("stock", cpu, torch.float32)
    assert kernels.wanted("decbench", cpu, torch.bfloat16)
    with pytest.raises(ConfigError, match="not one of"):
        kernels.wanted("fast", cpu, torch.float32)


@pytest.mark.model
def test_default_model_greedy_is_the_same_on_stock_kernels(default_session):
    from decbench.profiles import method_profile
    from decbench.run import open_session

    assert type(default_session.target.model.lm_head) is kernels.DecodeLinear
    stock = open_session(
        method_profile(
            "greedy", [("generation", "max_new_tokens", 32), ("backend", "kernels", "stock")]
        )
    )
    assert type(stock.target.model.lm_head) is nn.Linear
    for prompt in ("Name three colors.", "Write a haiku about the sea."):
        assert stock.generate(prompt).token_ids == default_session.generate(prompt).token_ids


def test_compare_loads_stock_and_decode_kernel_profiles_separately():
    from decbench.compare.harness import _model_key
    from decbench.profiles import method_profile

    fast = method_profile("greedy")
    stock = method_profile("greedy", [("backend", "kernels", "stock")])
    assert _model_key(fast) != _model_key(stock)
    assert kernels.in_use(kernels.install(tiny_llama())) == "decbench"
    assert kernels.in_use(tiny_llama()) == "stock"

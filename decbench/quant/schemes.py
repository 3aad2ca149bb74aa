"""Quantization schemes, applied in memory to a float causal LM.

- `int8-dynamic` (CPU): torch's own dynamic quantization (`torch.ao.quantization.quantize_dynamic`,
  fbgemm kernels). Weights int8 per output channel, activations quantized per tensor at run time.
  The LM head and the MLP output projections (`down_proj`, `fc2`, `c_proj` of the MLP) stay float:
  their inputs carry outlier channels that per-tensor int8 activations destroy (on SmolLM2-135M,
  quantizing them too drops top-1 agreement with the float model from 78 % to 50 %; Dettmers et al.,
  "LLM.int8()", 2022, describe the outliers).
- `int8-weight` / `int4-weight`: weight-only quantization with optimum-quanto (Hugging Face's
  maintained quantization backend): int8 per channel / int4 in groups of 128, activations stay
  float. The LM head stays float. Works on any device.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from decbench.backends import kernels
from decbench.errors import ConfigError, ModelError

FLOAT_MODULES = ("lm_head",)  # never quantized
OUTLIER_INPUT_MODULES = ("down_proj", "fc2", "mlp.c_proj")  # float under int8-dynamic only
INSTALL_HINT = "pip install 'decbench[quant]' (or run `make install`)"


@dataclass(frozen=True)
class Scheme:
    name: str
    summary: str
    library: str  # "torch" | "optimum-quanto"
    weight_bits: int
    cpu_only: bool
    apply: Callable[[nn.Module], nn.Module]  # quantizes in place or returns the quantized model


def linear_names(model: nn.Module, skip: tuple[str, ...]) -> list[str]:
    """Names of the nn.Linear modules to quantize: all but `skip`-matching ones."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(name.endswith(s) for s in skip)
    ]


def quiet(fn: Callable) -> Callable:
    """torch warns on every quantized-tensor creation that eager quantization is deprecated;
    it is still the one int8 path with CPU kernels here, so say it once in the docs instead."""

    def call(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            return fn(*args, **kwargs)

    return call


@quiet
def apply_int8_dynamic(model: nn.Module) -> nn.Module:
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = linear_names(model, FLOAT_MODULES + OUTLIER_INPUT_MODULES)
    spec = dict.fromkeys(names, per_channel_dynamic_qconfig)
    return quantize_dynamic(model, spec, dtype=torch.qint8, inplace=True)


def quanto():
    try:
        import optimum.quanto as q
    except ImportError as e:
        raise ModelError(f"weight-only quantization needs optimum-quanto: {INSTALL_HINT}") from e
    return q


def apply_weight_only(bits: int) -> Callable[[nn.Module], nn.Module]:
    def apply(model: nn.Module) -> nn.Module:
        q = quanto()
        q.quantize(model, weights=q.qint8 if bits == 8 else q.qint4, exclude=list(FLOAT_MODULES))
        with torch.inference_mode():  # int4 kernels refuse non-inference weights at run time
            q.freeze(model)
        return model

    return apply


SCHEMES: dict[str, Scheme] = {
    s.name: s
    for s in [
        Scheme(
            "int8-dynamic",
            "int8 weights per channel, int8 activations per tensor at run time (torch, CPU)",
            "torch",
            8,
            True,
            apply_int8_dynamic,
        ),
        Scheme(
            "int8-weight",
            "int8 weights per channel, float activations (optimum-quanto)",
            "optimum-quanto",
            8,
            False,
            apply_weight_only(8),
        ),
        Scheme(
            "int4-weight",
            "int4 weights in groups of 128, float activations (optimum-quanto)",
            "optimum-quanto",
            4,
            False,
            apply_weight_only(4),
        ),
    ]
}


def get_scheme(name: str) -> Scheme:
    if name not in SCHEMES:
        raise ConfigError(f"--scheme: unknown scheme '{name}'; choose one of {', '.join(SCHEMES)}")
    return SCHEMES[name]


def quantize_in_memory(model: nn.Module, scheme: Scheme) -> nn.Module:
    """Quantize a float model (in place where the library allows) and return it."""
    device = next(model.parameters()).device
    if scheme.cpu_only and device.type != "cpu":
        raise ConfigError(
            f"scheme '{scheme.name}' runs on CPU only (model is on {device}); "
            "use int8-weight or int4-weight"
        )
    had_kernels = kernels.restore(model)  # quantizers match the exact nn.Linear type
    quantized = scheme.apply(model.float() if scheme.cpu_only else model)
    if had_kernels:
        kernels.install(quantized)  # what stays float (e.g. the LM head) keeps the fast path
    return quantized

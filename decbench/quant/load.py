"""Write a quantized model to a folder and load it back. The folder holds config.json, the
tokenizer, `model.safetensors` with the integer weights and their scales, and the marker
`decbench-quant.json` (scheme, base model, what is quantized). `decbench.backends.loader` calls
`load_quantized` for any folder that has the marker, so a quantized folder works as a target or
as a draft wherever a model name does.

Layouts in model.safetensors:
- int8-dynamic: for each quantized Linear `m`: `m.weight` int8 [out, in], `m.weight_scale`
  float64 [out], `m.weight_zero_point` int64 [out], `m.bias` [out] when it has one; every other
  tensor is the model's own float state.
- int8-weight / int4-weight: optimum-quanto's own state dict (its `requantize` reads it back with
  the quantization map stored in the marker).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from decbench.errors import ModelError
from decbench.quant.schemes import Scheme, apply_int8_dynamic, get_scheme, quanto, quiet

MARKER = "decbench-quant.json"
SCHEMA = "decbench/quantized/v1"
WEIGHTS = "model.safetensors"


def is_quantized(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def dynamic_linears(model: nn.Module) -> dict[str, nn.Module]:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return {n: m for n, m in model.named_modules() if isinstance(m, DynamicLinear)}


def int8_dynamic_state(model: nn.Module) -> dict[str, torch.Tensor]:
    quantized = dynamic_linears(model)
    state = {
        k: v
        for k, v in model.state_dict().items()
        if isinstance(v, torch.Tensor) and not any(k.startswith(f"{n}.") for n in quantized)
    }
    for name, module in quantized.items():
        weight, bias = module._weight_bias()
        state[f"{name}.weight"] = weight.int_repr()
        state[f"{name}.weight_scale"] = weight.q_per_channel_scales()
        state[f"{name}.weight_zero_point"] = weight.q_per_channel_zero_points()
        if bias is not None:
            state[f"{name}.bias"] = bias
    return state


def without_tied_head(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tied LM heads share the embedding's storage; safetensors refuses duplicates, and loading
    re-ties them."""
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    if head is not None and head.weight is embed.weight:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    return {k: v.detach().contiguous() for k, v in state.items()}


def save_quantized(
    model: nn.Module, tokenizer, scheme: Scheme, out: Path, base: str, extra: dict | None = None
) -> Path:
    """Write atomically: a temp folder beside `out`, renamed at the end."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        record = {"schema": SCHEMA, "scheme": scheme.name, "base": base, **(extra or {})}
        if scheme.name == "int8-dynamic":
            state = int8_dynamic_state(model)
        else:
            state = model.state_dict()
            record["quantization_map"] = quanto().quantization_map(model)
        save_file(without_tied_head(model, state), str(tmp / WEIGHTS))
        model.config.save_pretrained(tmp)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_quantized(folder: Path, device: torch.device | None = None) -> nn.Module:
    """Rebuild the float skeleton from config.json, quantize it the same way and load the stored
    integer weights into it."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    folder = Path(folder)
    record = json.loads((folder / MARKER).read_text())
    scheme = get_scheme(record.get("scheme", "?"))
    device = device or torch.device("cpu")
    config = AutoConfig.from_pretrained(folder)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    state = load_file(str(folder / WEIGHTS))
    if scheme.name == "int8-dynamic":
        if device.type != "cpu":
            raise ModelError(f"{folder}: int8-dynamic models run on CPU only (asked for {device})")
        load_int8_dynamic(model, state)
    else:
        with torch.inference_mode():  # int4 kernels need inference tensors (see schemes.py)
            state = {k: v.clone() for k, v in state.items()}
            quanto().requantize(model, state, record["quantization_map"], device)
            as_inference_weights(model)
    model.tie_weights()
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    return model.to(device).eval()


def as_inference_weights(model: nn.Module) -> None:
    """Re-create quanto's packed weights as inference tensors (call under inference_mode):
    its int4 matmul fails on weights loaded outside it when run under inference_mode."""
    from optimum.quanto import QModuleMixin

    for module in model.modules():
        if isinstance(module, QModuleMixin) and module.weight is not None:
            module.weight = nn.Parameter(module.weight.clone(), requires_grad=False)


def load_int8_dynamic(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    apply_int8_dynamic(model)
    quantized = dynamic_linears(model)
    for name, module in quantized.items():
        weight = quiet(torch._make_per_channel_quantized_tensor)(
            state.pop(f"{name}.weight"),
            state.pop(f"{name}.weight_scale").double(),
            state.pop(f"{name}.weight_zero_point").long(),
            0,
        )
        module.set_weight_bias(weight, state.pop(f"{name}.bias", None))
    # The float rest is copied in place: load_state_dict would send the quantized modules down
    # torch's legacy (unversioned) loading path.
    persistent = set(model.state_dict())
    targets = {
        k: v
        for k, v in (dict(model.named_parameters()) | dict(model.named_buffers())).items()
        if k in persistent
    }
    unexpected = [k for k in state if k not in targets]
    missing = [k for k in targets if k not in state and k != "lm_head.weight"]
    if missing or unexpected:
        raise ModelError(
            f"quantized weights do not match the config: {missing[:3]} {unexpected[:3]}"
        )
    with torch.no_grad():
        for key, value in state.items():
            targets[key].copy_(value)
